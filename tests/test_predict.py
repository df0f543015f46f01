"""`minidl predict`, `minidl evaluate --data`, `minidl_cli.load` and what a run knows about
its data: class names, feature columns by name, and files that changed after training."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import minidl_cli
from tests.helpers import TINY, invoke, train_tiny, write_config

SPECIES = ["setosa", "versicolor", "virginica"]


def flowers(path: Path, n: int, seed: int) -> Path:
    """An id column, two measurements, a colour category and a string label."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    length, width = kind + rng.normal(0, 0.3, n), 2 - kind + rng.normal(0, 0.3, n)
    colour = np.array(["blue", "red"])[(kind + rng.integers(0, 2, n)) % 2]
    lines = ["id,length,width,colour,species"] + [
        f"{100 + i},{length[i]:.3f},{width[i]:.3f},{colour[i]},{SPECIES[kind[i]]}"
        for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("flowers")
    config = {
        "name": "flowers", "seed": 0,
        "data": {"type": "csv", "train": str(flowers(folder / "train.csv", 60, 0)),
                 "test": str(flowers(folder / "test.csv", 20, 1)), "label": "species",
                 "exclude": ["id"], "categorical": ["colour"], "standardize": True},
        "model": [{"type": "linear", "out_features": 8}, "tanh",
                  {"type": "linear", "out_features": 3}],
        "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.05},
        "train": {"epochs": 3, "batch_size": 20, "checkpoint_every": 2},
    }
    result = invoke("train", write_config(folder, config), "--quiet")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def predict(*args) -> list[dict[str, str]]:
    result = invoke("predict", *args)
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_predict_writes_class_names_and_probabilities_row_by_row(run):
    rows = predict(run, run.parent.parent / "test.csv")
    assert len(rows) == 20 and list(rows[0]) == ["prediction", *(f"prob_{s}" for s in SPECIES)]
    for row in rows:
        probs = [float(row[f"prob_{s}"]) for s in SPECIES]
        assert sum(probs) == pytest.approx(1, abs=1e-12)
        assert row["prediction"] == SPECIES[int(np.argmax(probs))]  # the name, as in the file
    meta = json.loads((run / "meta.json").read_text())
    assert meta["classes"] == SPECIES and meta["features"] == ["length", "width", "colour=blue",
                                                               "colour=red"]


def test_columns_are_found_by_name_and_other_columns_ignored(run, tmp_path):
    source = (run.parent.parent / "test.csv").read_text().splitlines()
    table = [line.split(",") for line in source]
    order = [3, 2, 4, 1]  # colour, width, species, length; the id column left out
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join(",".join([*(r[i] for i in order), "extra"]) for r in table))
    assert predict(run, shuffled) == predict(run, run.parent.parent / "test.csv")
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.csv.read_csv(shuffled), parquet)
    assert [r["prediction"] for r in predict(run, parquet)] == [
        r["prediction"] for r in predict(run, shuffled)]


def test_a_missing_column_is_exit_2_naming_it(run, tmp_path):
    partial = tmp_path / "partial.csv"
    partial.write_text("length,colour\n1.0,red\n")
    result = invoke("predict", run, partial)
    assert result.exit_code == 2 and "no feature column 'width'" in result.output
    assert "Traceback" not in result.output


def test_a_header_without_rows_is_one_line_for_predict_as_for_evaluate(run, tmp_path):
    """A table with a header and no rows: the same one line, exit 2, from both commands; an
    empty tensor in Python gives no predictions."""
    header = tmp_path / "hdr.csv"
    header.write_text("id,length,width,colour,species\n")
    for command in ("predict", "evaluate"):
        result = invoke(command, run, *(["--data"] if command == "evaluate" else []), header)
        assert result.exit_code == 2, result.output
        assert result.output.strip().endswith("hdr.csv has a header but no data rows")
        assert len(result.output.splitlines()) == 1 and "Traceback" not in result.output
    predictor = minidl_cli.load(run)
    assert predictor.predict(torch.zeros(0, len(predictor.encoded_features))).shape == (0,)

