"""Plots: every picture is a real PNG; metrics.csv parsing; overlays and group bands."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minidl_cli import plots, tasks
from minidl_cli.data.synthetic import disk, spirals

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,elapsed_s"


def assert_png(path: Path) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"


def write_metrics(run_dir: Path, epochs: int, val: bool = False, shift: float = 0.0) -> Path:
    """A fake run directory whose metrics.csv has `epochs` rows."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [HEADER + (",val_loss,val_accuracy" if val else "")]
    for e in range(1, epochs + 1):
        loss = math.exp(-e / 10) + shift
        row = f"{e},{loss},{1 - loss / 2},{loss * 1.1},{1 - loss * 0.6},0.1,{e * 0.01}"
        lines.append(row + (f",{loss * 1.05},{1 - loss * 0.55}" if val else ""))
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def test_importing_plots_does_not_import_matplotlib():
    code = "import sys, minidl_cli.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- read_metrics


def test_read_metrics_columns_by_name(tmp_path):
    run = write_metrics(tmp_path / "run", epochs=5)
    metrics = plots.read_metrics(run / "metrics.csv")
    assert list(metrics) == HEADER.split(",")
    assert metrics["epoch"] == [1, 2, 3, 4, 5]
    assert metrics["lr"] == [0.1] * 5
    assert metrics["test_loss"][0] == pytest.approx(math.exp(-0.1) * 1.1)


def test_read_metrics_with_val_columns(tmp_path):
    run = write_metrics(tmp_path / "run", epochs=3, val=True)
    metrics = plots.read_metrics(run / "metrics.csv")
    assert list(metrics)[-2:] == ["val_loss", "val_accuracy"]
    assert len(metrics["val_loss"]) == 3


def test_read_metrics_drops_a_truncated_last_line(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(f"{HEADER}\n1,0.5,0.8,0.6,0.7,0.1,0.01\n2,0.4,0.85,0.5")
    metrics = plots.read_metrics(path)
    assert metrics["epoch"] == [1]
    path.write_text(f"{HEADER}\n1,0.5,0.8,0.6,0.7,0.1,0.01\n2,0.4,0.85,0.5,0.7,0.1,0.0")  # no \n
    assert plots.read_metrics(path)["epoch"] == [1, 2]


def test_read_metrics_rejects_a_broken_middle_line(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(f"{HEADER}\n1,0.5,0.8\n2,0.4,0.85,0.5,0.7,0.1,0.02\n")
    with pytest.raises(ValueError, match="line 2"):
        plots.read_metrics(path)


def test_read_metrics_header_only_and_missing_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(HEADER + "\n")
    assert plots.read_metrics(path)["epoch"] == []
    with pytest.raises(FileNotFoundError, match="nowhere"):
        plots.read_metrics(tmp_path / "nowhere" / "metrics.csv")


# ---------------------------------------------------------------- single pictures


def test_plot_data_tensors_and_lists(tmp_path):
    ds = disk(n_train=10, n_test=300, generator=torch.Generator().manual_seed(0))
    assert_png(plots.plot_data(ds.x_test, ds.y_test, tmp_path / "a.png", title="Disk"))
    assert_png(plots.plot_data(ds.x_test.tolist(), ds.y_test.tolist(), tmp_path / "b.png"))


def test_plot_data_many_features_and_one_feature(tmp_path):
    x = torch.randn(100, 5, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    assert_png(plots.plot_data(x, y, tmp_path / "five.png"))
    assert_png(plots.plot_data(x[:, :1], y, tmp_path / "one.png"))


def test_plot_loss_and_accuracy_with_and_without_val(tmp_path):
    for val in (False, True):
        run = write_metrics(tmp_path / f"run{val}", epochs=20, val=val)
        metrics = plots.read_metrics(run / "metrics.csv")
        assert_png(plots.plot_loss(metrics, run / "loss.png"))
        assert_png(plots.plot_accuracy(metrics, run / "accuracy.png"))


def test_plot_predictions_marks_errors(tmp_path):
    ds = spirals(n_train=10, n_test=200, classes=3, generator=torch.Generator().manual_seed(1))
    y_pred = ds.y_test.clone()
    y_pred[:17] = (y_pred[:17] + 1) % 3
    assert_png(plots.plot_predictions(ds.x_test, ds.y_test, y_pred, tmp_path / "p.png"))


def test_draw_run_plots_writes_the_four_pictures_atomically(tmp_path):
    ds = disk(n_train=50, n_test=200, generator=torch.Generator().manual_seed(0))
    run = write_metrics(tmp_path / "run", epochs=10)
    plots_dir = run / "plots" / "nested"
    task = tasks.for_dataset(ds)
    outputs = torch.nn.functional.one_hot(ds.y_test, 2).double()  # right on every point
    written = plots.draw_run_plots(
        plots_dir, ds, task, outputs, plots.read_metrics(run / "metrics.csv")
    )
    names = ["data.png", "loss.png", "accuracy.png", "predictions.png"]
    assert [p.name for p in written] == names
    for path in written:
        assert_png(path)
    assert sorted(p.name for p in plots_dir.iterdir()) == sorted(names)  # no temp files left
    again = plots.draw_run_plots(plots_dir, ds, task, -outputs, run / "metrics.csv")  # a path
    assert [p.name for p in again] == names


# ---------------------------------------------------------------- several runs


def test_overlay_runs_of_different_lengths(tmp_path):
    runs = [
        write_metrics(tmp_path / "a", epochs=30),
        write_metrics(tmp_path / "b", epochs=12, val=True, shift=0.1),
        write_metrics(tmp_path / "c", epochs=1),
    ]
    out = tmp_path / "overlay"
    written = plots.overlay_runs(runs, out, ["lr 0.1", "lr 0.05", "one epoch"])
    assert written == [out / "loss.png", out / "accuracy.png"]
    for path in written:
        assert_png(path)
    assert plots.overlay_runs(runs, out)[0] == out / "loss.png"  # labels default to dir names


def test_overlay_runs_label_count_and_missing_run(tmp_path):
    run = write_metrics(tmp_path / "a", epochs=3)
    with pytest.raises(ValueError, match="2 labels given for 1 runs"):
        plots.overlay_runs([run], tmp_path / "out", ["x", "y"])
    with pytest.raises(FileNotFoundError, match="missing"):
        plots.overlay_runs([run, tmp_path / "missing"], tmp_path / "out", ["x", "y"])


def test_plot_group_mean_and_band_over_common_epochs(tmp_path):
    runs = [
        write_metrics(tmp_path / f"seed{i}", epochs=n, val=True, shift=0.05 * i)
        for i, n in enumerate((20, 20, 15))
    ]
    written = plots.plot_group(runs, tmp_path / "group")
    assert [p.name for p in written] == ["loss.png", "accuracy.png"]
    for path in written:
        assert_png(path)
    assert_png(plots.plot_group(runs[:1], tmp_path / "single")[0])  # one run: no band


def test_plot_group_needs_runs(tmp_path):
    with pytest.raises(ValueError, match="at least one run"):
        plots.plot_group([], tmp_path / "group")
