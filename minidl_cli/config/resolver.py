"""Resolve a raw config: sections, defaults, the seed, then data and shape checks.

`load_config(path, overrides)` returns the *resolved* config: every section complete,
every default filled in, the seed drawn when absent, component names canonical and each
layer's `in_features` inferred, so the dict describes the run by itself and
`resolve(load_yaml(dump_yaml(c)))` gives `c` back. No torch at import: the data and
shape checks import it when they run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from minidl_cli import registry
from minidl_cli.config.errors import ConfigError
from minidl_cli.config.overrides import apply_overrides
from minidl_cli.config.validate import Checker
from minidl_cli.config.yaml_io import kind_of, load_yaml
from minidl_cli.registry import Option, Range

# Training defaults: those of the reference experiment (README, "The reference experiment").
TRAIN_OPTIONS = [
    Option("epochs", int, 500, Range(ge=1)),
    Option("batch_size", int, 100, Range(ge=1)),
    Option("shuffle", bool, True),  # reshuffle the training set every epoch
    Option("device", Literal["cpu", "cuda", "auto"], "cpu"),  # auto: cuda when available
    Option("dtype", Literal["float32", "float64"], "float32"),
    Option("checkpoint_every", int, 0, Range(ge=0)),  # 0: only checkpoints/last.pt
    Option("val_fraction", float, 0.0, Range(ge=0, lt=1)),  # held out of the training set
    # torch intra-op threads on the CPU; null: torch's default. Small networks run fastest
    # on 1 (threads only add contention on 25-wide matrices), wide ones gain from more.
    Option("threads", int | None, None, Range(ge=1)),
    # cap the global 2-norm of the gradient (torch.nn.utils.clip_grad_norm_); null: never
    Option("clip_grad_norm", float | None, None, Range(gt=0)),
]
# train.early_stopping: stop when `monitor` (a validation metric) has not improved by more
# than `min_delta` for `patience` epochs (early_stopping.py); absent or null: never
EARLY_STOPPING_OPTIONS = [
    Option("monitor", str, "val_loss"),  # val_loss, or a task metric such as val_accuracy
    Option("patience", int, 10, Range(ge=1)),
    Option("min_delta", float, 0.0, Range(ge=0)),
]
STANDARDIZE = Option("standardize", bool, False)  # z-score with training-set statistics
# regression: z-score the targets with training statistics (metrics stay on their scale)
STANDARDIZE_TARGET = Option("standardize_target", bool, False)
# What `minidl list train` / `list data` / `list config` say about the options above.
OPTION_HELP = {
    "train.epochs": "passes over the training set; --resume RUN train.epochs=N extends a run",
    "train.batch_size": "rows per gradient step (the global batch with --nproc)",
    "train.shuffle": "reshuffle the training set every epoch",
    "train.device": "auto: cuda when available",
    "train.dtype": "floating-point precision of weights and data",
    "train.checkpoint_every": "also keep checkpoints/epoch_NNNN.pt every N epochs (0: never)",
    "train.val_fraction": "share of the training set held out for validation (best.pt)",
    "train.clip_grad_norm": "rescale all gradients together so that their global 2-norm "
                            "is at most this (null: no clipping), after the all-reduce",
    "train.early_stopping": "stop when `monitor` has not improved by more than `min_delta` "
                            "for `patience` epochs (needs train.val_fraction > 0; evaluate "
                            "then defaults to best.pt)",
    "train.threads": "torch threads on the CPU (null: torch's default; 1 is fastest for "
                     "small networks)",
    "data.standardize": "z-score the inputs with training-set statistics (kept in the "
                        "checkpoint)",
    "data.standardize_target": "regression: z-score the targets with training-set "
                               "statistics (metrics stay on the targets' scale)",
    "name": "the run directory's prefix (default: the config file's name)",
    "seed": "seeds data, weights and shuffling (default: drawn, then recorded in the run)",
    "plugins": "modules or .py files that register components (relative to the config file)",
    "runs_dir": "where run directories go, relative to the current directory (data and "
                "plugin paths are relative to the config file)",
}
TOP_LEVEL = (
    "name",
    "seed",
    "plugins",
    "data",
    "model",
    "loss",
    "optimizer",
    "scheduler",
    "train",
    "runs_dir",
)
REQUIRED = {
    "data": "a mapping such as {type: disk, n_train: 1000}",
    "model": "a list of layers such as [{type: linear, out_features: 2}]",
    "loss": "a loss such as mse or {type: cross_entropy}",
    "optimizer": "an optimizer such as {type: sgd, lr: 0.1}",
}


def resolve(raw: dict, config_path: Path | None = None, data: bool = True) -> dict:
    """The validated, complete config; ConfigError listing every problem. `data=False`
    leaves the checks against the data set to parts.build_parts (check_with_data)."""
    if not isinstance(raw, dict):
        raise ConfigError(
            [f"config: must be a mapping of keys (data:, model:, ...), got {kind_of(raw)}"]
        )
    base = Path(config_path).parent.absolute() if config_path is not None else Path.cwd()
    problems: list[str] = [_unknown_key(key) for key in raw if key not in TOP_LEVEL]
    for key, what in REQUIRED.items():
        if raw.get(key) is None:
            problems.append(f"{key}: missing; it is required ({what})")
    check = Checker(problems, base, home_of=_home_of)
    config = {
        "name": check.name(_given(raw, "name", Path(config_path).stem if config_path else "run")),
        "seed": check.seed(raw.get("seed")),
        "plugins": check.plugins(raw.get("plugins")),
    }
    for section in ("data", "loss", "optimizer"):
        extra = [STANDARDIZE, STANDARDIZE_TARGET] if section == "data" else []
        kind = "dataset" if section == "data" else section
        config[section] = check.component(section, kind, raw.get(section), extra)
    config["model"] = check.model(raw.get("model"))
    config["scheduler"] = check.component("scheduler", "scheduler", raw.get("scheduler"))
    train = raw.get("train")
    if train is not None and not isinstance(train, dict):
        problems.append(f"train: must be a mapping of options, got {kind_of(train)}")
        train = None
    train = dict(train or {})
    stopping = train.pop("early_stopping", None)
    config["train"] = check.options("train", TRAIN_OPTIONS, train, ("early_stopping",))
    if stopping is not None:
        config["train"]["early_stopping"] = _early_stopping(check, stopping, config["train"])
    config["runs_dir"] = check.runs_dir(_given(raw, "runs_dir", "runs"))
    if problems:
        raise ConfigError(problems)
    config = {key: config[key] for key in TOP_LEVEL}
    # A scheduler's epoch_options (cosine's T_max) stay null: the Trainer fills in
    # train.epochs, so extending a run with --resume moves the schedule's end with it.
    if data:
        check_with_data(config, make_checked_dataset(config))
    return config


def _unknown_key(key: Any) -> str:
    """The problem line of a key that is not top-level: the section it belongs to, or the
    closest top-level key."""
    home = section_of(str(key))
    hint = (f"; it is an option of {home}: put it under {home}: (as an override: "
            f"{home}.{key}=VALUE)" if home else
            registry.suggest(str(key), list(TOP_LEVEL)) or f" (known: {', '.join(TOP_LEVEL)})")
    return f"{key}: unknown top-level key{hint}"


def _home_of(key: str) -> str | None:
    """Where a key misplaced in a section belongs: "" (the top level), a section, or None."""
    return "" if key in TOP_LEVEL else section_of(key)


def section_of(key: str) -> str | None:
    """The section where a misplaced top-level `key` is an option (train's; data's, the
    loss's, the optimizer's or the scheduler's of any registered type), or None."""
    if key in [o.name for o in TRAIN_OPTIONS] + ["early_stopping"]:
        return "train"
    if key in (STANDARDIZE.name, STANDARDIZE_TARGET.name):
        return "data"
    for section in ("data", "optimizer", "loss", "scheduler"):
        kind = "dataset" if section == "data" else section
        if any(key in [o.name for o in entry.options()] for entry in registry.entries(kind)):
            return section
    return None


def _early_stopping(check: Checker, given: Any, train: dict) -> Any:
    """train.early_stopping's options checked and completed; it needs a validation split."""
    if not isinstance(given, dict):
        check.problems.append("train.early_stopping: must be a mapping such as "
                              f"{{monitor: val_loss, patience: 10}}, got {kind_of(given)}")
        return given
    options = check.options("train.early_stopping", EARLY_STOPPING_OPTIONS, given)
    monitor = options.get("monitor")
    if isinstance(monitor, str) and not monitor.startswith("val_"):
        why = ("a training metric keeps improving while the network overfits"
               if monitor.startswith("train_") else
               "early stopping never watches the test set, kept for the final figures")
        check.problems.append(f"train.early_stopping.monitor: must be a validation metric "
                              f"such as val_loss or val_accuracy, got {monitor!r} ({why})")
    if not train.get("val_fraction"):
        check.problems.append("train.early_stopping: needs a validation split to watch; set "
                              "train.val_fraction=0.2 (or leave out train.early_stopping)")
    return options


def load_config(path: Path, overrides: list[str] = (), data: bool = True) -> dict:
    """Load, override, validate and resolve the config file at `path` (`data` as resolve)."""
    return resolve(apply_overrides(load_yaml(path), list(overrides)), Path(path), data)


def make_checked_dataset(config: dict) -> Any:
    """The config's data set (data.make_dataset); ConfigError with `data: ...` lines (a
    table's bad cells one per line) when it cannot be made."""
    from minidl_cli.data import make_dataset

    data = config["data"]
    options = {k: v for k, v in data.items()
               if k not in ("type", STANDARDIZE.name, STANDARDIZE_TARGET.name)}
    try:
        return make_dataset(data["type"], options, config["seed"])
    except (ValueError, OSError) as e:
        first, *cells = str(e).splitlines() or [""]
        raise ConfigError([f"data: {first}", *cells]) from None
    except Exception as e:  # a plugin's data set, or sizes beyond memory
        raise ConfigError([f"data: {type(e).__name__}: {e}"]) from None


def check_with_data(config: dict, dataset: Any) -> None:
    """The checks that need the data set: batch size, task, shapes through the model (each
    inferred size is written into config["model"], at every depth); ConfigError listing
    every problem. Draws nothing from torch's RNG."""
    problems: list[str] = []
    _check_against_data(config, problems, dataset)
    if problems:
        raise ConfigError(problems)


def _given(raw: dict, key: str, default: Any) -> Any:
    """raw[key], or the default when it is absent or null."""
    return default if raw.get(key) is None else raw[key]


def _check_against_data(config: dict, problems: list[str], dataset: Any) -> None:
    """Build the components without touching torch's RNG: shape checks against `dataset`."""
    import torch

    from minidl_cli import build
    from minidl_cli.data import split_validation

    train = config["train"]
    try:
        dataset, _, _ = split_validation(dataset, train["val_fraction"], torch.Generator())
        n_train = len(dataset.x_train)
        if train["batch_size"] > n_train:
            problems.append(
                f"train.batch_size: {train['batch_size']} is larger than the training "
                f"set ({n_train} points); set it to {n_train} or less"
            )
    except ValueError as e:
        problems.append(f"train.val_fraction: {e}")
    with torch.random.fork_rng(devices=[]):
        try:
            # record=True: each inferred size is written into the config, at every depth
            built: list = []  # (path, layer, input shape) of every layer, at every depth
            vocabulary = getattr(dataset, "vocabulary", None)  # a text data set's tokens
            sizes = {"vocabulary_size": len(vocabulary)} if vocabulary else None
            # token ids (int64 inputs) must reach an embedding before any float layer, and
            # float features may reach none: the builder checks both, layer by layer
            ids = not dataset.x_train.is_floating_point()
            model, shapes = build.build_layers(config["model"], dataset.input_shape,
                                               record=True, seen=built, data=sizes, ids=ids)
        except ValueError as e:
            problems.append(str(e))
            model = None
        _check_task(config, dataset, problems, config["loss"])
        if model is not None:
            _check_causal(config["model"], model, dataset, problems)
            _check_output(config["model"], shapes, dataset, problems)
            _check_batch_norm(built, len(dataset.x_train), train["batch_size"], problems)
            _check_training(config, model, problems)


def _check_task(config: dict, dataset: Any, problems: list[str], raw_loss: Any = None) -> None:
    """The loss and data options must suit the data's task (classification, regression)."""
    from minidl_cli import build, tasks

    task = tasks.for_dataset(dataset)
    # a saved run's config records the default (onehot): only another value is the user's
    set_targets = isinstance(raw_loss, dict) and raw_loss.get("targets", "onehot") != "onehot"
    if task.name != "classification" and set_targets:
        problems.append("loss.targets: only used for classification (class labels → targets); "
                        f"remove it for a {task.name} task")
    if config["data"].get(STANDARDIZE_TARGET.name) is False and task.name != "regression":
        del config["data"][STANDARDIZE_TARGET.name]  # a regression option: not in the others
    if config["data"].get(STANDARDIZE_TARGET.name) and task.name != "regression":
        other = ("" if task.name == "language_model" else
                 " (or set data.task: regression if the label is a number to predict)")
        problems.append(f"data.{STANDARDIZE_TARGET.name}: only regression has targets to "
                        f"z-score, and this data's task is {task.name}; remove it{other}")
    if config["data"].get(STANDARDIZE.name) and task.name == "language_model":
        problems.append(f"data.{STANDARDIZE.name}: a language model's inputs are token ids, "
                        "not numbers to z-score; remove it")
    try:
        loss = build.build_loss(config["loss"])
    except (ValueError, TypeError) as e:
        problems.append(f"loss: {e}")
        return
    why = task.check_loss(loss)
    if why:
        problems.append(f"loss: {why}")


def _check_causal(model_cfg: list, model: Any, dataset: Any, problems: list[str]) -> None:
    """A language model with target sequence (y (N, T)) predicts position i's next token
    from positions 0..i: its output there must not change with a later token, which is the
    very token it is asked for (a bidirectional recurrent layer, attention with causal:
    false, a flatten + linear across positions would learn to copy it). Probed in eval mode
    on a training context and T − 1 copies of it, copy j with its token j changed: the
    outputs before j must stay the same."""
    import torch

    if getattr(dataset, "task", None) != "language_model" or dataset.y_train.dim() != 2:
        return
    base = dataset.x_train[:1]
    steps = base.shape[1]
    probes = base.repeat(steps, 1)
    positions = torch.arange(1, steps)
    probes[positions, positions] = (base[0, positions] + 1) % len(dataset.vocabulary)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(probes).double()  # (T, T, V): row 0 is the context itself
    except Exception:
        return  # another check says why the network does not run
    finally:
        model.train(was_training)
    tolerance = 1e-4 * (1 + float(out.abs().max()))
    if any((out[j, :j] - out[0, :j]).abs().max() > tolerance for j in range(1, steps)):
        problems.append(f"model: with data.target: sequence the output at each position must "
                        f"depend only on the tokens up to it, but this network's changes with "
                        f"later tokens{_seeing_ahead(model_cfg)}; make it causal, or use "
                        "data.target: next")


def _seeing_ahead(model_cfg: Any, path: str = "model") -> str:
    """', e.g. model[1] (a bidirectional lstm)': the first layer in the config that reads
    later positions by its options, at any depth; '' when none says so."""
    if isinstance(model_cfg, list):
        for i, item in enumerate(model_cfg):
            found = _seeing_ahead(item, f"{path}[{i}]")
            if found:
                return found
        return ""
    if not isinstance(model_cfg, dict):
        return ""
    if model_cfg.get("bidirectional") is True:
        return f", e.g. {path} (a bidirectional {model_cfg.get('type')})"
    if model_cfg.get("causal") is False:
        return f", e.g. {path} ({model_cfg.get('type')} with causal: false)"
    for key, value in model_cfg.items():
        found = _seeing_ahead(value, f"{path}.{key}") if isinstance(value, list) else ""
        if found:
            return found
    return ""


def _check_output(model: list[dict], shapes: list[tuple[int, ...]], dataset: Any,
                  problems: list[str]) -> None:
    """The network must output (N, num_outputs): one value per class or regression target;
    blame the last layer that sets a size."""
    from minidl_cli.nn.module import show_shape

    want = dataset.num_outputs
    if shapes[-1] == dataset.output_shape:
        return
    nouns = {"classification": ("class", "classes"),
             "language_model": ("token in its vocabulary", "tokens in its vocabulary")
             }.get(dataset.task, ("regression target", "regression targets"))
    has = f"the data has {want} {nouns[want != 1]}"
    end = f"end it with {{type: linear, out_features: {want}}}"
    if len(dataset.output_shape) == 2:  # a language model predicting every position
        if shapes[-1][:-1] != dataset.output_shape[:1]:
            problems.append(f"model: the network outputs {show_shape(shapes[-1])} but "
                            f"data.target: sequence needs {show_shape(dataset.output_shape)}, "
                            "a prediction at each position of the context; keep the time "
                            "axis (no flatten), or use data.target: next")
            return
    elif len(shapes[-1]) != 1:
        recurrent = [i for i, layer in enumerate(model) if isinstance(layer, dict)
                     and layer.get("type") in ("rnn", "lstm", "gru")
                     and layer.get("output", "sequence") == "sequence"]
        last = (f", or give model[{recurrent[-1]}] output: last (its final state, not every "
                "step)") if recurrent else ""
        problems.append(f"model: the network outputs {show_shape(shapes[-1])} but {has}, "
                        f"which needs (N, {want}); {end} (after a flatten){last}")
        return
    what = f"the network outputs {shapes[-1][-1]} values but {has}"
    setters = [i for i in range(len(model))
               if shapes[i + 1] != shapes[i] or "out_features" in model[i]]
    if setters and "out_features" in model[setters[-1]]:
        problems.append(f"model[{setters[-1]}].out_features: {what}; set it to {want}")
    elif setters:
        problems.append(f"model[{setters[-1]}]: {what}; make it output {want} values")
    else:
        problems.append(f"model: {what}; {end}")


def _check_batch_norm(built: list[tuple[str, Any, tuple[int, ...]]], n_train: int,
                      batch_size: int, problems: list[str]) -> None:
    """Batch norm needs two values per channel in training: a batch of one input without
    positions (features, or 1×1 images) has one. Such a batch must never occur. `built`:
    (path, layer, input shape) of every layer, blocks' layers included."""
    from minidl_cli.nn import BatchNorm1d, BatchNorm2d

    last = n_train % batch_size or batch_size  # the epoch's last, possibly short, batch
    if min(batch_size, last) > 1:
        return
    for where, layer, shape in built:
        if isinstance(layer, (BatchNorm1d, BatchNorm2d)) and math.prod(shape[1:]) == 1:
            if batch_size == 1:
                problems.append(f"train.batch_size: 1 leaves {where} (batch norm) one value "
                                "per channel to normalise in training; use 2 or more")
                return
            fix = next(b for b in range(batch_size + 1, n_train + 1) if n_train % b != 1)
            problems.append(
                f"train.batch_size: {batch_size} leaves a last batch of 1 of the {n_train} "
                f"training points, and {where} (batch norm) needs two or more in training; "
                f"use another batch size, e.g. {fix}")
            return


def _check_training(config: dict, model: Any, problems: list[str]) -> None:
    """Construct the optimizer and scheduler once, so their own checks run before training."""
    from minidl_cli import build

    if not model.parameters():
        problems.append(
            "model: the network has no parameters to train; add a layer with "
            "weights such as {type: linear, out_features: 2}"
        )
        return
    try:
        optimizer = build.build_optimizer(config["optimizer"], model.parameters())
    except (ValueError, TypeError) as e:
        problems.append(f"optimizer: {e}")
        return
    try:
        build.build_scheduler(config["scheduler"], optimizer, config["train"]["epochs"])
    except (ValueError, TypeError) as e:
        problems.append(f"scheduler: {e}")
