"""End-to-end: the real commands on tiny configs,: what a run directory holds
(config.yaml, meta.json, metrics.csv, checkpoints, plots) and what evaluate reports."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from minidl_cli import __version__, registry
from minidl_cli.tasks import Classification
from tests.helpers import TINY, invoke, metrics, run_of, train_tiny, write_config

PNG = b"\x89PNG\r\n\x1a\n"
META_KEYS = {"status", "seed", "started_at", "finished_at", "epochs_completed", "minidl_version",
             "torch_version", "python_version", "device", "argv"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("run"))


def test_run_directory_contract(run):
    assert run.name.startswith("tiny-") and run.parent.name == "runs"
    files = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert files == {"config.yaml", "meta.json", "metrics.csv", "checkpoints/last.pt",
                     "plots/data.png", "plots/loss.png", "plots/accuracy.png",
                     "plots/predictions.png"}

    meta = json.loads((run / "meta.json").read_text())
    assert META_KEYS <= set(meta)
    assert meta["status"] == "completed" and meta["seed"] == 0
    assert meta["epochs_completed"] == 3 and meta["device"] == "cpu"
    assert meta["torch_version"] == torch.__version__ and meta["minidl_version"] == __version__
    assert meta["finished_at"] >= meta["started_at"]

    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "train_accuracy", "test_loss",
                             "test_accuracy", "lr", "elapsed_s"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    n_test = TINY["data"]["n_test"]  # an accuracy is a count of right test points over n_test
    for r in rows:
        right = float(r["test_accuracy"]) * n_test
        assert right == pytest.approx(round(right)) and float(r["lr"]) == 0.1
    assert float(rows[0]["elapsed_s"]) <= float(rows[-1]["elapsed_s"])


def test_config_yaml_is_resolved(run):
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["seed"] == 0 and config["name"] == "tiny"
    assert config["model"][0] == {"type": "linear", "in_features": 2, "out_features": 8,
                                  "bias": True, "init": "xavier_uniform"}
    assert config["model"][2]["in_features"] == 8
    assert config["model"][1] == {"type": "relu"}
    assert config["optimizer"]["momentum"] == 0.9 and config["train"]["epochs"] == 3


def test_checkpoint_is_plain_data_and_matches_torch_nn(run):
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["format"] == "minidl-checkpoint" and state["epoch"] == 3
    assert {"version", "model", "optimizer", "rng", "history", "config"} <= set(state)
    tnet = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2),
                               torch.nn.Tanh())
    tnet.load_state_dict(state["model"])


def test_evaluate_agrees_with_last_metrics_row(run):
    result = invoke("evaluate", run, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    with open(run / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert report["epoch"] == 3
    for split in ("train", "test"):
        assert report[split]["loss"] == pytest.approx(float(last[f"{split}_loss"]), rel=1e-6)
        assert report[split]["accuracy"] == pytest.approx(float(last[f"{split}_accuracy"]))
        assert report[split]["error"] == pytest.approx(1 - report[split]["accuracy"])
    assert json.loads((run / "eval.json").read_text()) == report
    assert sum(map(sum, report["test"]["confusion"])) == TINY["data"]["n_test"]


def test_evaluate_prints_a_table_and_confusion_matrix(run):
    result = invoke("evaluate", run)
    assert result.exit_code == 0
    assert "test" in result.stdout and "confusion matrix" in result.stdout


def test_plot_redraws_valid_pngs(run, tmp_path):
    for png in (run / "plots").glob("*.png"):
        png.unlink()
    result = invoke("plot", run)
    assert result.exit_code == 0, result.output
    for name in ("data", "loss", "accuracy", "predictions"):
        data = (run / "plots" / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 2000


def test_plot_overlays_several_runs_of_different_lengths(run, tmp_path):
    other = train_tiny(tmp_path, "train.epochs=5", "name=longer")
    out = tmp_path / "overlay"
    result = invoke("plot", run, other, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "loss.png").read_bytes().startswith(PNG)
    assert (out / "accuracy.png").read_bytes().startswith(PNG)


def test_overrides_apply_and_are_recorded(tmp_path):
    run = train_tiny(tmp_path, "optimizer.lr=1e-2", "train.epochs=2", "model.2.out_features=2",
                     "name=over")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["optimizer"]["lr"] == 0.01 and config["train"]["epochs"] == 2
    assert run.name.startswith("over-")
    assert len((run / "metrics.csv").read_text().splitlines()) == 3


def test_print_config_writes_nothing(tmp_path):
    path = write_config(tmp_path)
    result = invoke("train", path, "--print-config", "optimizer.lr=0.5")
    assert result.exit_code == 0
    config = yaml.safe_load(result.stdout)
    assert config["optimizer"]["lr"] == 0.5 and config["model"][0]["in_features"] == 2
    assert not (tmp_path / "runs").exists()


def test_seed_drawn_when_absent_is_recorded(tmp_path):
    config = {k: v for k, v in TINY.items() if k != "seed"}
    run = train_tiny(tmp_path, "train.epochs=1", config=config)
    seed = json.loads((run / "meta.json").read_text())["seed"]
    assert isinstance(seed, int)
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == seed


def test_same_seed_same_weights_and_never_the_same_directory(tmp_path):
    a = train_tiny(tmp_path)
    b = train_tiny(tmp_path)
    c = train_tiny(tmp_path, "seed=1")
    assert len({a, b, c}) == 3
    weights = [torch.load(r / "checkpoints" / "last.pt", weights_only=True)["model"]
               for r in (a, b, c)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not torch.equal(weights[0]["0.weight"], weights[2]["0.weight"])


def test_float64_and_checkpoint_every(tmp_path):
    run = train_tiny(tmp_path, "train.dtype=float64", "train.checkpoint_every=1")
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch_0001.pt", "epoch_0002.pt", "epoch_0003.pt", "last.pt"]
    state = torch.load(run / "checkpoints" / "epoch_0002.pt", weights_only=True)
    assert state["epoch"] == 2 and state["model"]["0.weight"].dtype == torch.float64
    result = invoke("evaluate", run, "--checkpoint", "2", "--json")
    assert json.loads(result.stdout)["epoch"] == 2


def test_validation_split_adds_columns_and_best_checkpoint(tmp_path):
    run = train_tiny(tmp_path, "train.val_fraction=0.2")
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith(",elapsed_s,val_loss,val_accuracy")
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    best_row = min(rows, key=lambda r: float(r["val_loss"]))
    assert best["epoch"] == int(best_row["epoch"])
    assert invoke("evaluate", run, "--checkpoint", "best").exit_code == 0


def test_cross_entropy_adam_cosine_and_standardize(tmp_path):
    config = {**TINY, "data": {**TINY["data"], "standardize": True},
              "model": TINY["model"][:3], "loss": "CrossEntropyLoss",
              "optimizer": {"type": "Adam", "lr": 0.01}, "scheduler": {"type": "cosine"}}
    run = train_tiny(tmp_path, config=config)
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["loss"]["type"] == "cross_entropy"
    assert resolved["scheduler"]["T_max"] is None  # null: train.epochs, followed on resume
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["standardizer"]["mean"].shape == (2,)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert float(rows[0]["lr"]) == 0.01 and float(rows[1]["lr"]) < 0.01
    assert float(rows[-1]["lr"]) == pytest.approx(0.0025)  # epoch 3 of T_max = 3: base/4


def test_gradcheck_passes_on_a_config_and_fails_on_a_broken_layer(tmp_path, monkeypatch):
    result = invoke("gradcheck", write_config(tmp_path))
    assert result.exit_code == 0, result.output
    assert "[0] Linear" in result.stdout and "loss MSELoss" in result.stdout

    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text(
        "from minidl_cli.nn import Tanh\nfrom minidl_cli.registry import register\n"
        "@register('layer', 'broken_tanh')\nclass BrokenTanh(Tanh):\n"
        "    def backward(self, g):\n        return g * (1 - self._output)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = TINY["model"][:3] + ["broken_tanh"]
    path = write_config(tmp_path, {**TINY, "model": model, "plugins": ["broken_plugin"]})
    result = invoke("gradcheck", path)
    assert result.exit_code == 1
    assert "FAILED" in result.output


def test_list_shows_every_component_with_options():
    result = invoke("list")
    assert result.exit_code == 0
    for text in ("linear", "leaky_relu", "cross_entropy", "adam", "cosine", "disk",
                 "out_features: int >= 1 (required)", "lr: float > 0"):
        assert text in result.stdout


def _run(*args, **kwargs):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, **kwargs)


def test_help_and_version_do_not_import_torch():
    code = ("import sys\nfrom minidl_cli.cli import main\n"
            "for args in (['--help'], ['--version'], ['train', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout and "evaluate" in result.stdout


def test_python_dash_m_behaves_like_minidl(tmp_path):
    result = _run("-m", "minidl_cli", "train", write_config(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    run = Path(result.stdout.strip().splitlines()[-1])
    assert (run / "checkpoints" / "last.pt").is_file()
    assert _run("-m", "minidl_cli", "--version").stdout.strip().endswith(__version__)


def test_progress_bar_on_a_terminal_and_quiet_hides_it(tmp_path):
    """click's progress bar: epochs done of all and the task's metrics on a terminal, one
    line per epoch in a log (not a terminal), nothing with --quiet."""
    import os
    import pty

    path = write_config(tmp_path)
    terminal, stderr = pty.openpty()
    try:
        loud = subprocess.run([sys.executable, "-m", "minidl_cli", "train", str(path)],
                              stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=120)
    finally:
        os.close(stderr)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the other end is closed and everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    assert loud.returncode == 0 and Path(loud.stdout.strip().splitlines()[-1]).is_dir()
    assert "3/3" in shown.decode() and "loss" in shown.decode()
    logged = _run("-m", "minidl_cli", "train", path)
    run = Path(logged.stdout.strip().splitlines()[-1])
    task = Classification(2)  # the tiny run's task: each line shows an epoch's metrics row
    rows = [{k: float(v) for k, v in row.items() if v} for row in metrics(run)]
    assert logged.stderr.splitlines() == [f"epoch {row['epoch']:.0f}/3: {task.progress(row)}"
                                          for row in rows] and len(rows) == 3
    assert _run("-m", "minidl_cli", "train", path, "--quiet").stderr == ""


def test_train_threads_sets_torch_threads_and_is_validated(tmp_path):
    before = torch.get_num_threads()
    try:
        run = train_tiny(tmp_path, "train.threads=2", "train.epochs=1")
        assert torch.get_num_threads() == 2
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["threads"] == 2
    finally:
        torch.set_num_threads(before)
    result = invoke("train", write_config(tmp_path), "train.threads=0")
    assert result.exit_code == 2 and "train.threads: must be an integer >= 1" in result.output


@pytest.mark.parametrize("args", [["list"], ["train", "--help"]])
def test_a_closed_pipe_is_quiet(args):
    """`minidl list | head -1`: the reader goes away; no traceback and no 'error:' line."""
    process = subprocess.Popen([sys.executable, "-m", "minidl_cli", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the child writes: its first write fails with EPIPE
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) in (0, 1)
    assert stderr == "", stderr


# --- plugins are found from any working directory ------------------------------------------

SWISH = """
import torch
from minidl_cli.nn import Module
from minidl_cli.registry import register