def test_ragged_rows_are_one_line_for_predict_and_evaluate(run, tmp_path):
    rows = (run.parent.parent / "test.csv").read_text().splitlines()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join(rows[:3] + [row + ",9" for row in rows[3:15]]) + "\n")
    for command in ("predict", "evaluate"):
        result = invoke(command, run, *(["--data"] if command == "evaluate" else []), ragged)
        assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
        assert "12 rows do not have one field per column, the first at line 4 (6 fields, " \
               "the header has 5); fix or remove them" in result.output

def test_load_predicts_as_the_cli_and_to_torch_computes_the_same(run, tmp_path):
    predictor = minidl_cli.load(run)
    test = run.parent.parent / "test.csv"
    assert predictor.classes == SPECIES and predictor.features == ["length", "width", "colour"]
    assert predictor.feature_names_in_ == predictor.features
    encoded = predictor.encoded_features
    assert encoded[:3] == ["length", "width", "colour=blue"] and len(encoded) == 4
    with pytest.raises(ValueError, match="encoded columns length, width, colour=blue"):
        predictor.predict(torch.zeros(2, 3))
    assert predictor.predict(test).tolist() == [r["prediction"] for r in predict(run, test)]
    assert predictor.predict(pa.csv.read_csv(test)).tolist() == predictor.predict(test).tolist()
    probs = predictor.predict_proba(test)
    assert probs.shape == (20, 3) and np.allclose(probs.sum(1), 1)
    x = torch.randn(7, 4)
    torch_net = predictor.to_torch()
    assert isinstance(torch_net, torch.nn.Sequential) and type(torch_net[1]) is torch.nn.Tanh
    with torch.no_grad():
        assert torch.equal(torch_net(x), predictor.model(x))


def test_out_file_and_an_epoch_checkpoint(run, tmp_path):
    out = tmp_path / "pred.csv"
    result = invoke("predict", run, run.parent.parent / "test.csv", "--checkpoint", "2",
                    "--out", out)
    assert result.exit_code == 0 and result.stdout == ""
    epoch_2 = minidl_cli.load(run, checkpoint=2)
    assert epoch_2.epoch == 2
    with out.open() as f:
        assert [r["prediction"] for r in csv.DictReader(f)] == epoch_2.predict(
            run.parent.parent / "test.csv").tolist()


def test_a_missing_out_folder_and_a_folder_as_input_are_one_line(run, tmp_path):
    test = run.parent.parent / "test.csv"
    result = invoke("predict", run, test, "--out", tmp_path / "nope" / "x.csv")
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1
    assert "the folder" in result.output and "nope does not exist" in result.output
    result = invoke("predict", run, tmp_path)
    assert result.exit_code == 2 and "is a folder; give a CSV or Parquet file" in result.output
    assert len(result.output.splitlines()) == 1


def test_evaluate_data_matches_the_test_split_and_prints_class_names(run):
    test = run.parent.parent / "test.csv"
    on_file = json.loads(invoke("evaluate", run, "--data", test, "--json").stdout)
    on_split = json.loads(invoke("evaluate", run, "--json").stdout)
    file, split = dict(on_file["file"]), dict(on_split["test"])
    assert file.pop("confusion") == split.pop("confusion")  # approx takes no nested lists
    assert file == pytest.approx(split)
    assert on_split["classes"] == SPECIES
    printed = invoke("evaluate", run).stdout
    assert "true \\ predicted" in printed and all(s in printed for s in SPECIES)


