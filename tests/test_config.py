"""Config: YAML 1.2 loading, overrides, validation messages, resolution and round trips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minidl_cli import registry
from minidl_cli.config import (
    ConfigError,
    apply_overrides,
    dump_yaml,
    load_config,
    load_yaml,
    resolve,
)

TINY = """\
seed: 0
data: {type: disk, n_train: 40, n_test: 20}
model:
  - {type: linear, out_features: 8}
  - relu
  - {type: linear, out_features: 8}
  - relu
  - {type: linear, out_features: 8}
  - relu
  - {type: linear, out_features: 2}
  - tanh
loss: {type: mse, targets: onehot}
optimizer: {type: sgd, lr: 0.1}
train: {epochs: 3, batch_size: 10}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path, *overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# ---------------------------------------------------------------- resolution


def test_tiny_config_resolves_complete(tiny):
    config = load_config(tiny)
    assert list(config) == [
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
    ]
    assert config["name"] == "tiny"  # the file's stem
    assert config["seed"] == 0 and config["plugins"] == [] and config["scheduler"] is None
    assert config["data"] == {"type": "disk", "n_train": 40, "n_test": 20, "standardize": False}
    assert config["model"][0] == {
        "type": "linear",
        "in_features": 2,
        "out_features": 8,
        "bias": True,
        "init": "xavier_uniform",
    }
    assert [m.get("in_features") for m in config["model"][::2]] == [2, 8, 8, 8]
    assert config["model"][1] == {"type": "relu"}
    assert config["loss"] == {"type": "mse", "reduction": "mean", "targets": "onehot"}
    assert config["optimizer"] == {
        "type": "sgd",
        "lr": 0.1,
        "momentum": 0.0,
        "dampening": 0.0,
        "weight_decay": 0.0,
        "nesterov": False,
    }
    assert config["train"] == {
        "epochs": 3,
        "batch_size": 10,
        "shuffle": True,
        "device": "cpu",
        "dtype": "float32",
        "checkpoint_every": 0,
        "val_fraction": 0.0,
        "threads": None,
        "clip_grad_norm": None,
    }
    assert config["runs_dir"] == "runs"


def test_defaults_fill_absent_sections(tmp_path):
    path = write(
        tmp_path,
        "data: xor\nmodel: [{type: linear, out_features: 2}]\n"
        "loss: cross_entropy\noptimizer: adam\n",
    )
    config = load_config(path)
    assert config["train"]["epochs"] == 500 and config["train"]["batch_size"] == 100
    assert config["data"] == {
        "type": "xor",
        "n_train": 1000,
        "n_test": 1000,
        "noise": 0.0,
        "standardize": False,
    }
    assert config["optimizer"]["betas"] == [0.9, 0.999]  # a list: YAML has no tuples
    assert config["loss"] == {"type": "cross_entropy", "reduction": "mean", "ignore_index": -100}
    assert (
        resolve(
            yaml.safe_load(
                "data: disk\nmodel: [{type: linear, out_features: 2}]\nloss: mse\noptimizer: sgd"
            )
        )["name"]
        == "run"
    )


def test_aliases_are_canonicalised(tiny):
    config = load_config(
        tiny, ["model.1=ReLU", "model.0.type=Linear", "loss.type=MSELoss", "optimizer.type=SGD"]
    )
    assert config["model"][1] == {"type": "relu"}
    assert config["model"][0]["type"] == "linear"
    assert config["loss"]["type"] == "mse" and config["optimizer"]["type"] == "sgd"
    assert load_config(tiny, ["optimizer=Adam", "loss=CrossEntropyLoss"])["optimizer"]["type"] == (
        "adam"
    )