@register("layer", "test_surprise_swish")
class Swish(Module):
    '''y = x · sigmoid(x).'''
    def forward(self, x):
        self._x, self._s = x, torch.sigmoid(x)
        return x * self._s
    def backward(self, g):
        return g * (self._s + self._x * self._s * (1 - self._s))  # d/dx x·σ(x) = σ + xσ(1 − σ)
"""


def forget_plugin(module: str) -> None:
    """As a new process would be: the module not imported, its layer not registered."""
    sys.modules.pop(module, None)
    registry.unregister("layer", "test_surprise_swish")


def test_a_run_with_a_plugin_works_from_any_directory(tmp_path, monkeypatch):
    exp, elsewhere = tmp_path / "exp", tmp_path / "elsewhere"
    exp.mkdir()
    elsewhere.mkdir()
    (exp / "minidl_test_surprise_swish.py").write_text(SWISH)
    model = [TINY["model"][0], "test_surprise_swish", *TINY["model"][2:]]
    config = write_config(exp, {**TINY, "model": model,
                                "plugins": ["minidl_test_surprise_swish"]})
    monkeypatch.chdir(tmp_path)
    run = run_of(invoke("train", config, "-q"))
    recorded = yaml.safe_load((run / "config.yaml").read_text())["plugins"]
    assert recorded == [str(exp / "minidl_test_surprise_swish.py")]

    monkeypatch.chdir(elsewhere)
    forget_plugin("minidl_test_surprise_swish")
    assert invoke("evaluate", run).exit_code == 0
    forget_plugin("minidl_test_surprise_swish")
    assert run_of(invoke("train", "--resume", run, "train.epochs=4", "-q")) == run
    forget_plugin("minidl_test_surprise_swish")
    assert run_of(invoke("train", run / "config.yaml", "train.epochs=1", "-q")).is_dir()
    # a plugin given as a file path, relative to the config
    forget_plugin("minidl_test_surprise_swish")
    config = write_config(exp, {**TINY, "model": model,
                                "plugins": ["./minidl_test_surprise_swish.py"]}, "by_path.yaml")
    result = invoke("train", config, "--print-config")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["plugins"] == recorded


# --- no option is dropped silently ---------------------------------------------------------


@pytest.mark.parametrize("args, names", [
    (["--resume", "{run}", "--seeds", "0-1"], ["--resume", "--seeds"]),
    (["--resume", "{run}", "--jobs", "2"], ["--jobs", "--seeds"]),
    (["{config}", "--jobs", "2"], ["--jobs", "--seeds"]),
    (["{config}", "--seeds", "0-1", "--print-config"], ["--print-config", "--seeds"]),
    (["{config}", "--nproc", "2", "--print-config"], ["--print-config", "--nproc"]),
    (["--resume", "{run}", "{config}"], ["--resume", "CONFIG"]),
    (["{config}", "--seeds", "0-1", "seed=3"], ["--seeds", "seed="]),
], ids=["resume-seeds", "resume-jobs", "jobs-alone", "print-config-seeds",
        "print-config-nproc", "resume-config", "seeds-seed"])
def test_options_that_would_be_dropped_are_usage_errors(run, tmp_path, args, names):
    before = (run / "meta.json").read_text(), (run / "metrics.csv").read_text()
    config = write_config(tmp_path)
    result = invoke("train", *[a.format(run=run, config=config) for a in args])
    assert result.exit_code == 2, result.output
    assert all(name in result.stderr for name in names), result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
    assert ((run / "meta.json").read_text(), (run / "metrics.csv").read_text()) == before


def test_resume_with_print_config_prints_and_trains_nothing(run):
    before = (run / "meta.json").read_text(), (run / "metrics.csv").read_text()
    result = invoke("train", "--resume", run, "train.epochs=12", "--print-config")
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["train"]["epochs"] == 12 and printed["seed"] == TINY["seed"]
    assert ((run / "meta.json").read_text(), (run / "metrics.csv").read_text()) == before
    refused = invoke("train", "--resume", run, "optimizer.lr=1", "--print-config")
    assert refused.exit_code == 2 and "cannot change optimizer.lr" in refused.stderr


# --- minidl list ---------------------------------------------------------------------------


def test_list_names_every_section_and_takes_plurals():
    result = invoke("list")
    assert result.exit_code == 0
    for heading in ("layers:", "losses:", "optimizers:", "schedulers:", "datasets:"):
        assert heading in result.stdout.splitlines()
    assert "losss" not in result.stdout
    assert "threads: int | null >= 1" in result.stdout and "standardize: bool" in result.stdout
    assert "relative to the current directory" in result.stdout  # runs_dir
    for kind in ("layers", "layer", "Layers"):
        narrowed = invoke("list", kind)
        assert narrowed.exit_code == 0 and narrowed.stdout.startswith("layers:\n")
        assert "losses:" not in narrowed.stdout
    assert invoke("list", "train").stdout.startswith("train")


def test_list_shows_the_sizes_a_layer_infers_and_what_a_set_value_must_be():
    text = invoke("list", "layers").stdout
    embedding = text[text.index("\n  embedding "):text.index("\n  flatten ")]
    assert ("num_embeddings: int (inferred: the data's vocabulary size; a value set may be "
            "larger)") in embedding
    assert ("max_len: int (inferred: the input's axis 1 (N is 0); a value set may be larger)"
            in text)
    assert "in_features: int (inferred: the input's last axis; a value set must equal it)" in text
