"""Property: whatever a user does to a config (types, values, keys, deletions), the CLI exits
0 or 2 and never shows a traceback."""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from unittest import mock

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minidl_cli import experiment
from minidl_cli.runs import load_checkpoint
from tests.helpers import TINY, invoke

NAMES = ["disk", "xor", "moons", "spirals", "csv", "linear", "relu", "tanh", "sigmoid",
         "softmax", "dropout", "leaky_relu", "elu", "identity", "mse", "cross_entropy", "sgd",
         "adam", "step", "cosine", "signed", "onehot", "cpu", "auto", "float64", "float32",
         "xavier_normal", "kaiming_uniform", "Linear", "ReLU", "MSELoss", "SGD", "rlu", ""]
KEYS = ["type", "name", "seed", "data", "model", "loss", "optimizer", "scheduler", "train",
        "n_train", "n_test", "noise", "classes", "standardize", "out_features", "in_features",
        "bias", "init", "p", "lr", "momentum", "nesterov", "betas", "weight_decay", "targets",
        "reduction", "step_size", "gamma", "T_max", "epochs", "batch_size", "shuffle", "device",
        "dtype", "checkpoint_every", "val_fraction", "bogus", "Epochs", 0, True]

EXTREMES = st.sampled_from([10**30, -(2**63), 2**63, 10**400, math.inf, -math.inf, math.nan,
                            1e-320, 1e308, -0.0])
WILD_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), EXTREMES, st.floats(),
    st.sampled_from(NAMES), st.text(max_size=6),
)
# For real training: values that stay cheap to train on (no huge sizes).
TAME_SCALARS = st.one_of(
    st.integers(1, 40), st.floats(0.001, 0.9), st.sampled_from(NAMES), st.none(), st.booleans(),
    st.sampled_from([0, -1, 0.0, 1e9]),
)


def values(scalars):
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
                        max_leaves=5)


def _places(tree, frozen: tuple) -> list[tuple[object, object]]:
    """(container, key) of every node below the top level, except the keys in `frozen`."""
    out = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in list(items):
        if key in frozen:
            continue
        out.append((tree, key))
        if isinstance(value, (dict, list)):
            out += _places(value, frozen)
    return out


def _containers(tree) -> list[dict]:
    found = [tree] if isinstance(tree, dict) else []
    for value in (tree.values() if isinstance(tree, dict) else tree):
        if isinstance(value, (dict, list)):
            found += _containers(value)
    return found


@st.composite
def mutated_configs(draw, scalars, frozen: tuple = (), changes: int = 4, nudges: int = 0):
    """TINY after 1-`changes` random changes: a value replaced, a key deleted, added or renamed.

    A nudge replaces a scalar with another of its type, so more configs stay valid.
    """
    config = copy.deepcopy(TINY)
    for _ in range(draw(st.integers(1, changes))):
        actions = ["set", "set", "delete", "add", "rename"] + ["nudge"] * nudges
        action = draw(st.sampled_from(actions))
        places = _places(config, frozen)
        if action == "nudge":
            container, key = draw(st.sampled_from(places))
            old = container[key]
            similar = {bool: st.booleans(), int: st.integers(-1, 40), float: st.floats(-0.1, 1.5),
                       str: st.sampled_from(NAMES)}.get(type(old), values(scalars))
            if scalars is WILD_SCALARS and not isinstance(old, (dict, list)):
                similar = similar | EXTREMES
            container[key] = draw(similar)
        elif action in ("set", "delete", "rename") and places:
            container, key = draw(st.sampled_from(places))
            if action == "set":
                container[key] = draw(values(scalars))
            elif action == "delete":
                del container[key]
            elif isinstance(container, dict):
                new = draw(st.sampled_from([k for k in KEYS if k not in frozen]))
                container[new] = container.pop(key)
        else:
            target = draw(st.sampled_from(_containers(config)))
            key = draw(st.sampled_from([k for k in KEYS if k not in frozen]))
            target[key] = draw(values(scalars))
    return config


def _write(folder: Path, config: dict) -> Path:
    path = folder / "fuzz.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def _check_clean(result) -> None:
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert lines and all(line.startswith("error: ") for line in lines), result.stderr


FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(config=mutated_configs(WILD_SCALARS, nudges=3))
def test_any_mutated_config_exits_0_or_2_without_traceback(config):
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        config.setdefault("runs_dir", str(runs_dir))  # --print-config must not create it
        result = invoke("train", _write(Path(tmp), config), "--print-config")
        assert result.exit_code in (0, 2), result.output
        _check_clean(result)
        if result.exit_code == 0:
            printed = yaml.safe_load(result.stdout)
            assert isinstance(printed, dict) and printed["train"]["epochs"] >= 1
        assert not runs_dir.exists()


@FUZZ
@given(key=st.lists(st.sampled_from(KEYS + ["1", "9", "model.0"]), min_size=1, max_size=3),
       text=st.text(max_size=12))
def test_any_override_exits_0_or_2_without_traceback(key, text):
    with tempfile.TemporaryDirectory() as tmp:
        config = _write(Path(tmp), {**TINY, "runs_dir": str(Path(tmp) / "runs")})
        override = ".".join(map(str, key)) + "=" + text
        result = invoke("train", config, override, "--print-config")
        assert result.exit_code in (0, 2), (override, result.output)
        _check_clean(result)
        assert not (Path(tmp) / "runs").exists()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=mutated_configs(TAME_SCALARS, frozen=("runs_dir", "plugins"), changes=2,
                              nudges=10))
def test_training_a_mutated_config_exits_0_or_2(config):
    """Real one-epoch training (pictures skipped: they have their own tests)."""
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(experiment, "draw_plots", lambda run, trainer: []):
        runs_dir = Path(tmp) / "runs"
        config["runs_dir"] = str(runs_dir)
        result = invoke("train", _write(Path(tmp), config), "-q", "train.epochs=1")
        _check_clean(result)
        if result.exit_code == 1:  # a legitimate failed run: it diverged, and says so
            assert "smaller learning rate" in result.stderr, result.output
            return
        assert result.exit_code in (0, 2), result.output
        if result.exit_code == 2:
            assert not runs_dir.exists()
        else:
            run = Path(result.stdout.strip().splitlines()[-1])
            state = load_checkpoint(run / "checkpoints" / "last.pt")
            assert state["epoch"] == 1
            assert all(math.isfinite(row["train_loss"]) for row in state["history"])