def test_seed_drawn_when_absent_kept_when_given(tiny):
    assert load_config(tiny, ["seed=7"])["seed"] == 7
    assert load_config(tiny, ["seed=1e3"])["seed"] == 1000
    drawn = {load_config(tiny, ["seed=null"])["seed"] for _ in range(3)}
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in drawn)
    assert len(drawn) > 1  # three equal draws out of 2**31: practically impossible
    raw = yaml.safe_load(TINY)
    del raw["seed"]
    assert isinstance(resolve(raw)["seed"], int)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["seed=null"],
        ["scheduler=cosine", "data.standardize=true", "train.val_fraction=0.2"],
        ["optimizer=adam", "name=x y", "scheduler={type: step, step_size: 2}"],
    ],
)
def test_resolved_config_round_trips(tiny, overrides):
    config = load_config(tiny, overrides)
    text = dump_yaml(config)
    assert load_yaml(write(tiny.parent, text, "dumped.yaml")) == config
    assert yaml.safe_load(text) == config  # plain YAML readers agree
    assert resolve(yaml.safe_load(text)) == config
    assert "{type: linear, in_features: 2, out_features: 8" in text  # one line per layer


def test_cosine_t_max_defaults_to_epochs(tiny):
    """A null T_max stays null in the resolved config: it means train.epochs, so it can
    follow train.epochs when a run is extended; build_scheduler fills it in."""
    from minidl_cli.build import build_model, build_optimizer, build_scheduler

    config = load_config(tiny, ["scheduler=cosine"])
    assert config["scheduler"] == {"type": "cosine", "T_max": None, "eta_min": 0.0}
    optimizer = build_optimizer("sgd", build_model(config["model"], 2).parameters())
    assert build_scheduler(config["scheduler"], optimizer, epochs=7).T_max == 7
    assert load_config(tiny, ["scheduler={type: cosine, T_max: 9}"])["scheduler"]["T_max"] == 9


def test_csv_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    (folder / "data").mkdir(parents=True)
    rows = "\n".join(f"{i % 7},{i % 3},{i % 2}" for i in range(30))
    (folder / "data" / "t.csv").write_text("a,b,label\n" + rows + "\n")
    path = write(
        folder,
        TINY.replace(
            "{type: disk, n_train: 40, n_test: 20}",
            "{type: csv, train: data/t.csv, test_fraction: 0.3}",
        ),
    )
    monkeypatch.chdir(tmp_path)  # not the config's folder
    config = load_config(path)
    assert config["data"]["train"] == str(folder / "data" / "t.csv")
    assert config["data"]["test"] is None and config["data"]["features"] is None
    assert resolve(yaml.safe_load(dump_yaml(config))) == config  # absolute: stable on reload
    (line,) = problems(path, "data.train=data/missing.csv")
    assert line.startswith("data: ") and str(folder / "data" / "missing.csv") in line


def test_importing_config_does_not_import_torch():
    code = "import sys, minidl_cli.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- YAML


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-3", 0.001),
        ("1e6", 1e6),
        ("-1E+2", -100.0),
        (".5", 0.5),
        ("1.", 1.0),
        ("10", 10),
        ("010", 10),
        ("0x1F", 31),
        (".inf", float("inf")),
        ("true", True),
        ("yes", "yes"),
        ("2024-01-01", "2024-01-01"),
        ("1_000", "1_000"),
        ("null", None),
        ("~", None),
    ],
)
def test_yaml_1_2_scalars(tmp_path, text, value):
    assert load_yaml(write(tmp_path, f"v: {text}\n")) == {"v": value}
    assert apply_overrides({}, [f"v={text}"]) == {"v": value}


def test_scientific_lr_is_a_float_in_files_and_overrides(tiny):
    assert load_config(tiny, ["optimizer.lr=1e-3"])["optimizer"]["lr"] == 0.001
    path = write(tiny.parent, TINY.replace("lr: 0.1", "lr: 5e-2"), "sci.yaml")
    assert load_config(path)["optimizer"]["lr"] == 0.05
    assert load_config(tiny, ["data.n_train=1e2"])["data"]["n_train"] == 100  # integral: an int


