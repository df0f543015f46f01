"""Image data sets on tiny files written here: digits, idx, image_folder, npz; their errors."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from minidl_cli.cli import main
from minidl_cli.config import load_config
from minidl_cli.data import make_dataset
from minidl_cli.data.images import DIGITS_FILE, read_idx
from tests.helpers import invoke, write_config


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- digits (shipped)


def test_digits_is_the_shipped_file_split_by_the_seed():
    with gzip.open(DIGITS_FILE, "rt") as f:
        rows = torch.tensor([[int(v) for v in row] for row in csv.reader(f)])
    ds = make_dataset("digits", {}, 5)
    perm = torch.randperm(1797, generator=torch.Generator().manual_seed(5))
    test, train = perm[:449].sort().values, perm[449:].sort().values  # round(0.25 * 1797)
    for x, y, idx in ((ds.x_train, ds.y_train, train), (ds.x_test, ds.y_test, test)):
        assert x.dtype == torch.float64 and y.dtype == torch.int64
        assert torch.equal(x, rows[idx, :64].reshape(-1, 1, 8, 8).double())  # row-major 8×8
        assert torch.equal(y, rows[idx, 64])
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10 and ds.feature_names == []
    assert ds.class_names == [str(d) for d in range(10)]
    assert 0 == ds.x_train.min() and ds.x_train.max() == 16  # raw values, not rescaled
    assert ds.data_files == {}  # shipped with minidl: not the install's absolute path


def test_a_digits_run_evaluates_from_another_install(tmp_path, monkeypatch):
    """A digits run refers to no file of the install it was trained with: moved to another
    checkout (another DIGITS_FILE path), it still evaluates."""
    from minidl_cli import experiment
    from minidl_cli.config import load_config
    from minidl_cli.data import images
    from tests.helpers import write_config

    config = {"name": "d", "seed": 0, "data": {"type": "digits"},
              "model": ["flatten", {"type": "linear", "out_features": 10}],
              "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.01},
              "train": {"epochs": 1, "batch_size": 256}}
    run, trainer = experiment.start_run(load_config(write_config(tmp_path, config)))
    experiment.train_run(run, trainer, plots=False)
    elsewhere = tmp_path / "other-install" / "digits.csv.gz"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(DIGITS_FILE.read_bytes())
    monkeypatch.setattr(images, "DIGITS_FILE", elsewhere)
    assert run.read_meta()["data_files"] == {}
    evaluated = experiment.evaluate_run(run.path)["test"]["accuracy"]
    assert evaluated == pytest.approx(trainer.history[-1]["test_accuracy"])


def test_digits_test_fraction_and_seeds():
    small = make_dataset("digits", {"test_fraction": 0.1}, 0)
    assert (len(small.x_train), len(small.x_test)) == (1617, 180)
    a, b = make_dataset("digits", {}, 1), make_dataset("digits", {}, 2)
    assert not torch.equal(a.y_test, b.y_test)
    assert torch.equal(a.x_test, make_dataset("digits", {}, 1).x_test)


def test_digits_ships_its_licence():
    folder = DIGITS_FILE.parent
    assert "CC BY 4.0" in (folder / "LICENSE").read_text()
    assert "Alpaydin" in (folder / "README.md").read_text()


# ---------------------------------------------------------------- idx (MNIST format)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """array as an IDX file: 00 00 <type> <ndim>, big-endian sizes, big-endian values."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, code[array.dtype], array.ndim])
    header += np.array(array.shape, dtype=">u4").tobytes()
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def idx_files(tmp_path: Path, gz: bool = False, n_train: int = 6, n_test: int = 4) -> dict:
    rng = np.random.default_rng(0)
    files = {}
    for part, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 3, 5), dtype=np.uint8)
        labels = (np.arange(n) % 3).astype(np.uint8)
        suffix = ".gz" if gz else ""
        files[f"{part}_images"] = write_idx(tmp_path / f"{part}-images{suffix}", images, gz)
        files[f"{part}_labels"] = write_idx(tmp_path / f"{part}-labels{suffix}", labels, gz)
    return files


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reads_images_and_labels(tmp_path, gz):
    files = idx_files(tmp_path, gz)
    ds = make_dataset("idx", files, 0)
    raw = read_idx(files["train_images"])
    assert raw.shape == (6, 3, 5) and raw.dtype == np.dtype(">u1")
    assert torch.equal(ds.x_train, torch.from_numpy(raw.astype(np.float64))[:, None])
    assert ds.x_test.shape == (4, 1, 3, 5) and ds.y_test.tolist() == [0, 1, 2, 0]
    assert ds.class_names == ["0", "1", "2"] and ds.num_classes == 3
    assert ds.data_files == {str(p): sha256(p) for p in files.values()}