def test_changed_data_is_refused_but_predict_needs_none(tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    train = flowers(folder / "train.csv", 40, 0)
    config = {**TINY, "data": {"type": "csv", "train": str(train), "test_fraction": 0.25,
                               "label": "species", "exclude": ["id"],
                               "categorical": ["colour"]},
              "model": [{"type": "linear", "out_features": 3}], "loss": "cross_entropy",
              "train": {"epochs": 2, "batch_size": 10}}
    run = train_tiny(folder, config=config)
    rows = train.read_text().splitlines()
    train.write_text("\n".join([rows[0], *reversed(rows[1:])]) + "\n")  # same rows, new order
    for args in (["evaluate", run], ["train", "--resume", run, "train.epochs=4"], ["plot", run]):
        result = invoke(*args)
        assert result.exit_code == 2, args
        assert f"{train.absolute()} has changed" in result.output
        assert f"minidl evaluate {run} --data" in result.output or "new run" in result.output
    assert json.loads((run / "meta.json").read_text())["epochs_completed"] == 2
    new = folder / "new.csv"
    new.write_text(train.read_text())
    train.unlink()
    assert len(predict(run, new)) == 40  # the checkpoint is enough
    result = invoke("evaluate", run, "--data", new, "--json")
    assert result.exit_code == 0 and "accuracy" in json.loads(result.stdout)["file"]


def test_a_synthetic_run_predicts_from_x1_x2(tmp_path):
    run = train_tiny(tmp_path, "train.epochs=1")
    points = tmp_path / "points.csv"
    points.write_text("x2,x1\n0.5,0.5\n0.0,0.0\n")
    rows = predict(run, points)
    predictor = minidl_cli.load(run)
    x = torch.tensor([[0.5, 0.5], [0.0, 0.0]])
    assert [r["prediction"] for r in rows] == predictor.predict(x).tolist()
    assert predictor.classes == ["0", "1"] and predictor.features == ["x1", "x2"]


def test_importing_minidl_cli_for_load_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, minidl_cli; assert callable(minidl_cli.load); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 3-epoch run the tests below read, never change."""
    return train_tiny(tmp_path_factory.mktemp("trained"))


# --- predict reads a pipe as well as a file --------------------------------------------------


def test_predict_reads_a_pipe_and_stdin(trained, tmp_path):
    """`minidl predict RUN <(printf ...)` said "data file /dev/fd/63 not found"."""
    import threading

    from click.testing import CliRunner

    from minidl_cli.cli import main

    rows_text = "x1,x2\n0.1,0.2\n0.9,0.9\n"
    (tmp_path / "rows.csv").write_text(rows_text)
    expected = invoke("predict", trained, tmp_path / "rows.csv").stdout
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=(rows_text,))
    writer.start()
    piped = invoke("predict", trained, fifo)
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # frees a writer nobody read
    writer.join()
    assert piped.exit_code == 0, piped.output
    stdin = CliRunner().invoke(main, ["predict", str(trained), "-"], input=rows_text)
    assert piped.stdout == stdin.stdout == expected and expected.count("\n") == 3


# --- image runs: inputs told by content, from files, stdin or pipes; evaluate --data ----------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    config = {"name": "digits", "seed": 0, "data": {"type": "digits"},
              "model": ["flatten", {"type": "linear", "out_features": 10}],
              "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.01},
              "train": {"epochs": 1, "batch_size": 256}}
    result = invoke("train", write_config(folder, config), "--quiet")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def cli(*args, input=None):
    from click.testing import CliRunner

    from minidl_cli.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_an_image_on_stdin_or_without_a_suffix_keeps_its_kind(digits_run, tmp_path):
    from PIL import Image

    Image.fromarray((np.eye(8) * 16).astype(np.uint8)).save(tmp_path / "x.png")
    np.savez(tmp_path / "x.npz", x=np.eye(8)[None] * 16)
    as_file = predict(digits_run, tmp_path / "x.png")
    (tmp_path / "scan").write_bytes((tmp_path / "x.png").read_bytes())
    assert predict(digits_run, tmp_path / "scan")[0]["prediction"] == as_file[0]["prediction"]
    png = cli("predict", digits_run, "-", input=(tmp_path / "x.png").read_bytes())
    assert png.exit_code == 0, png.output
    rows = list(csv.DictReader(io.StringIO(png.stdout)))
    assert rows[0]["file"] == "<stdin>" and rows[0]["prob_3"] == as_file[0]["prob_3"]
    npz = cli("predict", digits_run, "-", input=(tmp_path / "x.npz").read_bytes())
    assert npz.exit_code == 0, npz.output
    assert list(csv.DictReader(io.StringIO(npz.stdout)))[0]["prediction"] == \
        as_file[0]["prediction"]
    text = cli("predict", digits_run, "-", input=b"a,b\n1,2\n")
    assert text.exit_code == 2 and "<stdin> is not an image" in text.output
    assert "minidl-" not in text.output


def test_errors_about_stdin_name_it_not_a_temporary_copy(run):
    for rows, says in (("length,colour\n1,red\n", "<stdin> has no feature column 'width'"),
                       ("length,width,colour\n1,zz,red\n", "<stdin>: column 'width' holds")):
        result = cli("predict", run, "-", input=rows)
        assert result.exit_code == 2 and says in result.output, result.output
        assert "minidl-" not in result.output and "tmp" not in result.output


def test_evaluate_data_on_an_image_run_takes_labelled_images(digits_run, tmp_path):
    from PIL import Image

    from minidl_cli.data.images import DIGITS_FILE

    table = np.loadtxt(DIGITS_FILE, delimiter=",", dtype=np.int64)[:40]
    x, y = table[:, :64].reshape(-1, 8, 8), table[:, 64]
    np.savez(tmp_path / "labelled.npz", x=x, y=y)
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (tmp_path / "folder" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.astype(np.uint8)).save(tmp_path / "folder" / str(label) / f"{i}.png")
    predictor = minidl_cli.load(digits_run)
    expected = float((predictor.predict(torch.tensor(x[:, None], dtype=torch.float64))
                      == y.astype(str)).mean())
    for data in (tmp_path / "labelled.npz", tmp_path / "folder"):
        result = invoke("evaluate", digits_run, "--data", data, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["file"]["accuracy"] == pytest.approx(expected)
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    wrong = invoke("evaluate", digits_run, "--data", tmp_path / "rows.csv")
    assert wrong.exit_code == 2 and "a folder FOLDER/<class>/image.png or an .npz" in \
        wrong.output and "tensor" not in wrong.output.split("in Python")[0]


# --- --out never overwrites what the command reads --------------------------------------------


def test_out_onto_the_input_or_into_the_run_is_refused_and_nothing_written(tmp_path):
    """`predict RUN rows.csv --out rows.csv` replaced the rows with predictions; an --out of
    the run's checkpoints/last.pt or config.yaml made the run unusable; both exit 0."""
    trained = train_tiny(tmp_path)  # its own run: the fixture's must never change
    rows = tmp_path / "rows.csv"
    rows.write_text("x1,x2\n0.1,0.2\n")
    result = invoke("predict", trained, rows, "--out", rows)
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert "is the input" in result.output and rows.read_text() == "x1,x2\n0.1,0.2\n"
    for inside in ("checkpoints/last.pt", "config.yaml", "meta.json", "new.csv"):
        before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
        for command in (("predict", trained, rows), ("evaluate", trained)):
            result = invoke(*command, "--out", trained / inside)
            assert result.exit_code == 2 and "inside the run" in result.output, result.output
            assert len(result.output.splitlines()) == 1
        assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == before
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("x1,x2,label\n0.1,0.2,0\n")
    result = invoke("evaluate", trained, "--data", labelled, "--out", labelled)
    assert result.exit_code == 2 and "is the input" in result.output
    assert labelled.read_text() == "x1,x2,label\n0.1,0.2,0\n"
    assert invoke("predict", trained, rows).exit_code == 0


def test_a_value_beyond_the_runs_dtype_is_refused_naming_row_and_column(trained, tmp_path):
    """1e200 in a float32 run's input gave NaN probabilities (and a made-up class), exit 0;
    training refuses the same value."""
    rows = tmp_path / "huge.csv"
    rows.write_text("x1,x2\n0.1,0.2\n0.3,1e200\n")
    labelled = tmp_path / "huge-labelled.csv"
    labelled.write_text("x1,x2,label\n0.1,0.2,0\n0.3,1e200,1\n")
    for command in (("predict", trained, rows), ("evaluate", trained, "--data", labelled)):
        result = invoke(*command)
        assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
        assert "data row 2, column 'x2'" in result.output and "float32" in result.output
    with pytest.raises(ValueError, match="data row 2"):
        minidl_cli.load(trained).predict(torch.tensor([[0.1, 0.2], [0.3, 1e200]]))


def test_evaluate_data_reads_stdin_as_predict_does(tmp_path):
    """`minidl evaluate RUN --data -` said "file not found: -"."""
    from click.testing import CliRunner

    from minidl_cli.cli import main

    trained = train_tiny(tmp_path)  # its own run: eval-stdin.json is written into it
    text = "x1,x2,label\n0.1,0.2,0\n0.9,0.9,1\n0.2,0.7,1\n"
    (tmp_path / "labelled.csv").write_text(text)
    on_file = json.loads(invoke("evaluate", trained, "--data", tmp_path / "labelled.csv",
                                "--json").stdout)
    result = CliRunner().invoke(main, ["evaluate", str(trained), "--data", "-", "--json"],
                                input=text)
    assert result.exit_code == 0, result.output
    on_stdin = json.loads(result.stdout)
    assert on_stdin["data"] == "<stdin>" and on_stdin["file"] == on_file["file"]
    assert json.loads((trained / "eval-stdin.json").read_text())["file"] == on_file["file"]


def test_a_shuffle_sequence_run_takes_signals_in_their_natural_order(tmp_path):
    """A run on MNIST-1D's shuffled variant permutes the signals predict and evaluate --data
    are given as training did: the natural test signals give the test split's evaluation."""
    from minidl_cli.data.mnist1d import MNIST1D_FILE, N_TRAIN, SHUFFLE

    config = Path(__file__).resolve().parents[1] / "configs" / "mnist1d-logistic.yaml"
    result = invoke("train", config, "-q", "train.epochs=1", "data.shuffle_sequence=true",
                    f"runs_dir={tmp_path}")
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    table = np.loadtxt(MNIST1D_FILE, delimiter=",", skiprows=1)[N_TRAIN:N_TRAIN + 200]
    natural = tmp_path / "natural.csv"
    np.savetxt(natural, table, delimiter=",", comments="",
               header=",".join([f"x{i}" for i in range(40)] + ["label"]), fmt="%.17g")
    on_file = json.loads(invoke("evaluate", run, "--data", natural, "--json").stdout)["file"]
    predictor = minidl_cli.load(run)
    signals = torch.from_numpy(table[:, :40].copy())
    with torch.no_grad():  # the network on the signals permuted as in training
        expected = predictor.model(signals[:, list(SHUFFLE)].to(predictor.dtype))
    assert torch.allclose(predictor.outputs(signals), expected)
    assert torch.allclose(predictor.outputs(natural), expected)
    loss = torch.nn.functional.cross_entropy(expected.double(), torch.from_numpy(
        table[:, 40].astype(np.int64))).item()
    assert on_file["loss"] == pytest.approx(loss, rel=1e-5)
    rows = predict(run, natural)
    assert [r["prediction"] for r in rows] == [str(int(c)) for c in expected.argmax(1)]
    state = torch.load(predictor.checkpoint, weights_only=True)
    state["preprocessing"] = None  # a checkpoint from before the permutation was recorded
    older = minidl_cli.predict.Predictor(state, predictor.checkpoint, run)
    assert torch.allclose(older.outputs(signals), expected)


def test_out_onto_a_runs_training_data_or_into_another_run_is_refused(tmp_path):
    """`predict R new.csv --out reg.csv` replaced R's own training data (the next evaluate
    said its data had changed); an --out of another run's checkpoints/last.pt or config.yaml,
    or a plot --out into another run's folder, destroyed that run; all exit 0. An ordinary
    file the user names is overwritten, as a results file should be."""
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=rng, dtype=torch.float64)
    data = tmp_path / "reg.csv"
    data.write_text("a,b,y\n" + "".join(f"{a},{b},{a - 2 * b}\n" for a, b in x.tolist()))
    config = {**TINY, "data": {"type": "csv", "train": str(data), "label": "y",
                               "test_fraction": 0.25, "task": "regression"},
              "model": [{"type": "linear", "out_features": 1}], "loss": "mse",
              "train": {"epochs": 1, "batch_size": 10}}
    reg = train_tiny(tmp_path, config=config)
    other = train_tiny(tmp_path)
    rows = tmp_path / "new.csv"
    rows.write_text("a,b\n0.1,0.2\n")
    kept = {p: p.read_bytes() for p in [data, *tmp_path.joinpath("runs").rglob("*")]
            if p.is_file()}
    for command, run in ((("predict", reg, rows), reg), (("predict", other, rows), other),
                         (("evaluate", other), other)):
        result = invoke(*command, "--out", data)  # some run's training data, or the input
        assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
        assert f"is the data {reg} was trained on" in result.output, result.output
        for inside in ("checkpoints/last.pt", "config.yaml", "meta.json"):
            victim = other if run == reg else reg
            result = invoke(*command, "--out", victim / inside)
            assert result.exit_code == 2, result.output
            assert f"inside the run {victim}" in result.output, result.output
    for out in (other, other / "plots", other / "checkpoints"):
        result = invoke("plot", reg, "--out", out)
        assert result.exit_code == 2 and f"inside the run {other}" in result.output
        assert len(result.output.splitlines()) == 1
    assert {p: p.read_bytes() for p in [data, *tmp_path.joinpath("runs").rglob("*")]
            if p.is_file()} == kept
    assert invoke("plot", reg, "--out", reg / "plots").exit_code == 0  # where it draws anyway

    results = tmp_path / "results.csv"
    results.write_text("old results\n")
    assert invoke("predict", reg, rows, "--out", results).exit_code == 0
    assert results.read_text().startswith("prediction")