def test_syntax_error_names_line_and_column(tmp_path):
    path = write(tmp_path, "seed: 0\ndata:\n  type: disk\n   n_train: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4:11: mapping values are not allowed"):
        load_yaml(path)


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml:2:1: duplicate key 'seed' .*line 1"):
        load_yaml(write(tmp_path, "seed: 0\nseed: 1\n"))


@pytest.mark.parametrize(
    "payload",
    [
        '!!python/object/apply:os.system ["touch {p}"]',
        '!!python/object/apply:builtins.open ["{p}", "w"]',
        '!!python/object/new:pathlib.Path ["{p}"]',
    ],
)
def test_python_tags_are_refused_without_running(tmp_path, payload):
    pwned = tmp_path / "pwned"
    path = write(tmp_path, f"seed: 0\ndata: {payload.format(p=pwned)}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2:7: the tag '!!python/object.*not allowed"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="not allowed"):
        apply_overrides({}, [f"data={payload.format(p=pwned)}"])
    assert not pwned.exists()


def test_file_problems(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml: the file is empty"):
        load_yaml(write(tmp_path, "# only a comment\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping.*got a list"):
        load_yaml(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_yaml(tmp_path)
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(ConfigError, match="--resume"):
        load_yaml(tmp_path)


# ---------------------------------------------------------------- overrides


def test_overrides_set_dotted_keys_list_items_and_yaml_values():
    raw = yaml.safe_load(TINY)
    out = apply_overrides(
        raw,
        [
            "optimizer.lr=0.05",
            "model.6.out_features=3",
            "model[4].out_features=5",
            "scheduler=null",
            "model.0={type: linear, out_features: 4}",
            "train.shuffle=false",
            "model.1.type=leaky_relu",
            "model.3.negative_slope=0.2",
            "name=foo",
            "runs_dir=/tmp/x",
            "data.noise=0.1",
        ],
    )
    assert out["optimizer"]["lr"] == 0.05 and out["scheduler"] is None
    assert out["model"][6]["out_features"] == 3 and out["model"][4]["out_features"] == 5
    assert out["model"][0] == {"type": "linear", "out_features": 4}
    assert out["model"][1] == {"type": "leaky_relu"}  # bare names become mappings
    assert out["model"][3] == {"type": "relu", "negative_slope": 0.2}
    assert out["train"]["shuffle"] is False and out["name"] == "foo"
    assert out["runs_dir"] == "/tmp/x" and out["data"]["noise"] == 0.1
    assert raw == yaml.safe_load(TINY)  # a new dict: the input is untouched


def test_new_keys_from_overrides_are_validated(tiny):
    assert problems(tiny, "train.epohcs=3", "optimzer.lr=1") == [
        "optimzer: unknown top-level key (did you mean 'optimizer'?)",
        "train.epohcs: unknown option (did you mean 'epochs'?)",
    ]


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lr", "expected KEY=VALUE"),
        ("=3", "the key is empty"),
        ("a..b=1", "has an empty part"),
        ("model.8.out_features=2", "index 8 is out of range; model has 8 items (0..7)"),
        ("model.x=2", "model is a list; index it with a number 0..7"),
        ("seed.x=1", "seed is 0, not a mapping or a list"),
        ("optimizer.lr.x=1", "optimizer.lr is 0.1, not a mapping or a list"),
        ("model.0.type.x=1", "model[0].type is 'linear', not a mapping or a list"),
        ("name=[1", "bad YAML at column 3"),
    ],
)
def test_malformed_overrides_are_named(tiny, override, message):
    lines = problems(tiny, override)
    assert len(lines) == 1 and lines[0].startswith(f"override {override!r}: ")
    assert message in lines[0]


def test_all_malformed_overrides_are_reported_together(tiny):
    assert len(problems(tiny, "x", "model.99=relu", "y")) == 3


# ---------------------------------------------------------------- validation messages


@pytest.mark.parametrize(
    "override, expected",
    [
        ("modle=[]", "modle: unknown top-level key (did you mean 'model'?)"),
        ("data.n_trian=5", "data.n_trian: unknown option (did you mean 'n_train'?)"),
        ("train.bach_size=5", "train.bach_size: unknown option (did you mean 'batch_size'?)"),
        (
            "model.0.out_featurs=5",
            "model[0].out_featurs: unknown option (did you mean 'out_features'?)",
        ),
        ("optimizer.momentun=0.9", "optimizer.momentun: unknown option (did you mean 'momentum'?)"),
        ("model.1.alpha=1", "model[1].alpha: unknown option (it takes no options)"),
        ("model.2.type=rlu", "model[2].type: unknown layer 'rlu' (did you mean 'relu'?)"),
        ("optimizer.type=adma", "optimizer.type: unknown optimizer 'adma' (did you mean 'adam'?)"),
        ("loss=mes", "loss.type: unknown loss 'mes' (did you mean 'mse'?)"),
        ("data.type=disc", "data.type: unknown dataset 'disc' (did you mean 'disk'?)"),
        ("scheduler=stp", "scheduler.type: unknown scheduler 'stp' (did you mean 'step'?)"),
        ("optimizer.lr=-1", "optimizer.lr: must be a number > 0, got -1"),
        ("optimizer.lr=fast", "optimizer.lr: must be a number > 0, got 'fast'"),
        ("optimizer.nesterov=yes", "optimizer.nesterov: must be true or false, got 'yes'"),
        ("train.epochs=ten", "train.epochs: must be an integer >= 1, got 'ten'"),
        ("train.epochs=0", "train.epochs: must be an integer >= 1, got 0"),
        ("train.epochs=2.5", "train.epochs: must be an integer >= 1, got 2.5"),
        ("train.epochs=true", "train.epochs: must be an integer >= 1, got true"),
        ("train.batch_size=0", "train.batch_size: must be an integer >= 1, got 0"),
        ("train.val_fraction=1", "train.val_fraction: must be a number >= 0 and < 1, got 1"),
        ("train.checkpoint_every=-1", "train.checkpoint_every: must be an integer >= 0, got -1"),
        ("data.n_train=ten", "data.n_train: must be an integer >= 1, got 'ten'"),
    ],
)
def test_each_problem_gets_its_line(tiny, override, expected):
    assert problems(tiny, override) == [expected]


def test_data_set_range_errors_are_data_lines(tiny):
    (line,) = problems(tiny, "data.n_train=0")  # the data set's own check
    assert line.startswith("data") and "n_train" in line and ">= 1" in line


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.device=gpu", "train.device: must be one of 'cpu', 'cuda', 'auto', got 'gpu'"),
        (
            "train.device=cdua",
            "train.device: must be one of 'cpu', 'cuda', 'auto', got 'cdua' (did you mean 'cuda'?)",
        ),
        ("train.dtype=float16", "train.dtype: must be one of 'float32', 'float64', got 'float16'"),
        ("model.7=dropout", None),
        ("model.7={type: dropout, p: 1.5}", "model[7].p: must be a number >= 0 and < 1, got 1.5"),
        (
            "loss.targets=sined",
            "loss.targets: must be one of 'onehot', 'signed', got 'sined' (did you mean 'signed'?)",
        ),
        (
            "optimizer={type: adam, betas: [0.9]}",
            "optimizer.betas: must be a list of 2 numbers, got [0.9]",
        ),
        ("seed=-1", "seed: must be an integer from 0 to 2**63 - 1, or null to draw one, got -1"),
        ("name=a/b", "name: 'a/b' is used in a directory name; leave out '/' and '\\'"),
        ("plugins=3", "plugins: must be a list of module names such as [my_layers], got 3"),
        (
            "model=[]",
            "model: must be a non-empty list of layers such as "
            "[{type: linear, out_features: 2}], got []",
        ),
        ("model.0={out_features: 2}", "model[0].type: missing; name the layer (one of: "),
        ("model.0=linear", "model[0].out_features: required option missing (an integer >= 1)"),
        ("scheduler=step", "scheduler.step_size: required option missing (an integer >= 1)"),
        (
            "scheduler={type: cosine, T_max: 0}",
            "scheduler.T_max: must be an integer >= 1 or null, got 0",
        ),
        ("train=5", "train: must be a mapping of options, got 5"),
        ("loss=[mse]", "loss: must be a loss name or a mapping with a 'type' key, got [mse]"),
    ],
)
def test_more_problem_lines(tiny, override, expected):
    if expected is None:  # dropout p defaults to 0.5: no problem
        assert load_config(tiny, [override])["model"][7] == {"type": "dropout", "p": 0.5}
        return
    (line,) = problems(tiny, override)
    assert line.startswith(expected)