def test_idx_reads_wider_types_big_endian(tmp_path):
    values = np.array([[1.5, -2.25], [1e6, 0.0]], dtype=np.float32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f", values)), values)
    ints = np.array([70000, -3], dtype=np.int32)
    assert read_idx(write_idx(tmp_path / "i", ints)).tolist() == [70000, -3]


def test_idx_truncated_or_corrupt_files_name_the_file(tmp_path):
    files = idx_files(tmp_path)
    path = files["train_images"]
    whole = path.read_bytes()
    for broken, words in (
        (whole[:-3], "truncated"),  # values cut short
        (whole[:10], "truncated inside its header"),
        (whole + b"\0", "longer than its header says"),
        (b"\x89PNG" + whole[4:], "not an IDX file"),
        (gzip.compress(whole)[:30], "corrupt or truncated gzip"),
        (b"", "not an IDX file"),
    ):
        path.write_bytes(broken)
        with pytest.raises(ValueError, match=words) as e:
            make_dataset("idx", files, 0)
        assert str(path) in str(e.value)


def test_idx_label_and_image_counts_must_match(tmp_path):
    files = idx_files(tmp_path)
    write_idx(files["test_labels"], np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="has 4 images but .* has 3 labels") as e:
        make_dataset("idx", files, 0)
    assert str(files["test_images"]) in str(e.value) and str(files["test_labels"]) in str(e.value)


def test_idx_wrong_shapes_missing_files_and_unknown_test_labels(tmp_path):
    files = idx_files(tmp_path)
    swapped = {**files, "train_images": files["train_labels"]}
    with pytest.raises(ValueError, match="an images file holds"):
        make_dataset("idx", swapped, 0)
    with pytest.raises(ValueError, match="a labels file holds n integers"):
        make_dataset("idx", {**files, "train_labels": files["train_images"]}, 0)
    with pytest.raises(FileNotFoundError, match="nope"):
        make_dataset("idx", {**files, "test_labels": tmp_path / "nope"}, 0)
    write_idx(files["test_labels"], np.array([0, 1, 7, 0], dtype=np.uint8))
    with pytest.raises(ValueError, match="test label 7 never occurs") as e:
        make_dataset("idx", files, 0)
    assert str(files["test_labels"]) in str(e.value)


# ---------------------------------------------------------------- image_folder (Pillow)


def save_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def image_tree(root: Path, classes=("cat", "dog"), per_class: int = 3, size=(4, 5)) -> dict:
    """root/<class>/<i>.png, random RGB pixels; returns {file: array (H, W, 3)}."""
    rng = np.random.default_rng(len(str(root)))
    arrays = {}
    for c in classes:
        for i in range(per_class):
            array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            arrays[save_image(root / c / f"{i}.png", array)] = array
    return arrays


def test_image_folder_reads_rgb_in_channel_first_order(tmp_path):
    train = image_tree(tmp_path / "train")
    test = image_tree(tmp_path / "test", classes=("dog",), per_class=2)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image: ignored")
    ds = make_dataset("image_folder", {"train": tmp_path / "train", "test": tmp_path / "test"}, 0)
    assert ds.x_train.shape == (6, 3, 4, 5) and ds.x_test.shape == (2, 3, 4, 5)
    expected = np.stack(list(train.values())).transpose(0, 3, 1, 2)  # sorted: cat/0..2, dog/0..2
    assert torch.equal(ds.x_train, torch.from_numpy(expected).double())
    assert ds.class_names == ["cat", "dog"]
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [1, 1]
    listed = {str(tmp_path / "train"), str(tmp_path / "test")}  # folders: their file listing
    assert {p: d for p, d in ds.data_files.items() if p not in listed} == {
        str(p): sha256(p) for p in [*train, *test]}
    assert all(ds.data_files[p].startswith("listing:") for p in listed)


def test_image_folder_grayscale_resize_jpeg_and_split(tmp_path):
    image_tree(tmp_path / "train", classes=("a", "b", "c"), per_class=4, size=(6, 8))
    save_image(tmp_path / "train" / "a" / "x.JPG", np.zeros((6, 8, 3), np.uint8))
    options = {"train": tmp_path / "train", "test_fraction": 0.25, "grayscale": True}
    ds = make_dataset("image_folder", {**options, "size": [3, 2]}, 0)
    assert ds.input_shape == (1, 3, 2)  # [height, width]
    assert (len(ds.x_train), len(ds.x_test)) == (10, 3)  # 13 images, round(0.25 * 13) held out
    again, other = (make_dataset("image_folder", options, s) for s in (0, 1))
    assert torch.equal(again.y_test, ds.y_test) and not torch.equal(other.y_test, ds.y_test)
    gray = np.array(Image.open(tmp_path / "train" / "a" / "0.png").convert("L"))
    whole = torch.cat([again.x_train, again.x_test])
    assert any(torch.equal(x[0], torch.from_numpy(gray).double()) for x in whole)


def test_image_folder_corrupt_or_truncated_image_names_the_file(tmp_path):
    files = list(image_tree(tmp_path / "train"))
    whole = files[1].read_bytes()
    for broken in (whole[: len(whole) // 2], b"this is not a png"):
        files[1].write_bytes(broken)
        with pytest.raises(ValueError, match="is not a readable image") as e:
            make_dataset("image_folder", {"train": tmp_path / "train", "test_fraction": 0.5}, 0)
        assert str(files[1]) in str(e.value)


def test_image_folder_folder_errors(tmp_path):
    def fails(error, words, **options):
        with pytest.raises(error, match=words):
            make_dataset("image_folder", {"test_fraction": 0.5, **options}, 0)

    image_tree(tmp_path / "train")
    (tmp_path / "train" / "empty").mkdir()
    train = tmp_path / "train"
    fails(ValueError, f"class folder {train / 'empty'} has no", train=train)
    (tmp_path / "train" / "empty").rmdir()
    image_tree(tmp_path / "test", classes=("cat", "zebra"))
    with pytest.raises(ValueError, match="test class folder .*zebra has no training folder"):
        make_dataset("image_folder", {"train": tmp_path / "train", "test": tmp_path / "test"}, 0)
    (tmp_path / "flat").mkdir()
    fails(ValueError, "has no class folders", train=tmp_path / "flat")
    fails(FileNotFoundError, "data.train folder .* not found", train=tmp_path / "missing")
    image_tree(tmp_path / "one", classes=("only",))
    fails(ValueError, "one class folder", train=tmp_path / "one")
    with pytest.raises(ValueError, match="exactly one of data.test"):
        make_dataset("image_folder", {"train": tmp_path / "train"}, 0)
    save_image(tmp_path / "train" / "dog" / "big.png", np.zeros((9, 7, 3), np.uint8))
    fails(ValueError, r"big.png is 9×7 \(H×W\) pixels but .* is 4×5; set data.size: \[height",
          train=train)


def test_an_image_added_to_or_removed_from_the_folder_is_refused(tmp_path):
    image_tree(tmp_path / "train", per_class=4)
    config = {**CONVNET, "data": {"type": "image_folder", "train": "train", "test_fraction": 0.25},
              "model": ["flatten", {"type": "linear", "out_features": 2}],
              "train": {"epochs": 1, "batch_size": 4}}
    trained = invoke("train", write_config(tmp_path, config), "-q")
    assert trained.exit_code == 0, trained.output
    run = Path(trained.stdout.split()[-1])
    assert invoke("evaluate", run).exit_code == 0
    extra = tmp_path / "train" / "cat" / "extra.png"
    extra.write_bytes((tmp_path / "train" / "cat" / "0.png").read_bytes())
    refused = invoke("evaluate", run)
    assert refused.exit_code == 2
    assert f"{tmp_path / 'train'} holds a new file {extra} since" in refused.output
    assert "its file listing is not" in refused.output
    assert f"minidl predict {run} IMAGE|FOLDER|NPZ" in refused.output
    rows = list(csv.DictReader(invoke("predict", run, tmp_path / "train").stdout.splitlines()))
    assert [r["file"] for r in rows] == sorted(str(p) for p in (tmp_path / "train").rglob("*.png"))
    assert list(rows[0])[1:] == ["prediction", "prob_cat", "prob_dog"]
    one = list(csv.DictReader(invoke("predict", run, extra).stdout.splitlines()))
    same = [r for r in rows if r["file"] == str(extra)]
    assert len(one) == 1 and one[0]["prediction"] == same[0]["prediction"]
    assert float(one[0]["prob_cat"]) == pytest.approx(float(same[0]["prob_cat"]), rel=1e-4)
    pixels = np.asarray(Image.open(extra).convert("RGB")).transpose(2, 0, 1)[None]
    np.savez(tmp_path / "x.npz", x=pixels)
    on_npz = list(csv.DictReader(invoke("predict", run, tmp_path / "x.npz").stdout.splitlines()))
    assert list(on_npz[0]) == ["prediction", "prob_cat", "prob_dog"]
    assert float(on_npz[0]["prob_cat"]) == pytest.approx(float(one[0]["prob_cat"]), rel=1e-4)
    np.savez(tmp_path / "gray.npz", x=pixels[:, :1])  # the right size, one channel
    gray = invoke("predict", run, tmp_path / "gray.npz")  # said "resize them to 4×5"
    assert gray.exit_code == 2 and len(gray.output.splitlines()) == 1, gray.output
    assert "1 channel (grayscale) and the run takes 3 (RGB): convert them to RGB" in gray.output
    assert "resize" not in gray.output
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    wrong = invoke("predict", run, tmp_path / "in.csv")
    assert wrong.exit_code == 2 and "this run takes images" in wrong.output
    extra.unlink()
    (tmp_path / "train" / "dog" / "1.png").unlink()
    refused = invoke("train", "--resume", run, "-q")
    assert refused.exit_code == 2 and f"{tmp_path / 'train' / 'dog' / '1.png'} is gone" in \
        refused.output


# ---------------------------------------------------------------- npz


def write_npz(path: Path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    defaults = {"x_train": rng.random((6, 4, 4)), "y_train": np.array([0, 1, 2, 0, 1, 2]),
                "x_test": rng.random((3, 4, 4)), "y_test": np.array([2, 1, 0])}
    np.savez(path, **{**defaults, **arrays})
    return path


def test_npz_images_get_a_channel_and_labels_become_indices(tmp_path):
    path = write_npz(tmp_path / "d.npz", y_train=np.array(["b", "c", "a", "b", "c", "a"]),
                     y_test=np.array(["a", "a", "c"]))
    ds = make_dataset("npz", {"path": path}, 0)
    with np.load(path) as f:
        assert torch.equal(ds.x_train, torch.from_numpy(f["x_train"])[:, None])
    assert ds.input_shape == (1, 4, 4) and ds.class_names == ["a", "b", "c"]
    assert ds.y_train.tolist() == [1, 2, 0, 1, 2, 0] and ds.y_test.tolist() == [0, 0, 2]
    assert ds.data_files == {str(path): sha256(path)}


def test_npz_channels_first_and_tables(tmp_path):
    rng = np.random.default_rng(1)
    four = write_npz(tmp_path / "c.npz", x_train=rng.random((6, 3, 2, 2)),
                     x_test=rng.random((3, 3, 2, 2)))
    assert make_dataset("npz", {"path": four}, 0).input_shape == (3, 2, 2)
    table = write_npz(tmp_path / "t.npz", x_train=rng.random((6, 5)), x_test=rng.random((3, 5)),
                      y_train=np.array([1.0, 3, 1, 3, 1, 3]), y_test=np.array([3.0, 3, 1]))
    ds = make_dataset("npz", {"path": table}, 0)
    assert ds.feature_names == ["x1", "x2", "x3", "x4", "x5"] and ds.class_names == ["1", "3"]


def test_npz_errors_name_the_file_or_key(tmp_path):
    def fails(words, path):
        with pytest.raises(ValueError, match=words) as e:
            make_dataset("npz", {"path": path}, 0)
        assert str(path) in str(e.value)

    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((2, 2, 2)), y_train=np.zeros(2), x_test=np.zeros((1, 2, 2)))
    fails("has no array 'y_test'; it holds x_train, y_train, x_test", path)
    np.savez(path, x_train=np.zeros(2, dtype=object), y_train=np.zeros(2), x_test=np.zeros(1),
             y_test=np.zeros(1))
    fails("not a readable .npz file", path)  # object arrays need pickle: refused
    for text in (b"PK\x03\x04 truncated zip", b"x_train,y_train\n1,2\n"):
        path.write_bytes(text)
        fails("is not a .npz \\(zip\\) archive", path)
    fails("y_test has shape \\(2,\\) but x_test has 3 rows", write_npz(path, y_test=np.zeros(2)))
    fails("x_train holds NaN", write_npz(path, x_train=np.full((6, 4, 4), np.nan)))
    fails("x_train has inputs of shape \\(1, 4, 4\\) but x_test \\(1, 5, 5\\)",
          write_npz(path, x_test=np.zeros((3, 5, 5))))
    fails("labels must be integers or strings", write_npz(path, y_test=np.array([0.5, 1, 1])))
    fails("every training label is", write_npz(path, y_train=np.zeros(6, dtype=int)))
    with pytest.raises(FileNotFoundError, match="relative to the config file"):
        make_dataset("npz", {"path": tmp_path / "missing.npz"}, 0)


def table_npz(path: Path) -> Path:
    """Two classes split by the sign of the first of two features: 30 train, 10 test rows."""
    x = np.random.default_rng(2).normal(size=(40, 2))
    y = (x[:, 0] > 0).astype(np.int64)
    return write_npz(path, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])


def test_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    table_npz(tmp_path / "conf" / "d.npz")
    config_path = write_config(tmp_path / "conf", data={"type": "npz", "path": "d.npz"},
                               train={"batch_size": 10})
    monkeypatch.chdir(tmp_path)
    config = load_config(config_path)
    assert config["data"]["path"] == os.path.join(tmp_path, "conf", "d.npz")


# ---------------------------------------------------------------- a convnet end to end

CONVNET = {
    "name": "convnet",
    "seed": 0,
    "data": {"type": "npz", "path": "images.npz", "standardize": True},
    "model": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
              "batch_norm2d", "relu", {"type": "max_pool2d", "kernel_size": 2}, "flatten",
              {"type": "dropout", "p": 0.2}, {"type": "linear", "out_features": 3}],
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.01},
    "scheduler": {"type": "cosine", "T_max": 4},  # explicit: a default T_max follows epochs
    "train": {"epochs": 4, "batch_size": 16},  # 50 images: the last batch is short
}


