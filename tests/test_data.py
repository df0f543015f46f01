"""Data sets: determinism, geometry, shapes, reading a CSV once, helpers (tables: test_tables)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from minidl_cli.data import (
    Dataset,
    apply_standardizer,
    fit_standardizer,
    make_dataset,
    split_validation,
)
from minidl_cli.data.synthetic import disk, moons, spirals, xor

SYNTHETIC = ["disk", "xor", "moons", "spirals"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tensors(ds: Dataset) -> list[torch.Tensor]:
    return [ds.x_train, ds.y_train, ds.x_test, ds.y_test]


# ---------------------------------------------------------------- synthetic sets


@pytest.mark.parametrize("name", SYNTHETIC)
def test_same_seed_same_data_different_seed_different(name):
    a, b, c = (make_dataset(name, {"n_train": 50, "n_test": 30}, s) for s in (3, 3, 4))
    for ta, tb in zip(tensors(a), tensors(b), strict=True):
        assert torch.equal(ta, tb)
    assert not torch.equal(a.x_train, c.x_train)
    assert not torch.equal(a.x_train, a.x_test)  # test is a fresh draw, not a copy


@pytest.mark.parametrize("name", SYNTHETIC)
def test_shapes_and_dtypes(name):
    ds = make_dataset(name, {"n_train": 40, "n_test": 25}, 0)
    assert ds.x_train.shape == (40, 2) and ds.x_test.shape == (25, 2)
    assert ds.y_train.shape == (40,) and ds.y_test.shape == (25,)
    assert ds.x_train.dtype == ds.x_test.dtype == torch.float64
    assert ds.y_train.dtype == ds.y_test.dtype == torch.int64
    assert ds.num_features == 2 and len(ds.feature_names) == 2
    assert 0 <= int(ds.y_train.min()) and int(ds.y_train.max()) < ds.num_classes


def test_train_is_drawn_before_test_from_one_generator():
    small = disk(n_train=10, n_test=5, generator=gen(7))
    large = disk(n_train=10, n_test=500, generator=gen(7))
    assert torch.equal(small.x_train, large.x_train)
    assert torch.equal(small.x_test, large.x_test[:5])


def test_disk_labels_follow_the_geometry_and_are_balanced():
    ds = disk(generator=gen(0))
    assert ds.x_train.shape == (1000, 2) and ds.x_test.shape == (1000, 2)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert float(x.min()) >= 0 and float(x.max()) <= 1
        distance = ((x[:, 0] - 0.5) ** 2 + (x[:, 1] - 0.5) ** 2).sqrt()
        assert torch.equal(y, (distance < 1 / math.sqrt(2 * math.pi)).long())
        assert 0.4 <= float(y.double().mean()) <= 0.6


def test_xor_labels_opposite_quadrants_without_noise():
    ds = xor(n_train=200, n_test=10, generator=gen(1))
    assert ds.num_classes == 2
    assert torch.equal(ds.y_train, (ds.x_train[:, 0] * ds.x_train[:, 1] < 0).long())


def test_moons_are_balanced_two_classes():
    ds = moons(n_train=101, n_test=50, generator=gen(2))
    assert ds.num_classes == 2
    assert ds.y_train.bincount().tolist() == [51, 50]
    assert ds.y_test.bincount().tolist() == [25, 25]


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_spirals_class_counts(classes):
    ds = spirals(n_train=100, n_test=50, classes=classes, generator=gen(3))
    assert ds.num_classes == classes
    counts = ds.y_train.bincount(minlength=classes)
    assert int(counts.max() - counts.min()) <= 1


def test_spirals_without_noise_lie_in_the_unit_disk():
    ds = spirals(n_train=300, n_test=10, noise=0.0, classes=3, generator=gen(4))
    assert float(ds.x_train.norm(dim=1).max()) <= 1 + 1e-12


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (disk, {"n_train": 0}, "n_train must be an integer >= 1"),
        (disk, {"n_test": -1}, "n_test must be an integer >= 1"),
        (disk, {"n_train": 2.5}, "n_train"),
        (xor, {"noise": -0.1}, "noise must be a number >= 0"),
        (moons, {"noise": float("nan")}, "noise"),
        (spirals, {"classes": 1}, "classes must be an integer >= 2"),
    ],
)
def test_bad_arguments_raise_value_error(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs, generator=gen())


def test_make_dataset_unknown_name_suggests():
    with pytest.raises(ValueError, match="did you mean 'disk'"):
        make_dataset("dsk", {}, 0)


# ---------------------------------------------------------------- csv


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def iris_like(tmp_path):
    rows = ["a,b,label"] + [f"{i},{i * 0.5},{'cat' if i % 3 else 'dog'}" for i in range(20)]
    return write(tmp_path / "train.csv", "\n".join(rows) + "\n")


def test_csv_through_the_registry(iris_like):
    ds = make_dataset("csv", {"train": iris_like, "test_fraction": 0.5}, seed=0)
    assert len(ds.x_train) == len(ds.x_test) == 10


def _count_reads(monkeypatch) -> list[Path]:
    from minidl_cli.data import table_io

    reads, real = [], table_io.open_table
    monkeypatch.setattr(table_io, "open_table", lambda path, *a: (reads.append(Path(path)),
                                                                   real(path, *a))[1])
    return reads


def test_minidl_train_reads_a_csv_once(iris_like, tmp_path, monkeypatch):
    """A run checks its config against the data the Trainer builds: the file is read once."""
    from tests.helpers import TINY, invoke, train_tiny

    reads = _count_reads(monkeypatch)
    config = {**TINY, "data": {"type": "csv", "train": str(iris_like), "test_fraction": 0.25},
              "train": {"epochs": 2, "batch_size": 5}}
    run = train_tiny(tmp_path, config=config)
    assert (run / "checkpoints" / "last.pt").is_file()
    assert reads == [iris_like]
    for command in (["evaluate", run], ["plot", run]):  # they rebuild the run's data: once
        reads.clear()
        assert invoke(*command).exit_code == 0
        assert reads == [iris_like], command


# ---------------------------------------------------------------- helpers


def test_standardizer_zero_mean_unit_std_and_constant_columns():
    x = torch.randn(500, 3, generator=gen(), dtype=torch.float64) * 5 + 2
    x[:, 2] = 0.1  # a constant column must not divide by zero
    mean, std = fit_standardizer(x)
    z = apply_standardizer(x, mean, std)
    assert torch.allclose(z[:, :2].mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(
        z[:, :2].std(0, correction=0), torch.ones(2, dtype=torch.float64), atol=1e-12
    )
    assert std[2] == 1 and torch.isfinite(z).all()
    assert torch.allclose(z[:, 2], torch.zeros(500, dtype=torch.float64), atol=1e-12)


def test_split_validation_sizes_disjoint_and_seeded():
    ds = disk(n_train=100, n_test=10, generator=gen())
    smaller, x_val, y_val = split_validation(ds, 0.2, gen(5))
    assert len(smaller.x_train) == 80 and len(x_val) == len(y_val) == 20
    assert torch.equal(smaller.x_test, ds.x_test)
    rows = {tuple(r) for r in smaller.x_train.tolist()} | {tuple(r) for r in x_val.tolist()}
    assert len(rows) == 100  # disjoint, and nothing lost
    again = split_validation(ds, 0.2, gen(5))
    assert torch.equal(again[1], x_val)
    assert len(ds.x_train) == 100  # the original is left alone


def test_split_validation_zero_fraction_is_a_no_op():
    ds = disk(n_train=10, n_test=10, generator=gen())
    smaller, x_val, y_val = split_validation(ds, 0, gen())
    assert smaller is ds and x_val is None and y_val is None


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 0.999])
def test_split_validation_bad_fraction(fraction):
    ds = disk(n_train=10, n_test=10, generator=gen())
    with pytest.raises(ValueError, match="fraction"):
        split_validation(ds, fraction, gen())


def test_standardizer_of_huge_values_keeps_the_column():
    """The std of values near 1e200 overflowed (squares beyond float64): the column became 0."""
    x = torch.randn(60, 2, generator=gen(), dtype=torch.float64)
    mean, std = fit_standardizer(x * torch.tensor([1e200, 1.0], dtype=torch.float64))
    assert torch.isfinite(std).all() and torch.isfinite(mean).all()
    z = apply_standardizer(x * torch.tensor([1e200, 1.0], dtype=torch.float64), mean, std)
    expected = apply_standardizer(x, *fit_standardizer(x))
    assert torch.allclose(z, expected, rtol=1e-12, atol=1e-12)


def _huge_table(tmp_path: Path, feature_scale: float, target_scale: float) -> Path:
    rows = ["a,b,y"] + [f"{i / 10 * feature_scale!r},{(i % 3) / 3},{(i % 7 + 1) * target_scale!r}"
                        for i in range(30)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    config = tmp_path / "cfg.yaml"
    config.write_text("seed: 0\ndata: {type: csv, train: t.csv, test_fraction: 0.25, label: y, "
                      "task: regression}\nmodel: [{type: linear, out_features: 1}]\nloss: mse\n"
                      "optimizer: {type: sgd, lr: 0.001}\ntrain: {epochs: 2, batch_size: 10}\n"
                      f"runs_dir: {tmp_path / 'runs'}\n")
    return config


@pytest.mark.parametrize("feature_scale, target_scale, says, fix", [
    (1.0, 1e20, r"data: target 'y' of the train rows reaches [67]e\+20: its squared error "
                r"overflows float32", "data.standardize_target=true"),
    (1e200, 1.0, r"data: feature 'a' of the train rows reaches 2\.\de\+200, beyond what float32",
     "data.standardize=true"),
    # finite in float32, but its products and squares in the first layer are not: the loss
    # became nan in epoch 1 and the advice was a smaller learning rate
    (1e30, 1.0, r"data: feature 'a' of the train rows reaches \d\.\d+e\+30: the first layer's "
                r"products and squares .* overflow float32", "data.standardize=true")])
def test_values_the_network_cannot_hold_in_its_dtype_are_named_with_their_fix(
        tmp_path, feature_scale, target_scale, says, fix):
    """Checked as the network gets them (float32): the loss was inf before the first step and
    the run failed with advice to lower the learning rate."""
    from tests.helpers import invoke

    config = _huge_table(tmp_path, feature_scale, target_scale)
    result = invoke("train", config, "-q")
    assert result.exit_code == 2 and re.search(says, result.output), result.output
    assert "optimizer.lr" not in result.output and fix.replace("=", ": ") in result.output
    assert not (tmp_path / "runs").exists()
    assert invoke("train", config, "-q", fix).exit_code == 0
def test_mnist1d_is_the_papers_default_set_and_its_shuffled_variant():
    """4000 train and 1000 test signals of 40 points, 10 classes; shuffle_sequence permutes
    the 40 time steps, one fixed permutation for every signal (the paper's shuffled set)."""
    from minidl_cli.data import make_dataset
    from minidl_cli.data.mnist1d import SHUFFLE

    plain = make_dataset("mnist1d", {}, seed=0)
    assert plain.x_train.shape == (4000, 40) and plain.x_test.shape == (1000, 40)
    assert sorted(plain.y_train.unique().tolist()) == list(range(10))
    assert plain.data_files == {}  # shipped with minidl, like the digits
    assert torch.equal(make_dataset("mnist1d", {}, seed=3).x_train, plain.x_train)
    shuffled = make_dataset("mnist1d", {"shuffle_sequence": True}, seed=0)
    assert sorted(SHUFFLE) == list(range(40)) and list(SHUFFLE) != list(range(40))
    assert torch.equal(shuffled.x_test, plain.x_test[:, list(SHUFFLE)])
    assert torch.equal(shuffled.y_train, plain.y_train)
    # standardised by its authors: mean about 0, std about 1 over the whole set
    assert abs(plain.x_train.mean().item()) < 0.05 and abs(plain.x_train.std().item() - 1) < 0.05