def test_missing_required_sections(tmp_path):
    assert problems(write(tmp_path, "seed: 1\n")) == [
        "data: missing; it is required (a mapping such as {type: disk, n_train: 1000})",
        "model: missing; it is required (a list of layers such as "
        "[{type: linear, out_features: 2}])",
        "loss: missing; it is required (a loss such as mse or {type: cross_entropy})",
        "optimizer: missing; it is required (an optimizer such as {type: sgd, lr: 0.1})",
    ]


def test_several_problems_reported_at_once(tiny):
    lines = problems(
        tiny,
        "optimizer.lr=-1",
        "train.epochs=ten",
        "model.2.type=rlu",
        "data.n_trian=5",
        "train.device=gpu",
        "extra=1",
    )
    assert len(lines) == 6
    assert "model[2].type: unknown layer 'rlu' (did you mean 'relu'?)" in lines
    assert "optimizer.lr: must be a number > 0, got -1" in lines


def test_options_of_an_unknown_type_are_skipped(tiny):
    known = ", ".join(registry.names("optimizer"))
    assert problems(tiny, "optimizer={type: nope, whatever: 1}") == [
        f"optimizer.type: unknown optimizer 'nope' (known: {known})"
    ]


# ---------------------------------------------------------------- checks against the data


def test_last_layer_width_must_match_the_classes(tiny):
    assert problems(tiny, "model.6.out_features=3") == [
        "model[6].out_features: the network outputs 3 values but the data has 2 classes; "
        "set it to 2"
    ]
    assert problems(tiny, "model=[relu]") == [  # 2 features, 2 classes: only no weights
        "model: the network has no parameters to train; add a layer with weights such as "
        "{type: linear, out_features: 2}"
    ]
    assert problems(tiny, "data={type: spirals, classes: 3, n_train: 40}", "model=[tanh]") == [
        "model: the network outputs 2 values but the data has 3 classes; "
        "end it with {type: linear, out_features: 3}",
        "model: the network has no parameters to train; add a layer with weights such as "
        "{type: linear, out_features: 2}",
    ]