def images_npz(path: Path) -> Path:
    """Three classes of 2-channel 6×6 images: a bright row, column or diagonal, plus noise."""
    rng = np.random.default_rng(3)
    y = np.arange(62) % 3
    x = rng.normal(0, 0.5, (62, 2, 6, 6)) + 10
    for i, label in enumerate(y):
        j = rng.integers(0, 6)
        if label == 0:
            x[i, :, j, :] += 3
        elif label == 1:
            x[i, :, :, j] += 3
        else:
            x[i, :, range(6), range(6)] += 3
    return write_npz(path, x_train=x[:50], y_train=y[:50], x_test=x[50:], y_test=y[50:])


def last_state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def test_a_convnet_trains_evaluates_plots_and_resumes_bit_identically(tmp_path):
    images_npz(tmp_path / "images.npz")
    config = write_config(tmp_path, CONVNET, name="convnet.yaml")
    straight = Path(invoke("train", config, "-q").stdout.strip().splitlines()[-1])
    result = invoke("train", config, "-q", "train.epochs=2")
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    result = invoke("train", "--resume", run, "train.epochs=4", "-q")
    assert result.exit_code == 0, result.output
    a, b = last_state(straight), last_state(run)
    assert a["epoch"] == b["epoch"] == 4
    assert "1.running_mean" in a["model"] and a["standardizer"]["mean"].shape == (2, 1, 1)
    for key in a["model"]:  # weights and BatchNorm's buffers
        assert torch.equal(a["model"][key], b["model"][key]), key
    for i, state in a["optimizer"]["state"].items():
        for name, value in state.items():  # moments (tensors) and the step count
            other = b["optimizer"]["state"][i][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other
    evaluated = invoke("evaluate", run, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    with open(run / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]  # evaluation in eval mode: BatchNorm's running stats
    assert json.loads(evaluated.stdout)["test"]["accuracy"] == float(last["test_accuracy"])
    plotted = invoke("plot", run)
    assert plotted.exit_code == 0, plotted.output
    assert (run / "plots" / "loss.png").is_file()
    np.savez(tmp_path / "images.npz", x_train=np.zeros((4, 6, 6)), y_train=np.arange(4) % 2,
             x_test=np.zeros((2, 6, 6)), y_test=np.arange(2))
    refused = invoke("evaluate", run)
    assert refused.exit_code == 2 and f"{tmp_path / 'images.npz'} has changed" in refused.output


def test_a_corrupt_file_is_exit_2_naming_it_and_nothing_is_written(tmp_path):
    files = idx_files(tmp_path, gz=True)
    files["test_images"].write_bytes(files["test_images"].read_bytes()[:-5])
    data = {"type": "idx", **{k: p.name for k, p in files.items()}}
    result = CliRunner().invoke(main, ["train", str(write_config(tmp_path, data=data))])
    assert result.exit_code == 2
    named = f"error: data: idx dataset: {files['test_images']} is a corrupt or truncated gzip"
    assert named in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- what an image folder holds


def test_one_listing_decides_what_a_folder_of_images_holds(tmp_path):
    """Subfolders of a class folder belong to it (torchvision's ImageFolder), hidden files do
    not, images are told by content; training, predict and the fingerprint agree."""
    image_tree(tmp_path / "train", per_class=2)
    image_tree(tmp_path / "train" / "cat" / "2024", classes=("more",), per_class=2)
    nameless = tmp_path / "train" / "dog" / "scan"  # a PNG without a suffix
    nameless.write_bytes((tmp_path / "train" / "dog" / "0.png").read_bytes())
    (tmp_path / "train" / "dog" / "._0.png").write_bytes(b"\0\5\26\7 AppleDouble junk")
    (tmp_path / "train" / "cat" / "README").write_text("not an image")
    options = {"train": tmp_path / "train", "test_fraction": 0.25}
    ds = make_dataset("image_folder", options, 0)
    assert len(ds.x_train) + len(ds.x_test) == 7  # cat: 2 + 2 in cat/2024/more; dog: 2 + scan
    config = {**CONVNET, "data": {"type": "image_folder", **options},
              "model": ["flatten", {"type": "linear", "out_features": 2}],
              "train": {"epochs": 1, "batch_size": 4}}
    config["data"]["train"] = "train"
    run = Path(invoke("train", write_config(tmp_path, config), "-q").stdout.split()[-1])
    rows = list(csv.DictReader(invoke("predict", run, tmp_path / "train").stdout.splitlines()))
    assert len(rows) == 7 and str(nameless) in [r["file"] for r in rows]
    extra = tmp_path / "train" / "cat" / "2024" / "more" / "extra.png"
    extra.write_bytes(nameless.read_bytes())
    refused = invoke("evaluate", run)
    assert refused.exit_code == 2 and f"holds a new file {extra} since" in refused.output
    extra.unlink()
    save_image(tmp_path / "train" / "loose.png", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"loose.png is an image directly in .*, in no class"):
        make_dataset("image_folder", options, 0)


@pytest.mark.parametrize("fmt, suffix", [("GIF", ".gif"), ("BMP", ".bmp"), ("TIFF", ".tif"),
                                         ("WEBP", ".webp"), ("PNG", ".data")])
def test_image_formats_are_told_by_content(tmp_path, fmt, suffix):
    pixels = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(pixels + i).save(tmp_path / "train" / c / f"{i}{suffix}", format=fmt,
                                             **({"lossless": True} if fmt == "WEBP" else {}))
    ds = make_dataset("image_folder", {"train": tmp_path / "train", "test": tmp_path / "train",
                                       "grayscale": True}, 0)
    assert len(ds.x_train) == len(ds.x_test) == 4
    assert torch.cat([ds.x_train, ds.x_test]).unique().tolist() == sorted(
        set((pixels.astype(float)).ravel()) | set((pixels + 1.0).ravel()))


def test_16_bit_images_keep_their_values(tmp_path):
    """Pillow's convert("L") clips I;16 pixels to 255: two classes became all white."""
    dim = np.full((4, 5), 8000, np.uint16)
    for c, base in (("dim", dim), ("bright", dim * 6)):
        for i in range(2):
            save_image(tmp_path / "train" / c / f"{i}.png", base + i)
    assert Image.open(tmp_path / "train" / "dim" / "0.png").mode.startswith("I")
    options = {"train": tmp_path / "train", "test": tmp_path / "train"}
    gray = make_dataset("image_folder", {**options, "grayscale": True}, 0)
    assert torch.cat([gray.x_train, gray.x_test]).unique().tolist() == [8000, 8001, 48000, 48001]
    rgb = make_dataset("image_folder", options, 0)
    assert rgb.input_shape == (3, 4, 5) and torch.equal(rgb.x_train[:, 0], rgb.x_train[:, 2])
    save_image(tmp_path / "train" / "dim" / "8bit.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"8bit.png holds 8-bit pixels but .*0.png I;16"):
        make_dataset("image_folder", {**options, "grayscale": True}, 0)


def test_a_photo_is_read_upright_as_its_exif_orientation_says(tmp_path):
    from PIL import ImageOps

    upright = np.full((8, 8), 30, np.uint8)
    upright[:4] = 220  # bright on top
    exif = Image.Exif()
    exif[0x0112] = 8  # Orientation 8: the stored pixels are turned; rotate 90° to view
    for c in ("up", "other"):
        folder = tmp_path / "train" / c
        folder.mkdir(parents=True)
        for i in range(2):
            stored = Image.fromarray(upright if c == "up" else upright[::-1].copy())
            stored.transpose(Image.Transpose.ROTATE_270).save(folder / f"{i}.jpg", exif=exif,
                                                              quality=100)
    path = tmp_path / "train" / "up" / "0.jpg"
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("L"))
    assert not np.array_equal(shown, np.asarray(Image.open(path).convert("L")))
    ds = make_dataset("image_folder", {"train": tmp_path / "train", "test": tmp_path / "train",
                                       "grayscale": True}, 0)
    read = ds.x_train[:, 0]
    assert any(torch.equal(x, torch.tensor(shown, dtype=torch.float64)) for x in read)
    assert all(x[:4].mean() > x[4:].mean() for x, y in zip(read, ds.y_train, strict=True)
               if ds.class_names[y] == "up")


def test_files_with_no_images_are_one_line_naming_the_file(tmp_path):
    files = idx_files(tmp_path)
    empty = {"train_images": write_idx(tmp_path / "e-img", np.zeros((0, 4, 4), np.uint8)),
             "train_labels": write_idx(tmp_path / "e-lab", np.zeros(0, np.uint8))}
    for part in ("train", "test"):
        given = {**files, **{k.replace("train", part): p for k, p in empty.items()}}
        with pytest.raises(ValueError, match=r"idx dataset: .*e-img holds no images") as e:
            make_dataset("idx", given, 0)
        assert "\n" not in str(e.value)
    for part in ("train", "test"):
        path = write_npz(tmp_path / f"{part}.npz", **{f"x_{part}": np.zeros((0, 4, 4)),
                                                      f"y_{part}": np.zeros(0, int)})
        with pytest.raises(ValueError, match=f"npz dataset: .*: x_{part} holds no rows"):
            make_dataset("npz", {"path": path}, 0)


@pytest.mark.parametrize("compression", ["gzip", "bz2", "xz", "zstd"])
def test_idx_compression_is_told_by_content(tmp_path, compression):
    import bz2
    import lzma

    import pyarrow as pa

    raw = write_idx(tmp_path / "plain", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    path = tmp_path / "images"  # no suffix says how it is compressed
    if compression == "zstd":
        with pa.output_stream(str(path), compression="zstd") as f:
            f.write(raw.read_bytes())
    else:
        module = {"gzip": gzip, "bz2": bz2, "xz": lzma}[compression]
        path.write_bytes(module.compress(raw.read_bytes()))
    assert np.array_equal(read_idx(path), read_idx(raw))


def test_a_class_the_seeded_split_puts_only_in_test_is_blamed_on_the_split(tmp_path):
    image_tree(tmp_path / "train", per_class=3)
    image_tree(tmp_path / "train", classes=("rare",), per_class=1)
    messages = []
    for seed in range(8):  # the one 'rare' image is a test image for some seeds
        try:
            make_dataset("image_folder", {"train": tmp_path / "train", "test_fraction": 0.3},
                         seed)
        except ValueError as e:
            messages.append(str(e))
    assert 0 < len(messages) < 8
    assert all("split put all 1 image(s) of class 'rare' into the test part" in m
               and "another seed" in m and "data.test" in m for m in messages)


def test_predict_refuses_images_of_another_bit_depth_than_the_run_trained_on(tmp_path):
    """16-bit values given to a network trained on 0..255 (or the reverse) are on another
    scale: predictions would be silently wrong."""
    for c, base in (("dim", 8000), ("bright", 48000)):
        for i in range(2):
            save_image(tmp_path / "train" / c / f"{i}.png", np.full((4, 5), base + i, np.uint16))
    config = {**CONVNET, "data": {"type": "image_folder", "train": "train", "test": "train",
                                  "grayscale": True},
              "model": ["flatten", {"type": "linear", "out_features": 2}],
              "train": {"epochs": 1, "batch_size": 2}}
    trained = invoke("train", write_config(tmp_path, config), "-q")
    assert trained.exit_code == 0, trained.output
    run = Path(trained.stdout.split()[-1])
    assert invoke("predict", run, tmp_path / "train" / "dim" / "0.png").exit_code == 0
    eight = save_image(tmp_path / "new" / "8bit.png", np.zeros((4, 5), np.uint8))
    refused = invoke("predict", run, eight)
    assert refused.exit_code == 2
    assert f"{eight} holds 8-bit pixels, but the run was trained on more than 8-bit" in \
        refused.output
