"""Plots: every picture is a real PNG; metrics.csv parsing; overlays and group bands."""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from minidl_cli import plots, tasks
from minidl_cli.data.base import Dataset
from minidl_cli.data.synthetic import disk, spirals
from minidl_cli.plots import canvas, confusion, curves, overlays, points, regression
from minidl_cli.plots import images as images_module
from tests.helpers import TINY, invoke, train_tiny

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,elapsed_s"


def assert_png(path: Path) -> tuple[int, int]:
    """A real PNG of a sane size in pixels and bytes; returns (width, height)."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert 200 <= width <= 4000 and 200 <= height <= 4000, (width, height)
    return width, height


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


def drawn_points(ax) -> dict[str, np.ndarray]:
    """The (x, y) points each labelled marker artist of `ax` draws: label -> (n, 2)."""
    found = {}
    for artist in [*ax.lines, *ax.collections]:
        label = artist.get_label()
        if label.startswith("_"):
            continue
        if hasattr(artist, "get_offsets"):
            found[label] = np.asarray(artist.get_offsets(), dtype=float)
        else:
            found[label] = np.column_stack([artist.get_xdata(), artist.get_ydata()]).astype(float)
    return found


def test_plot_data_draws_each_class_where_its_points_are(tmp_path):
    ds = disk(n_train=10, n_test=300, generator=torch.Generator().manual_seed(0))
    assert_png(plots.plot_data(ds.x_test, ds.y_test, tmp_path / "a.png", title="Disk"))
    for x, y in ((ds.x_test, ds.y_test), (ds.x_test.tolist(), ds.y_test.tolist())):
        with canvas.default_style():
            fig = points.data_figure(x, y)
        shown = drawn_points(fig.axes[0])
        for label in (0, 1):
            expected = ds.x_test[ds.y_test == label].double().numpy()
            np.testing.assert_allclose(shown[f"class {label}"], expected, rtol=1e-6)


def test_plot_data_of_many_features_shows_principal_components_and_one_feature_a_line(tmp_path):
    x = torch.randn(100, 5, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    assert_png(plots.plot_data(x, y, tmp_path / "five.png"))
    with canvas.default_style():
        five, one = points.data_figure(x, y), points.data_figure(x[:, :1], y)
    assert "principal components" in five.axes[0].get_title()
    xy = np.concatenate(list(drawn_points(one.axes[0]).values()))
    assert sorted(xy[:, 0].tolist()) == pytest.approx(sorted(x[:, 0].tolist()), rel=1e-6)
    assert (xy[:, 1] == 0).all()  # one feature: its values along the x axis


@pytest.mark.parametrize("val", [False, True])
def test_plot_loss_and_accuracy_draw_one_curve_per_split(tmp_path, val):
    run = write_metrics(tmp_path / "run", epochs=20, val=val)
    metrics = plots.read_metrics(run / "metrics.csv")
    assert_png(plots.plot_loss(metrics, run / "loss.png"))
    for quantity in ("loss", "accuracy"):
        with canvas.default_style():
            fig = curves.curve_figure(metrics, quantity)
        lines = {line.get_label(): line for line in fig.axes[0].lines}
        splits = ["train", "test", *(["val"] if val else [])]
        assert len(lines) == len(splits)
        for split, line in zip(splits, fig.axes[0].lines, strict=True):
            assert list(line.get_ydata()) == pytest.approx(metrics[f"{split}_{quantity}"])
            assert list(line.get_xdata()) == list(range(1, 21))


def test_plot_predictions_marks_each_error_once(tmp_path):
    ds = spirals(n_train=10, n_test=200, classes=3, generator=torch.Generator().manual_seed(1))
    y_pred = ds.y_test.clone()
    y_pred[:17] = (y_pred[:17] + 1) % 3
    assert_png(plots.plot_predictions(ds.x_test, ds.y_test, y_pred, tmp_path / "p.png"))
    with canvas.default_style():
        fig = points.predictions_figure(ds.x_test, ds.y_test, y_pred)
    marks = drawn_points(fig.axes[0])["error"]
    np.testing.assert_allclose(marks, ds.x_test[:17].double().numpy(), rtol=1e-6)


@pytest.mark.parametrize("errors", [0, 5])
def test_the_predictions_legend_lists_errors_only_when_there_are_some(errors):
    from minidl_cli.plots import points

    ds = disk(n_train=10, n_test=100, generator=torch.Generator().manual_seed(0))
    y_pred = ds.y_test.clone()
    y_pred[:errors] = 1 - y_pred[:errors]
    with canvas.default_style():
        fig = points.predictions_figure(ds.x_test, ds.y_test, y_pred)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert ("error" in labels) == (errors > 0)
    assert labels[:2] == ["predicted class 0", "predicted class 1"]


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


# ---------------------------------------------------------------- whatever the caller's matplotlib


def test_pictures_ignore_the_callers_backend_and_leave_it_set(tmp_path):
    """A notebook's (or a misspelt) MPLBACKEND must not stop the pictures:
    they are drawn with Agg, and the caller's backend setting is left as it was."""
    run = write_metrics(tmp_path / "run", epochs=5)
    code = (
        "import os, sys\n"
        "from minidl_cli import plots\n"
        f"metrics = plots.read_metrics({str(run / 'metrics.csv')!r})\n"
        f"plots.plot_loss(metrics, {str(run / 'l.png')!r})\n"
        "print(os.environ['MPLBACKEND'], 'matplotlib.pyplot' in sys.modules)\n"
    )
    env = {**os.environ, "MPLBACKEND": "nonsense", "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["nonsense", "False"]  # the caller's setting is kept
    assert_png(run / "l.png")


def test_pictures_use_the_default_style_not_the_callers(tmp_path):
    import matplotlib
    from PIL import Image

    run = write_metrics(tmp_path / "run", epochs=5)
    with matplotlib.rc_context({"figure.facecolor": "black", "savefig.facecolor": "black"}):
        path = plots.plot_loss(plots.read_metrics(run / "metrics.csv"), tmp_path / "l.png")
        assert matplotlib.rcParams["figure.facecolor"] == "black"  # theirs, untouched
    assert Image.open(path).convert("RGB").getpixel((1, 1)) == (255, 255, 255)


# ---------------------------------------------------------------- principal components


def test_pca_matches_the_eigenvectors_of_the_correlation_matrix():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4)) * [1, 10, 100, 0.1] + 5
    mean, scale, components, ratio = plots.pca(x, 2)
    eigenvalues, vectors = np.linalg.eigh(np.corrcoef(x, rowvar=False))  # ascending
    np.testing.assert_allclose(ratio, eigenvalues[::-1][:2] / eigenvalues.sum(), rtol=1e-10)
    for i in range(2):
        v = vectors[:, -1 - i]
        np.testing.assert_allclose(components[i], v * np.sign(v[np.abs(v).argmax()]),
                                   atol=1e-10)  # largest loading positive (svd_flip)
        assert components[i][np.abs(components[i]).argmax()] > 0
    np.testing.assert_allclose(components @ components.T, np.eye(2), atol=1e-12)
    projected = ((x - mean) / scale) @ components.T
    np.testing.assert_allclose(projected.var(0), eigenvalues[::-1][:2], rtol=1e-10)