def test_given_in_features_must_agree(tiny):
    assert load_config(tiny, ["model.2.in_features=8"])["model"][2]["in_features"] == 8
    assert problems(tiny, "model.2.in_features=5") == [
        "model[2].in_features: is 5 but model[1] outputs 8 features; remove it (it is "
        "inferred) or set it to 8"
    ]
    assert problems(tiny, "model.0.in_features=3")[0].startswith(
        "model[0].in_features: is 3 but the data has 2 features"
    )


def test_batch_size_larger_than_training_set(tiny):
    assert problems(tiny, "train.batch_size=41") == [
        "train.batch_size: 41 is larger than the training set (40 points); set it to 40 or less"
    ]
    assert problems(tiny, "train.batch_size=40", "train.val_fraction=0.25") == [
        "train.batch_size: 40 is larger than the training set (30 points); set it to 30 or less"
    ]


def test_constructor_errors_become_section_lines(tiny):
    (line,) = problems(tiny, "optimizer={type: adam, betas: [0.9, 1.5]}")
    assert line.startswith("optimizer: Invalid betas")
    (line,) = problems(tiny, "optimizer={type: sgd, nesterov: true}")
    assert line == "optimizer: Nesterov momentum requires a momentum and zero dampening"
    (line,) = problems(tiny, "data={type: csv, train: nothere.csv, test_fraction: 0.5}")
    assert line.startswith("data: data file ") and "nothere.csv not found" in line