def test_out_onto_the_data_of_a_run_in_another_runs_folder_is_refused(tmp_path, monkeypatch):
    """A run kept with runs_dir=runs2 is not beside the run predict uses (runs/): its
    training data was overwritten. The runs folders in the current directory and in the
    --out file's folder are searched too; an ordinary file there is still overwritten."""
    data = tmp_path / "reg.csv"
    data.write_text("a,b,y\n" + "".join(f"{i / 10},{i % 3},{i / 5}\n" for i in range(20)))
    config = {**TINY, "data": {"type": "csv", "train": str(data), "label": "y",
                               "test_fraction": 0.25, "task": "regression"},
              "model": [{"type": "linear", "out_features": 1}], "loss": "mse",
              "train": {"epochs": 1, "batch_size": 10}}
    kept = train_tiny(tmp_path, f"runs_dir={tmp_path / 'runs2'}", config=config)
    assert kept.parent == tmp_path / "runs2"
    user = train_tiny(tmp_path)  # in runs/, nothing beside it trained on reg.csv
    rows = tmp_path / "new.csv"
    rows.write_text("x1,x2\n0.1,0.2\n")
    original = data.read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, out in ((tmp_path, Path("reg.csv")), (elsewhere, data)):
        monkeypatch.chdir(cwd)
        result = invoke("predict", user, rows, "--out", out)
        assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
        assert f"is the data {kept} was trained on" in result.output, result.output
        assert data.read_bytes() == original
    results = tmp_path / "results.csv"
    results.write_text("old results\n")
    assert invoke("predict", user, rows, "--out", results).exit_code == 0
    assert results.read_text().startswith("prediction")


@pytest.mark.parametrize("x, why", [(["\n"], "too many dimensions 'str'"),
                                    ([[1.0, 2.0], [3.0]], "expected sequence of length 2")])
def test_a_table_run_given_neither_numbers_nor_a_table_says_what_it_takes(run, x, why):
    """A list of texts (or ragged lists) given to a table run's predict was torch's bare
    'too many dimensions 'str''; it names what the run takes, then torch's reason."""
    model = minidl_cli.load(run)
    with pytest.raises(ValueError) as error:
        model.predict(x)
    message = str(error.value)
    assert message.startswith("predict: this run takes numbers of shape (n, ")
    assert "or a table (a CSV or Parquet path" in message and why in message