def test_pca_of_points_on_a_line_explains_everything():
    t = np.linspace(-1, 1, 50)[:, None]
    x = np.hstack([t, 2 * t + 3, -t, np.full_like(t, 7.0)])  # a constant column too
    _, _, components, ratio = plots.pca(x, 2)
    assert ratio[0] == pytest.approx(1.0) and ratio[1] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(np.abs(components[0]), [1 / math.sqrt(3)] * 3 + [0], atol=1e-12)


def test_plane_names_its_axes():
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    wide = plots.Plane(x)
    assert [label.split(" ")[0] for label in wide.labels] == ["PC1", "PC2"]
    assert wide.labels[0].endswith("% var)") and wide.project(x[:7]).shape == (7, 2)
    two = plots.Plane(x[:, :2], ["age", "income"])
    assert two.labels == ("age", "income")
    np.testing.assert_array_equal(two.project(x[:3, :2]), x[:3, :2].numpy())
    one = plots.Plane(x[:, :1], ["dose"])
    assert one.labels == ("dose", "") and not one.project(x[:4, :1])[:, 1].any()


# ---------------------------------------------------------------- what each kind of data gets


def metrics_file(path: Path, columns: tuple[str, ...], epochs: int = 8) -> Path:
    """A metrics.csv with train_/test_ columns of each name in `columns`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["epoch"] + [f"{s}_{c}" for s in ("train", "test") for c in columns]
    rows = [",".join(header + ["lr", "elapsed_s"])]
    for e in range(1, epochs + 1):
        values = [math.exp(-e / 4) * (1 + i / 10) for i in range(2 * len(columns))]
        rows.append(",".join(str(v) for v in [e, *values, 0.1, e / 100]))
    path.write_text("\n".join(rows) + "\n")
    return path


def table(classes: int = 3, features: int = 5, n: int = 120) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g, dtype=torch.float64) * torch.arange(1, features + 1)
    y = torch.remainder((x[:, 0] > 0).long() + (x[:, 1] > 0).long(), classes)
    half = n // 2
    return Dataset(x[:half], y[:half], x[half:], y[half:], classes,
                   [f"f{i}" for i in range(features)], [f"kind {c}" for c in range(classes)])


def images(channels: int, classes: int, n: int = 60) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, channels, 8, 8, generator=g, dtype=torch.float64)
    y = torch.arange(n) % classes
    half = n // 2
    return Dataset(x[:half], y[:half], x[half:], y[half:], classes, [])


def drawn(plots_dir: Path, written: list[Path]) -> list[str]:
    for path in written:
        assert_png(path)
    assert sorted(p.name for p in plots_dir.iterdir()) == sorted(p.name for p in written)
    return [p.name for p in written]


def test_a_table_with_three_classes_gets_principal_components_and_a_confusion_matrix(tmp_path):
    ds = table()
    scores = torch.nn.functional.one_hot(ds.y_test, 3).double()  # outputs: argmax is the class
    scores[:5] = scores[:5].roll(1, dims=1)
    written = plots.draw_run_plots(tmp_path / "p", ds, tasks.for_dataset(ds), scores,
                                   metrics_file(tmp_path / "m.csv", ("loss", "accuracy")),
                                   loss_name="cross_entropy")
    assert drawn(tmp_path / "p", written) == [
        "data.png", "loss.png", "accuracy.png", "predictions.png", "confusion.png"]


def test_regression_gets_predicted_against_true_residuals_and_mae(tmp_path, caplog):
    ds = table()
    targets = torch.stack([ds.x_train[:, 0] * 2, ds.x_train[:, 1]], 1), torch.stack(
        [ds.x_test[:, 0] * 2, ds.x_test[:, 1]], 1)
    reg = replace(ds, y_train=targets[0], y_test=targets[1], num_classes=0, class_names=None,
                  task="regression", target_names=["price", "age"])
    metrics = metrics_file(tmp_path / "m.csv", ("loss", "mae", "rmse", "r2"))
    task = tasks.for_dataset(reg)
    task.fit(reg.y_train)  # standardize_target: the network's outputs are z-scores
    outputs = (targets[1] + 0.1 - task.mean) / task.std
    with caplog.at_level(logging.WARNING):  # matplotlib logged "Ignoring fixed x limits"
        written = plots.draw_run_plots(tmp_path / "p", reg, task, outputs, metrics,
                                       loss_name="l1")
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert drawn(tmp_path / "p", written) == [
        "data.png", "loss.png", "mae.png", "predictions.png", "residuals.png"]
    one = points.targets_figure(reg.x_test[:, :1], targets[1][:, 0], "price", None, "f0")
    assert (one.axes[0].get_xlabel(), one.axes[0].get_ylabel()) == ("f0", "price")


def test_regression_on_images_captions_the_grid_with_target_values(tmp_path):
    ds = images(1, 2, n=24)
    y = ds.x_train.mean((1, 2, 3))[:, None], ds.x_test.mean((1, 2, 3))[:, None]
    reg = replace(ds, y_train=y[0], y_test=y[1], num_classes=0, task="regression",
                  target_names=["brightness"])
    written = plots.draw_run_plots(tmp_path / "p", reg, "regression", y[1] * 1.1,
                                   metrics_file(tmp_path / "m.csv", ("loss", "mae")))
    assert drawn(tmp_path / "p", written) == [
        "data.png", "loss.png", "mae.png", "predictions.png", "residuals.png"]


def test_regression_pictures_show_values_on_the_targets_own_scale(tmp_path, monkeypatch):
    ds = table()
    y = torch.stack([ds.x_train[:, 0] * 100 + 7], 1), torch.stack([ds.x_test[:, 0] * 100 + 7], 1)
    reg = replace(ds, y_train=y[0], y_test=y[1], num_classes=0, class_names=None,
                  task="regression", target_names=["price"])
    task = tasks.for_dataset(reg)
    task.fit(reg.y_train)
    seen = {}
    monkeypatch.setattr(regression, "plot_predicted_vs_true",
                        lambda t, p, path, names: seen.update(true=t, pred=p, names=names))
    monkeypatch.setattr(regression, "plot_residuals", lambda *args: None)
    monkeypatch.setattr(points, "plot_targets", lambda *args: None)
    monkeypatch.setattr(curves, "plot_curves", lambda *args: None)
    plots.draw_run_plots(tmp_path / "p", reg, task, (y[1] - task.mean) / task.std,
                         metrics_file(tmp_path / "m.csv", ("loss", "mae")))
    np.testing.assert_allclose(seen["pred"], y[1].numpy(), atol=1e-9)  # decoded z-scores
    np.testing.assert_array_equal(seen["true"], y[1].numpy())
    assert seen["names"] == ["price"]


@pytest.mark.parametrize("channels, classes", [(1, 10), (3, 2)])
def test_images_get_grids_and_a_confusion_matrix_from_three_classes(tmp_path, channels, classes):
    ds = images(channels, classes)
    predicted = ds.y_test.clone()
    predicted[::4] = (predicted[::4] + 1) % classes
    written = plots.draw_run_plots(tmp_path / "p", ds, "classification", predicted,
                                   metrics_file(tmp_path / "m.csv", ("loss", "accuracy")))
    expected = ["data.png", "loss.png", "accuracy.png", "predictions.png"]
    assert drawn(tmp_path / "p", written) == expected + ["confusion.png"] * (classes >= 3)


def test_predicted_classes_from_outputs_or_labels():
    outputs = torch.tensor([[0.1, 0.9, 0.0], [2.0, -1.0, 0.5]])
    assert plots.predicted_classes(outputs).tolist() == [1, 0]
    assert plots.predicted_classes(torch.tensor([2, 0])).tolist() == [2, 0]


# ---------------------------------------------------------------- image grids


def test_image_tiles_are_min_max_scaled_and_errors_framed_in_red():
    x = torch.stack([torch.full((1, 4, 4), 3.0), torch.arange(16.0).reshape(1, 4, 4) - 50])
    rgb = images_module.to_rgb(x)
    assert rgb.shape == (2, 4, 4, 3)
    assert (rgb[0] == 0.5).all()  # a constant image is mid-grey
    assert rgb[1].min() == 0 and rgb[1].max() == 1 and (rgb[1][..., 0] == rgb[1][..., 2]).all()
    tiles, (cell_h, cell_w), band = images_module.mosaic(x, columns=2, framed=[False, True])
    assert tiles.shape == (cell_h, 2 * cell_w, 3)
    red = (tiles == (1.0, 0.0, 0.0)).all(-1)
    assert not red[:, :cell_w].any()  # the first tile is not framed
    assert red[:, cell_w:].sum() > 4 * 32  # the second is, all around its 32-pixel tile
    assert not red[:, cell_w].any() and not red[:band].any()  # a white margin; no caption


def test_grids_show_every_class_and_the_errors():
    labels = torch.tensor([0] * 50 + [1] * 3 + [2] * 50)
    rows = images_module.sample_rows(labels, count=12)
    assert len(rows) == 12 and set(labels[rows].tolist()) == {0, 1, 2}
    assert list(rows) == sorted(rows)
    wrong = torch.zeros(100, dtype=torch.bool)
    wrong[[70, 80, 90]] = True
    rows = images_module.prediction_rows(wrong, count=10)
    assert len(rows) == 10 and {70, 80, 90} <= set(rows.tolist())


def test_a_grid_of_few_images_keeps_its_title_inside_the_figure():
    x = torch.rand(4, 1, 6, 6)
    fig = images_module.image_predictions_figure(x, torch.tensor([0, 1, 0, 1]),
                                                 torch.tensor([0, 0, 0, 1]), ["cat", "dog"])
    from matplotlib.text import Text

    (title,) = [t for t in fig.findobj(Text) if t.get_text() == fig.get_suptitle()]
    box = title.get_window_extent(fig.canvas.get_renderer())
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)
    assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1, (box, fig.bbox)


# ---------------------------------------------------------------- legends inside the figure


def assert_inside(fig) -> None:
    """Every axes with its ticks, labels and title, and every legend, lie inside the figure;
    a legend of the figure (in the band below the axes) overlaps no axes."""
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
    for box in boxes + [legend.get_window_extent(renderer) for legend in legends]:
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1, (box, page)
        assert page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, (box, page)
    for legend in fig.legends:
        top = legend.get_window_extent(renderer).y1
        assert all(top <= box.y0 + 1 for box in boxes), "the legend covers an axes"


def test_legends_and_labels_stay_inside_their_figures(tmp_path):
    ds = spirals(n_train=10, n_test=200, classes=3, generator=torch.Generator().manual_seed(1))
    names = ["a very long class name indeed", "b", "c"]
    y = ds.y_test.numpy().astype(float)
    runs = [write_metrics(tmp_path / f"r{i}", epochs=10, val=True) for i in range(4)]
    metrics = [plots.read_metrics(r / "metrics.csv") for r in runs]
    figures = [
        points.data_figure(ds.x_test, ds.y_test, class_names=names),
        points.predictions_figure(ds.x_test, ds.y_test, 2 - ds.y_test, names),
        points.predictions_figure(table().x_test, table().y_test, table().y_test),  # PCA
        regression.predicted_vs_true_figure(np.c_[y, 2 * y], np.c_[y + 0.3, y], ["one", "two"]),
        regression.residuals_figure(y, y + 0.3),
        confusion.confusion_figure(tasks.confusion_matrix(ds.y_test, 2 - ds.y_test, 3), names),
        curves.curve_figure(metrics[0], "loss", "mse"),
        overlays.loss_overlay_figure(metrics, list("abcd"), ["mse", "mse", "cross_entropy", None]),
    ]
    with canvas.default_style():
        for fig in figures:
            fig.canvas.draw()
            assert_inside(fig)


def test_pngs_are_written_with_the_fastest_zlib_level(tmp_path):
    run = write_metrics(tmp_path / "run", epochs=5)
    data = plots.plot_loss(plots.read_metrics(run / "metrics.csv"), tmp_path / "l.png")
    data = data.read_bytes()
    idat = data.index(b"IDAT") + 4
    assert data[idat:idat + 2] == b"\x78\x01"  # zlib header: FLEVEL 0, the fastest


def test_save_writes_the_pixels_savefig_writes(tmp_path):
    """canvas.save draws once and encodes the canvas; savefig lays the figure out in a draw
    of its own first: the PNGs must show the same pixels, laid out alike."""
    import io

    from PIL import Image

    ds = spirals(n_train=10, n_test=200, classes=3, generator=torch.Generator().manual_seed(1))
    metrics = plots.read_metrics(write_metrics(tmp_path / "run", epochs=10) / "metrics.csv")
    builders = [
        lambda: points.data_figure(ds.x_test, ds.y_test, class_names=["long class name", "b", "c"]),
        lambda: curves.curve_figure(metrics, "loss", "mse"),
        lambda: confusion.confusion_figure(tasks.confusion_matrix(ds.y_test, 2 - ds.y_test, 3)),
    ]
    for i, build in enumerate(builders):
        with canvas.default_style():
            ours = Image.open(canvas.save(build(), tmp_path / f"{i}.png"))
            png = io.BytesIO()
            build().savefig(png, format="png", dpi=canvas.DPI)
        theirs = Image.open(png)
        assert ours.size == theirs.size
        assert np.array_equal(np.asarray(ours), np.asarray(theirs)), f"picture {i} differs"


def pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


@pytest.mark.parametrize("n", [300, 3000])  # the marker size changes above 2000 points
# ---------------------------------------------------------------- overlays of different kinds


def with_loss(run_dir: Path, loss: object) -> Path:
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"loss": loss}))
    return run_dir


def regression_run(run_dir: Path, epochs: int = 6) -> Path:
    metrics_file(run_dir / "metrics.csv", ("loss", "mae", "rmse", "r2"), epochs)
    return with_loss(run_dir, {"type": "huber", "delta": 1.0})


def test_runs_with_different_losses_get_a_panel_and_a_name_each(tmp_path):
    mse = with_loss(write_metrics(tmp_path / "mse", epochs=5), {"type": "mse"})
    ce = with_loss(write_metrics(tmp_path / "ce", epochs=7), "cross_entropy")
    assert [plots.run_loss_name(r) for r in (mse, ce)] == ["mse", "cross_entropy"]
    runs = [plots.read_metrics(r / "metrics.csv") for r in (mse, ce)]
    fig = overlays.loss_overlay_figure(runs, ["a", "b"], ["mse", "cross_entropy"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss (mse)", "loss (cross_entropy)"]
    assert {line.get_label() for line in fig.axes[0].lines} == {"a, mse (train)", "a, mse (test)"}
    same = overlays.loss_overlay_figure(runs, ["a", "b"], ["mse", "mse"])
    assert [ax.get_ylabel() for ax in same.axes] == ["loss (mse)"]
    written = plots.overlay_runs([mse, ce], tmp_path / "out")
    assert [p.name for p in written] == ["loss.png", "accuracy.png"]
    for path in written:
        assert_png(path)


def test_regression_runs_overlay_their_mae_and_refuse_classification_runs(tmp_path):
    a, b = regression_run(tmp_path / "a"), regression_run(tmp_path / "b", epochs=9)
    written = plots.overlay_runs([a, b], tmp_path / "out")
    assert [p.name for p in written] == ["loss.png", "mae.png"]
    assert [p.name for p in plots.plot_group([a, b], tmp_path / "group")] == [
        "loss.png", "mae.png"]
    disk_run = write_metrics(tmp_path / "disk", epochs=4)
    with pytest.raises(ValueError, match=r"classification and regression runs .*disk"):
        plots.overlay_runs([a, disk_run], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
    # a language model records accuracy too, but its next-token accuracy is another measure
    text_run = write_metrics(tmp_path / "text", epochs=4)
    for run, task in ((disk_run, "classification"), (text_run, "language_model")):
        (run / "meta.json").write_text(json.dumps({"task": task}))
    with pytest.raises(ValueError, match=r"different tasks \(classification: disk; "
                                         r"language_model: text\)"):
        plots.overlay_runs([disk_run, text_run], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()


# ---------------------------------------------------------------- from a run directory


def test_a_three_class_run_draws_and_redraws_its_confusion_matrix(tmp_path):
    config = {**TINY, "data": {"type": "spirals", "n_train": 60, "n_test": 60, "classes": 3},
              "model": [{"type": "linear", "out_features": 8}, "relu",
                        {"type": "linear", "out_features": 3}],
              "loss": "cross_entropy", "train": {"epochs": 2, "batch_size": 30}}
    run = train_tiny(tmp_path, config=config)
    names = {"data.png", "loss.png", "accuracy.png", "predictions.png", "confusion.png"}
    assert {p.name for p in (run / "plots").iterdir()} == names
    for path in (run / "plots").iterdir():
        path.unlink()
    result = invoke("plot", run)
    assert result.exit_code == 0, result.output
    assert {Path(line).name for line in result.stdout.split()} == names
    for name in names:
        assert_png(run / "plots" / name)


@pytest.mark.parametrize("draw", ["curve", "overlay", "group"])
def test_a_one_epoch_curve_is_visible(tmp_path, monkeypatch, draw):
    """One point makes no line: a 1-epoch run's curves are drawn as dots, which show where
    the point is (not only in the legend)."""
    from minidl_cli.plots import curves, overlays

    drawn = []

    def keep(module):
        real = module.save

        def save(fig, path):
            drawn.append(fig)
            return real(fig, path)

        monkeypatch.setattr(module, "save", save)

    keep(curves)
    keep(overlays)
    run = write_metrics(tmp_path / "a", epochs=1)
    if draw == "curve":
        plots.plot_loss(plots.read_metrics(run / "metrics.csv"), tmp_path / "l.png")
    elif draw == "overlay":
        plots.overlay_runs([run], tmp_path / "o")
    else:
        plots.plot_group([run, write_metrics(tmp_path / "b", epochs=1)], tmp_path / "g")
    fig = drawn[0]
    ax = fig.axes[0]
    line = ax.lines[0]
    rgba = pixels(fig)
    x, y = ax.transData.transform((line.get_xdata()[0], line.get_ydata()[0]))
    row, col = round(rgba.shape[0] - y), round(x)
    around = rgba[row - 3:row + 4, col - 3:col + 4, :3].astype(int)
    from matplotlib.colors import to_rgb

    colour = np.array(to_rgb(line.get_color())) * 255
    assert (np.abs(around - colour).sum(-1) < 60).sum() >= 9, "no dot where the point is"


def test_signals_are_drawn_as_curves_with_the_errors_in_red(tmp_path):
    """A 1-D signal (MNIST-1D) is a grid of curves, not points on principal components: one
    panel per signal holding its points as one line, the wrong predictions in red."""
    import torch

    from minidl_cli.data.mnist1d import mnist1d
    from minidl_cli.plots import run as run_plots
    from minidl_cli.plots import signals
    from minidl_cli.plots.canvas import ERROR_COLOR

    x = torch.randn(12, 40, dtype=torch.float64)
    truth = torch.arange(12) % 3
    predicted = truth.clone()
    predicted[[1, 5]] = (truth[[1, 5]] + 1) % 3
    fig = signals.signal_grid(x, [str(i) for i in range(12)], "t", (predicted != truth).tolist())
    drawn = [ax for ax in fig.axes if ax.lines]
    assert len(drawn) == 12 and all(len(ax.lines[0].get_ydata()) == 40 for ax in drawn)
    assert [i for i, ax in enumerate(drawn) if ax.lines[0].get_color() == ERROR_COLOR] == [1, 5]
    assert (drawn[3].lines[0].get_ydata() == x[3].numpy()).all()

    dataset = mnist1d(generator=torch.Generator())
    assert dataset.signal
    outputs = torch.nn.functional.one_hot(dataset.y_test, 10).double()
    written = run_plots.draw_run_plots(tmp_path, dataset, "classification", outputs,
                                       {"epoch": [1], "train_loss": [1.0], "test_loss": [1.0],
                                        "train_accuracy": [0.5], "test_accuracy": [0.5]})
    assert {p.name for p in written} >= {"data.png", "predictions.png", "confusion.png"}