# ---------------------------------------------------------------- plugins

PLUGIN = '''
import torch
from minidl_cli.nn import Module
from minidl_cli.registry import register


@register("layer", "{name}")
class {cls}(Module):
    """y = x * sigmoid(beta x)."""

    def __init__(self, beta: float = 1.0):
        self.beta = beta

    def forward(self, x):
        self._x, self._s = x, torch.sigmoid(self.beta * x)
        return x * self._s

    def backward(self, g):
        s = self._s  # dy/dx = s + beta x s (1 - s)
        return g * (s + self.beta * self._x * s * (1 - s))
'''


@pytest.fixture
def plugin(tmp_path):
    """Write a plugin module; unregister it afterwards (the registry is global)."""
    written = []

    def make(folder: Path, module: str, name: str) -> str:
        folder.mkdir(exist_ok=True)
        cls = "".join(part.title() for part in name.split("_"))
        (folder / f"{module}.py").write_text(PLUGIN.format(name=name, cls=cls))
        written.append((module, name))
        return module

    yield make
    for module, name in written:
        sys.modules.pop(module, None)
        registry.unregister("layer", name)


def test_plugin_layer_is_usable_in_the_model(tiny, plugin, monkeypatch):
    module = plugin(tiny.parent / "lib", "minidl_test_config_swish", "test_config_swish")
    monkeypatch.syspath_prepend(str(tiny.parent / "lib"))
    config = load_config(
        tiny, [f"plugins=[{module}]", "model.1=test_config_swish", "model.3.type=Test_Config_Swish"]
    )
    assert config["plugins"] == [module]
    assert config["model"][1] == {"type": "test_config_swish", "beta": 1.0}
    assert config["model"][3] == {"type": "test_config_swish", "beta": 1.0}
    (line,) = problems(tiny, f"plugins=[{module}]", "model.1={type: test_config_swish, beta: x}")
    assert line == "model[1].beta: must be a number, got 'x'"


def test_plugin_next_to_the_config_is_importable(tiny, plugin):
    before = list(sys.path)
    module = plugin(tiny.parent, "minidl_test_config_swish2", "test_config_swish2")
    config = load_config(tiny, [f"plugins=[{module}]", "model.5=test_config_swish2"])
    assert config["model"][5]["type"] == "test_config_swish2"
    assert sys.path == before


def test_plugin_import_failure_is_a_problem_line(tiny):
    lines = problems(tiny, "plugins=[minidl_no_such_plugin_xyz]", "model.1=swishy")
    assert lines[0].startswith(
        "plugins[0]: cannot import 'minidl_no_such_plugin_xyz': ModuleNotFoundError: "
    )
    assert lines[1].startswith("model[1].type: unknown layer 'swishy'")


@pytest.mark.parametrize("body, error", [
    ("import minidl_no_such_dependency_xyz\n",
     "ModuleNotFoundError: No module named 'minidl_no_such_dependency_xyz'"),
    ("x = 1\nraise ValueError('bad setting')\n", "ValueError: bad setting"),
    ("def broken(:\n", "SyntaxError: ")])
@pytest.mark.parametrize("by", ["name", "path"])
def test_a_plugin_found_but_failing_to_import_says_so_and_where(tiny, body, error, by):
    """A plugin whose own code fails (a missing dependency, an exception, a syntax error)
    was told what a plugin is and where plugins are looked for, as if it were not found."""
    name = f"minidl_failing_plugin_{abs(hash((body, by)))}"
    (tiny.parent / f"{name}.py").write_text(body)
    entry = name if by == "name" else f"./{name}.py"
    (line,) = problems(tiny, f"plugins=['{entry}']")
    assert line.startswith(f"plugins[0]: {entry!r} was found, but importing it failed: {error}")
    assert f"({tiny.parent / name}.py, line " in line and "fix that error in the plugin" in line
    assert "a plugin is a module importable" not in line


