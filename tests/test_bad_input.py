"""Bad input of every kind: exit code 2, a message naming the key path or file and the fix,
no traceback, and nothing written."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import TINY, invoke, train_tiny, write_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished two-epoch run; each test works on its own copy."""
    return train_tiny(tmp_path_factory.mktemp("trained"), "train.epochs=2")


@dataclass
class Place:
    """Where a case runs: a good config, a copy of a finished run, a scratch folder."""

    tmp: Path
    config: Path
    run: Path

    def write(self, text: str, name: str = "bad.yaml") -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def config_with(self, **changes) -> Path:
        return write_config(self.tmp, name="bad.yaml", **changes)

    @property
    def last(self) -> Path:
        return self.run / "checkpoints" / "last.pt"


@dataclass
class Case:
    id: str
    args: Callable[[Place], list]
    expect: tuple[str, ...]  # substrings of stderr: the key path or file, and the fix
    setup: Callable[[Place], object] | None = None  # e.g. damage the run's last.pt
    usage: bool = False  # click's own usage error ("Error: Invalid value for ...")


def _model(*layers) -> dict:
    return {"model": list(layers)}


LINEAR2 = {"type": "linear", "out_features": 2}


def _truncated(p: Place) -> Path:
    data = p.last.read_bytes()
    p.last.write_bytes(data[: len(data) // 2])
    return p.last


def _garbage(p: Place) -> Path:
    p.last.write_bytes(os.urandom(3000))
    return p.last


def _foreign(p: Place) -> Path:
    path = p.tmp / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, path)
    return path


def _other_model(p: Place) -> Path:
    """A genuine minidl checkpoint of a different network."""
    state = torch.load(p.last, weights_only=True)
    state["model"] = {k: torch.zeros(5, *v.shape[1:]) for k, v in state["model"].items()}
    path = p.tmp / "other.pt"
    torch.save(state, path)
    return path


def _incomplete(p: Place) -> Path:
    state = torch.load(p.last, weights_only=True)
    del state["model"]
    path = p.tmp / "incomplete.pt"
    torch.save(state, path)
    return path


CASES = [
    # --- the config file itself
    Case("yaml-syntax", lambda p: ["train", p.write("data:\n  type: disk\n  n_train: 1: 2\n")],
         ("bad.yaml:3:13", "mapping values are not allowed")),
    Case("yaml-unclosed", lambda p: ["train", p.write("data: {type: disk\nseed: 1\n")],
         ("bad.yaml:2:5", "expected ',' or '}'")),
    Case("yaml-bad-indent", lambda p: ["train", p.write("data:\n  type: disk\n bad: 1\n")],
         ("bad.yaml:3:2",)),
    Case("empty-file", lambda p: ["train", p.write("")], ("bad.yaml", "empty")),
    Case("comments-only", lambda p: ["train", p.write("# nothing\n")], ("bad.yaml", "empty")),
    Case("top-level-list", lambda p: ["train", p.write("- data\n- model\n")],
         ("bad.yaml", "must be a mapping", "got a list")),
    Case("top-level-string", lambda p: ["train", p.write("hello\n")],
         ("bad.yaml", "must be a mapping")),
    Case("duplicate-key", lambda p: ["train", p.write("seed: 1\nseed: 2\n")],
         ("bad.yaml:2:1", "duplicate key 'seed'")),
    Case("python-tag", lambda p: ["train", p.write("seed: !!python/name:os.system\n")],
         ("bad.yaml:1:7", "not allowed")),
    Case("missing-config", lambda p: ["train", p.tmp / "nope.yaml"],
         ("config file not found", "nope.yaml")),
    Case("directory-as-config", lambda p: ["train", p.tmp], ("is a directory", "YAML file")),
    Case("run-dir-as-config", lambda p: ["train", p.run], ("is a directory", "--resume")),
    Case("not-utf8", lambda p: ["train", _bytes(p, b"seed: \xff\xfe\n")], ("bad.yaml", "UTF-8")),
    # --- unknown keys at every level
    Case("unknown-top-level", lambda p: ["train", p.config_with(epochs=5)],
         ("epochs: unknown top-level key",)),
    Case("unknown-data-key", lambda p: ["train", p.config, "data.n_trian=10"],
         ("data.n_trian: unknown option", "n_train")),
    Case("unknown-train-key", lambda p: ["train", p.config, "train.epoch=10"],
         ("train.epoch: unknown option", "epochs")),
    Case("unknown-layer-option", lambda p: ["train", p.config, "model.0.out_feature=8"],
         ("model[0].out_feature: unknown option", "out_features")),
    Case("unknown-optimizer-option", lambda p: ["train", p.config, "optimizer.learning_rate=1"],
         ("optimizer.learning_rate: unknown option", "lr")),
    Case("unknown-loss-option", lambda p: ["train", p.config, "loss.target=signed"],
         ("loss.target: unknown option", "targets")),
    # --- unknown component names
    Case("unknown-layer", lambda p: ["train", p.config, "model.1=rlu"],
         ("model[1].type: unknown layer 'rlu'", "did you mean 'relu'")),
    Case("unknown-loss", lambda p: ["train", p.config, "loss=mse_loss2"], ("loss.type", "mse")),
    Case("unknown-optimizer", lambda p: ["train", p.config, "optimizer.type=sdg"],
         ("optimizer.type: unknown optimizer 'sdg'", "sgd")),
    Case("unknown-dataset", lambda p: ["train", p.config, "data.type=disc"],
         ("data.type: unknown dataset 'disc'", "disk")),
    Case("unknown-scheduler", lambda p: ["train", p.config, "scheduler=steps"],
         ("scheduler.type", "step")),
    # --- wrong types
    Case("epochs-string", lambda p: ["train", p.config, "train.epochs=ten"],
         ("train.epochs: must be an integer >= 1", "'ten'")),
    Case("epochs-float", lambda p: ["train", p.config, "train.epochs=2.5"],
         ("train.epochs: must be an integer",)),
    Case("shuffle-not-bool", lambda p: ["train", p.config, "train.shuffle=yes"],
         ("train.shuffle: must be true or false",)),
    Case("model-not-list", lambda p: ["train", p.config_with(model={"type": "linear"})],
         ("model: must be a non-empty list",)),
    Case("train-not-mapping", lambda p: ["train", p.config, "train=5"],
         ("train: must be a mapping",)),
    Case("missing-section", lambda p: ["train", p.write(yaml.safe_dump(
        {k: v for k, v in TINY.items() if k != "optimizer"}))],
         ("optimizer: missing", "sgd")),
    # --- out of range
    Case("lr-negative", lambda p: ["train", p.config, "optimizer.lr=-1"],
         ("optimizer.lr: must be a number > 0, got -1",)),
    Case("lr-zero", lambda p: ["train", p.config, "optimizer.lr=0"], ("optimizer.lr: must be",)),
    Case("lr-infinite", lambda p: ["train", p.config, "optimizer.lr=.inf"],
         ("optimizer.lr: must be",)),
    Case("lr-nan", lambda p: ["train", p.config, "optimizer.lr=.nan"], ("optimizer.lr: must be",)),
    Case("batch-size-zero", lambda p: ["train", p.config, "train.batch_size=0"],
         ("train.batch_size: must be an integer >= 1",)),
    Case("batch-size-too-big", lambda p: ["train", p.config, "train.batch_size=100000"],
         ("train.batch_size", "larger than the training set")),
    Case("epochs-zero", lambda p: ["train", p.config, "train.epochs=0"],
         ("train.epochs: must be an integer >= 1",)),
    Case("n-train-zero", lambda p: ["train", p.config, "data.n_train=0"], ("n_train", ">= 1")),
    Case("n-train-astronomic", lambda p: ["train", p.config, "data.n_train=1e30"], ("data:",)),
    Case("dropout-p", lambda p: ["train", p.config, "model.1={type: dropout, p: 1.5}"],
         ("model[1].p: must be a number >= 0 and < 1, got 1.5",)),
    Case("device", lambda p: ["train", p.config, "train.device=tpu"],
         ("train.device: must be one of 'cpu', 'cuda', 'auto'", "'tpu'")),
    Case("dtype", lambda p: ["train", p.config, "train.dtype=float16"],
         ("train.dtype: must be one of 'float32', 'float64'",)),
    Case("seed-negative", lambda p: ["train", p.config, "seed=-3"], ("seed: must be an integer",)),
    Case("val-fraction", lambda p: ["train", p.config, "train.val_fraction=1"],
         ("train.val_fraction",)),
    # --- shapes
    Case("last-layer-width", lambda p: ["train", p.config, "model.2.out_features=3"],
         ("model[2].out_features", "2 classes", "set it to 2")),
    Case("in-features-mismatch", lambda p: ["train", p.config, "model.2.in_features=5"],
         ("model[2].in_features: is 5", "set it to 8")),
    Case("no-parameters", lambda p: ["train", p.config_with(model=["relu", "tanh"])],
         ("model: the network has no parameters", "linear")),
    # --- overrides
    Case("override-without-equals", lambda p: ["train", p.config, "optimizer.lr"],
         ("override 'optimizer.lr': expected KEY=VALUE",)),
    Case("override-empty-key", lambda p: ["train", p.config, "=0.1"], ("the key is empty",)),
    Case("override-empty-part", lambda p: ["train", p.config, "optimizer..lr=0.1"],
         ("empty part",)),
    Case("override-bad-yaml", lambda p: ["train", p.config, "model=[relu,"],
         ("override 'model=[relu,'", "bad YAML")),
    Case("override-index-out-of-range", lambda p: ["train", p.config, "model.9.p=0.1"],
         ("index 9 is out of range", "0..3")),
    Case("override-python-tag", lambda p: ["train", p.config, "seed=!!python/object:os.system"],
         ("not allowed",)),
    Case("all-problems-at-once", lambda p: ["train", p.config, "optimizer.lr=-1", "model.1=rlu",
                                            "train.batch_size=0", "data.bogus=1"],
         ("optimizer.lr", "model[1].type", "train.batch_size", "data.bogus")),
    Case("runs-dir-is-a-file", lambda p: ["train", p.config, f"runs_dir={p.config}"],
         ("runs_dir: cannot create the folder", "bad.yaml", "runs_dir=DIR")),
    # --- run directories
    Case("evaluate-missing-dir", lambda p: ["evaluate", p.tmp / "runs" / "gone"],
         ("run directory not found", "gone")),
    Case("evaluate-non-run-dir", lambda p: ["evaluate", p.tmp],
         ("is not a minidl run directory", "minidl train")),
    Case("evaluate-file-as-run", lambda p: ["evaluate", p.config],
         ("bad.yaml: is a file", "minidl train")),
    Case("plot-missing-dir", lambda p: ["plot", p.tmp / "gone"], ("run directory not found",)),
    Case("plot-non-run-dir", lambda p: ["plot", p.tmp], ("is not a minidl run directory",)),
    Case("resume-missing-dir", lambda p: ["train", "--resume", p.tmp / "gone"],
         ("run directory not found",)),
    Case("resume-non-run-dir", lambda p: ["train", "--resume", p.tmp],
         ("is not a minidl run directory",)),
    # --- checkpoints
    Case("truncated-checkpoint", lambda p: ["evaluate", p.run, "--checkpoint", _truncated(p)],
         ("last.pt", "truncated or corrupt")),
    Case("garbage-checkpoint", lambda p: ["evaluate", p.run, "--checkpoint", _garbage(p)],
         ("last.pt",)),
    Case("empty-checkpoint", lambda p: ["evaluate", p.run, "--checkpoint", _bytes(p, b"", "e.pt")],
         ("e.pt",)),
    Case("foreign-checkpoint", lambda p: ["evaluate", p.run, "--checkpoint", _foreign(p)],
         ("foreign.pt", "not a minidl checkpoint")),
    Case("plain-pickle", lambda p: ["evaluate", p.run, "--checkpoint",
                                    _bytes(p, pickle.dumps({"model": [1, 2]}), "f.pt")],
         ("f.pt",)),
    Case("checkpoint-of-another-model", lambda p: ["evaluate", p.run, "--checkpoint",
                                                   _other_model(p)],
         ("other.pt", "does not fit this run")),
    Case("incomplete-checkpoint", lambda p: ["evaluate", p.run, "--checkpoint", _incomplete(p)],
         ("incomplete.pt", "missing model")),
    Case("missing-checkpoint-file", lambda p: ["evaluate", p.run, "--checkpoint",
                                               p.tmp / "no.pt"], ("checkpoint not found", "no.pt")),
    Case("missing-epoch-checkpoint", lambda p: ["evaluate", p.run, "--checkpoint", "7"],
         ("epoch_0007.pt",)),
    Case("best-without-validation", lambda p: ["evaluate", p.run, "--checkpoint", "best"],
         ("no best.pt", "val_fraction")),
    Case("directory-as-checkpoint", lambda p: ["evaluate", p.run, "--checkpoint", p.tmp],
         ("is a directory",)),
    Case("plot-corrupt-checkpoint", lambda p: ["plot", p.run], ("last.pt", "corrupt"),
         setup=_truncated),
    Case("resume-corrupt-checkpoint", lambda p: ["train", "--resume", p.run, "train.epochs=4"],
         ("last.pt",), setup=_garbage),
    Case("resume-changes-model", lambda p: ["train", "--resume", p.run, "model.0.out_features=4",
                                            "train.epochs=4"],
         ("cannot change model[0].out_features", "train.epochs")),
    Case("resume-changes-data", lambda p: ["train", "--resume", p.run, "data.n_train=50"],
         ("cannot change data.n_train", "start a new run")),
    # an embedding takes a text data set's token ids: integer features are features too
    Case("embedding-on-features", lambda p: ["train", p.config_with(model=[
        {"type": "embedding", "embedding_dim": 4, "num_embeddings": 10}, "flatten", LINEAR2])],
         ("model[0]: embedding takes token ids, but the data gives float features (N, 2)",
          "data.type: text", "remove it")),
    Case("embedding-on-integer-npz", lambda p: ["train", _integer_npz(p)],
         ("model[0]: embedding takes token ids, but the data gives float features (N, 5)",
          "integers too); remove it")),
    Case("embedding-in-a-block-on-features", lambda p: ["train", p.config_with(model=[
        {"type": "concat", "branches": [["identity"], [{"type": "embedding", "embedding_dim": 4},
                                                       "flatten"]]}, LINEAR2])],
         ("model[0].branches[1][0]: embedding takes token ids, but model[0].branches[1]'s "
          "input gives floats (N, 2)",)),
    Case("resume-completed-run", lambda p: ["train", "--resume", p.run],
         ("already trained 2 epochs, and train.epochs is 2", "train.epochs=N")),
    Case("resume-fewer-epochs", lambda p: ["train", "--resume", p.run, "train.epochs=1"],
         ("already trained 2 epochs, and train.epochs is 1",)),
    Case("resume-corrupt-config", lambda p: ["train", "--resume", p.run, "train.epochs=4"],
         ("config.yaml:1:",), setup=lambda p: _bytes(p, b"model: [", "run/config.yaml")),
]


def _integer_npz(p: Place) -> Path:
    """A config on an .npz of int64 features 0..9 (ten ids, as it were) with an embedding
    first and its num_embeddings set: the data set's features are floats for it."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {f"x_{part}": rng.integers(0, 10, (n, 5)) for part, n in (("train", 40),
                                                                       ("test", 10))}
    arrays |= {f"y_{part}": rng.integers(0, 3, n) for part, n in (("train", 40), ("test", 10))}
    np.savez(p.tmp / "ints.npz", **arrays)
    return write_config(p.tmp, {
        "data": {"type": "npz", "path": str(p.tmp / "ints.npz")},
        "model": [{"type": "embedding", "embedding_dim": 4, "num_embeddings": 10}, "flatten",
                  {"type": "linear", "out_features": 3}],
        "loss": "cross_entropy", "optimizer": {"type": "adam"},
        "train": {"epochs": 1, "batch_size": 10}}, name="ints.yaml")


def _bytes(p: Place, data: bytes, name: str = "bad.yaml") -> Path:
    path = p.tmp / name
    path.write_bytes(data)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root with a hash of its bytes."""
    return {str(q.relative_to(root)): hashlib.sha256(q.read_bytes()).hexdigest()
            if q.is_file() else "dir" for q in sorted(root.rglob("*"))}


def test_at_least_25_cases():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(case, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    place = Place(tmp_path, write_config(tmp_path, name="bad.yaml"), run)
    if case.setup:
        case.setup(place)
    args = case.args(place)  # may write files; the snapshot is taken afterwards
    before = snapshot(tmp_path)

    result = invoke(*args)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    if case.usage:
        assert "Error: Invalid value" in result.stderr
    else:
        assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    for text in case.expect:
        assert text in result.stderr, f"{text!r} not in {result.stderr!r}"
    assert result.stdout == ""
    assert snapshot(tmp_path) == before  # no run directory, no eval.json, nothing touched
    assert not (tmp_path / "runs").exists()


def test_every_problem_on_its_own_line(tmp_path):
    config = write_config(tmp_path)
    result = invoke("train", config, "optimizer.lr=-1", "train.epochs=0", "train.dtype=half",
                    "model.0.bogus=1")
    assert result.exit_code == 2
    assert sorted(line.split(":")[1].strip() for line in result.stderr.splitlines()) == [
        "model[0].bogus", "optimizer.lr", "train.dtype", "train.epochs"]


def test_python_object_tags_are_refused_without_running_anything(tmp_path):
    pwned = tmp_path / "pwned"
    payloads = [
        f"seed: !!python/object/apply:os.system ['touch {pwned}']\n",
        f"seed: !!python/object/apply:subprocess.call [[touch, '{pwned}']]\n",
        f"seed: !!python/object/new:subprocess.Popen [[touch, '{pwned}']]\n",
        f"seed: !!python/object/apply:builtins.open ['{pwned}', w]\n",
    ]
    for payload in payloads:
        path = tmp_path / "evil.yaml"
        path.write_text(yaml.safe_dump({**TINY, "runs_dir": str(tmp_path / "runs")},
                                       sort_keys=False).replace("seed: 0\n", payload))
        for args in (["train", path], ["train", path, "--print-config"], ["gradcheck", path]):
            result = invoke(*args)
            assert result.exit_code == 2, result.output
            assert "evil.yaml:" in result.stderr and "is not allowed" in result.stderr
        assert not pwned.exists()
    assert not (tmp_path / "runs").exists()


def _subprocess(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "minidl_cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def test_no_traceback_reaches_the_terminal(trained, tmp_path):
    """Through a real process: bad YAML and a malicious checkpoint."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {type: disk\n")
    pwned = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "minidl-checkpoint", "x": _Evil(f"touch {pwned}")}, evil)
    for args in (["train", bad, "optimizer.lr=-1"], ["evaluate", trained, "--checkpoint", evil]):
        done = _subprocess(*args, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        assert done.stderr.startswith("error: ") and done.stdout == "", done.stderr
    assert not pwned.exists() and not (tmp_path / "runs").exists()


class _Evil:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("args, says", [
    (["train", "--resume", "{config}"], "--resume {config}: is a file, not a run directory; "
                                        "to train from a config use minidl train {config}"),
    (["evaluate", "{config}"], "{config}: is a file, not a run directory; train it first: "
                               "minidl train {config}, then give the run directory it prints"),
    (["predict", "{config}", "{rows}"], "train it first: minidl train {config}"),
    (["plot", "{config}"], "train it first: minidl train {config}"),
    (["sample", "{config}"], "train it first: minidl train {config}"),
    (["evaluate", "{rows}"], "{rows}: is a file, not a run directory; give the run directory"),
    (["gradcheck", "{run}"], "{run}: is a directory, not a config file; give a YAML file, e.g. "
                             "the run's own {run}/config.yaml"),
    (["plot", "{run}", "--out", "{rows}"], "--out {rows}: is a file, not a folder; give a "
                                           "folder for the pictures"),
    (["compare", "{run}", "--out", "{rows}"], "--out {rows}: is a file, not a folder"),
    (["predict", "{run}", "{rows}", "--out", "{folder}"],
     "--out {folder}: is a directory, not a results file; give a file name, e.g. --out "
     "{folder}/results.csv"),
    (["evaluate", "{run}", "--out", "{folder}"], "give a file name, e.g. --out {folder}/eval.json"),
    # a checkpoint or a folder inside a run: the run holding it is what was meant
    (["train", "--resume", "{run}/checkpoints/last.pt"],
     "--resume {run}/checkpoints/last.pt: is a file, not a run directory; it lies in the run "
     "{run}: give that folder instead, --resume {run}"),
    (["evaluate", "{run}/config.yaml"], "it lies in the run {run}: give that folder instead"),
    (["sample", "{run}/checkpoints"], "{run}/checkpoints is not a minidl run directory (it has "
                                      "no config.yaml); it lies in the run {run}: give that "
                                      "folder instead"),
    (["train", "--resume", "{run}/checkpoints"], "it lies in the run {run}: give that folder"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_path_of_the_wrong_kind_is_one_line_with_the_fix(trained, tmp_path, args, says):
    """A config where a run directory is wanted (and the reverse, and a file for an --out
    folder) was click's four-line usage error ("Directory 'x.yaml' is a file") with no fix."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    names = {"config": write_config(tmp_path), "rows": tmp_path / "rows.csv", "run": run,
             "folder": tmp_path / "folder"}
    names["rows"].write_text("x1,x2\n0.1,0.2\n")
    names["folder"].mkdir()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = invoke(*[a.format(**names) for a in args])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [f"error: {result.output[7:].strip()}"]
    assert says.format(**names) in result.output, result.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