# ---------------------------------------------------------------- fuzzing

KEYS = [
    "seed",
    "name",
    "data",
    "data.n_train",
    "data.type",
    "model",
    "model.0",
    "model.1",
    "model.0.out_features",
    "model.6.out_features",
    "loss",
    "loss.targets",
    "optimizer",
    "optimizer.lr",
    "optimizer.betas",
    "scheduler",
    "train",
    "train.epochs",
    "train.batch_size",
    "train.device",
    "train.val_fraction",
    "plugins",
    "runs_dir",
    "zzz",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 50),
    st.floats(allow_nan=True),
    st.sampled_from(["relu", "linear", "sgd", "adam", "cosine", "disk", "xor", "cpu", "mse"]),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "lr", "p", "out_features", "x"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=3), st.text(max_size=12))
def test_fuzzed_overrides_give_a_config_or_a_config_error(tiny, changes, text):
    overrides = [
        f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}" for key, value in changes
    ] + [f"name={text}"]
    try:
        config = load_config(tiny, overrides)
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)
    else:
        assert resolve(yaml.safe_load(dump_yaml(config))) == config


@pytest.mark.parametrize("key, value, home", [
    ("task", "regression", "data"), ("standardize_target", True, "data"),
    ("epochs", 3, "train"), ("lr", 0.5, "optimizer"), ("early_stopping", {}, "train")])
def test_a_misplaced_key_names_the_section_it_belongs_to(tmp_path, key, value, home):
    """`task: regression` at the top level (or the override epochs=3) said only "unknown
    top-level key"; it now names the section and the override that sets it."""
    says = (f"{key}: unknown top-level key; it is an option of {home}: put it under {home}: "
            f"(as an override: {home}.{key}=VALUE)")
    from tests.helpers import TINY as RUN_CONFIG
    from tests.helpers import invoke, write_config

    with pytest.raises(ConfigError) as raised:
        resolve({**RUN_CONFIG, key: value}, data=False)
    assert says in raised.value.problems
    result = invoke("train", write_config(tmp_path), f"{key}={value}")
    assert result.exit_code == 2 and says in result.output, result.output
    assert not (tmp_path / "runs").exists()
    unrelated = invoke("train", write_config(tmp_path), "rnus_dir=x")
    assert "(did you mean 'runs_dir'?)" in unrelated.output


@pytest.mark.parametrize("section, key, value, home", [
    ("train", "lr", 0.5, "optimizer"), ("data", "epochs", 3, "train"),
    ("optimizer", "epochs", 3, "train"), ("optimizer", "batch_size", 3, "train"),
    ("train", "task", "regression", "data"), ("train", "seed", 3, "")])
def test_a_key_in_the_wrong_section_names_where_it_belongs(tmp_path, section, key, value, home):
    """train.lr said only "unknown option (options: ...)", and optimizer.epochs on adam
    offered only 'eps': the section (or the top level) where the key is an option is named,
    with its override (after a close match in the section, when there is one)."""
    from tests.helpers import TINY as RUN_CONFIG
    from tests.helpers import invoke, write_config

    where = (f"it is an option of {home}: put it under {home}: (as an override: "
             f"{home}.{key}=VALUE)" if home else
             f"it is a top-level key: put it at the top (as an override: {key}=VALUE)")
    says = f"{section}.{key}: unknown option; {where}"
    config = {**RUN_CONFIG, section: {**RUN_CONFIG[section], key: value}}
    with pytest.raises(ConfigError) as raised:
        resolve(config, data=False)
    assert says in raised.value.problems
    result = invoke("train", write_config(tmp_path), f"{section}.{key}={value}")
    assert result.exit_code == 2 and says in result.output, result.output
