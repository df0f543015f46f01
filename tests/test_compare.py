"""`minidl compare`: runs, seed groups and sweeps in one table, sorted, drawn."""

import csv
import json

import pytest

from tests.helpers import invoke, run_of, write_config
from tests.test_tasks import regression_config
from tests.test_text import text_config


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    return run_of(invoke("train", write_config(folder), "-q", "train.epochs=2", "--seeds", "0-1",
                         "--sweep", "optimizer.lr=0.01,0.3", "--sweep",
                         "model.0.out_features=4,8"))


def test_a_sweep_expands_into_its_points_best_first(sweep, tmp_path):
    result = invoke("compare", sweep, "--json", "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    summary = {r["point"]: r for r in csv.DictReader(open(sweep / "summary.csv"))}
    assert len(rows) == 4 and all(r["seeds"] == 2 for r in rows)
    accuracy = [r["test_accuracy_mean"] for r in rows]
    assert accuracy == sorted(accuracy, reverse=True)  # best first
    for row in rows:
        point = summary[row["path"].rsplit("/", 1)[1]]
        assert row["test_accuracy_mean"] == pytest.approx(float(point["test_accuracy_mean"]))
        assert row["test_loss_std"] == pytest.approx(float(point["test_loss_std"]))
        assert row["optimizer.lr"] == float(point["optimizer.lr"])
        assert row["epochs_mean"] == 2
    assert set(rows[0]) >= {"optimizer.lr", "model.0.out_features"}
    assert "model.2.in_features" not in rows[0]  # inferred from out_features: not a setting
    for key in ("optimizer.lr", "model.0.out_features"):
        assert (tmp_path / "cmp" / f"test_accuracy-vs-{key}.png").read_bytes()[:4] == b"\x89PNG"

    by_loss = json.loads(invoke("compare", sweep, "--json", "--metric", "test_loss").stdout)
    losses = [r["test_loss_mean"] for r in by_loss]
    assert losses == sorted(losses)  # a loss: lowest first


def test_runs_and_a_group_side_by_side_in_a_table(sweep, tmp_path):
    config = write_config(tmp_path)
    runs = [run_of(invoke("train", config, "-q", "train.epochs=2", f"optimizer.lr={lr}"))
            for lr in (0.01, 0.3)]
    group = run_of(invoke("train", config, "-q", "train.epochs=2", "--seeds", "0-1",
                          "optimizer.lr=0.05"))
    result = invoke("compare", *runs, group)
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:3] == ["run", "optimizer.lr", "seeds"] and len(lines) == 3
    assert any(group.name in line and " ± " in line for line in lines)
    refused = invoke("compare", runs[0], "--metric", "test_r2")
    assert refused.exit_code == 2 and "test_accuracy" in refused.output
    alone = invoke("compare", runs[0], "--out", tmp_path / "pictures")
    assert alone.exit_code == 0 and "no picture drawn, no config key differs" in alone.stderr
    assert not (tmp_path / "pictures").exists()
    two = invoke("plot", sweep, runs[0])
    assert two.exit_code == 2 and "plot draws one sweep at a time" in two.output


def test_regression_and_language_models_sort_by_test_loss_and_do_not_mix(tmp_path):
    (tmp_path / "reg").mkdir()
    (tmp_path / "lm").mkdir()
    reg = [run_of(invoke("train", write_config(tmp_path / "reg",
                                               regression_config(tmp_path / "reg")),
                         "-q", f"optimizer.lr={lr}")) for lr in (0.001, 0.05)]
    rows = json.loads(invoke("compare", *reg, "--json").stdout)
    assert [r["test_loss_mean"] for r in rows] == sorted(r["test_loss_mean"] for r in rows)
    assert "test_r2_mean" in rows[0] and "test_accuracy_mean" not in rows[0]
    lm = [run_of(invoke("train", text_config(tmp_path / "lm"), "-q", f"optimizer.lr={lr}"))
          for lr in (0.002, 0.05)]
    rows = json.loads(invoke("compare", *lm, "--json").stdout)
    assert [r["test_loss_mean"] for r in rows] == sorted(r["test_loss_mean"] for r in rows)
    mixed = invoke("compare", reg[0], lm[0])
    assert mixed.exit_code == 2 and "different tasks" in mixed.output
    assert "regression" in mixed.output and "language_model" in mixed.output
    assert len(mixed.output.strip().splitlines()) == 1
    existing = tmp_path / "existing"
    existing.mkdir()
    for out in (tmp_path / "gplot" / "sub", existing):  # refused: no folder left behind
        refused = invoke("plot", reg[0], lm[0], "--out", out)
        assert refused.exit_code == 2 and "cannot overlay" in refused.output, refused.output
    assert not (tmp_path / "gplot").exists() and existing.is_dir()


def test_an_option_an_old_run_lacks_is_its_default_not_a_difference(tmp_path):
    import shutil

    runs = [run_of(invoke("train", text_config(tmp_path), "-q", f"optimizer.lr={lr}"))
            for lr in (0.01, 0.02)]
    config = (runs[0] / "config.yaml").read_text()
    for option in ("  ignore_index: -100\n", "  threads: null\n", ", init: xavier_uniform"):
        assert option in config  # made before these options existed: its config lacks them
        config = config.replace(option, "")
    (runs[0] / "config.yaml").write_text(config)
    rows = json.loads(invoke("compare", *runs, "--json").stdout)
    assert [k for k in rows[0] if "." in k] == ["optimizer.lr"]
    changed = tmp_path / "changed"  # a value the user set still differs
    shutil.copytree(runs[1], changed)
    text = (changed / "config.yaml").read_text()
    (changed / "config.yaml").write_text(text.replace("ignore_index: -100", "ignore_index: 5"))
    rows = json.loads(invoke("compare", runs[0], changed, "--json").stdout)
    assert sorted(r["loss.ignore_index"] for r in rows) == [-100, 5]


def test_a_folder_that_is_not_a_run(tmp_path):
    result = invoke("compare", tmp_path)
    assert result.exit_code == 2 and "not a run, a seed group or a sweep" in result.output


def test_different_networks_differ_in_one_model_column(tmp_path):
    from tests.helpers import TINY

    deeper = {**TINY, "model": [{"type": "linear", "out_features": 8}, "relu",
                                {"type": "linear", "out_features": 8}, "relu",
                                {"type": "linear", "out_features": 2}, "tanh"]}
    runs = [run_of(invoke("train", write_config(tmp_path, config, name=f"{i}.yaml"), "-q",
                          "train.epochs=1")) for i, config in enumerate((TINY, deeper))]
    rows = json.loads(invoke("compare", *runs, "--json").stdout)
    assert {r["model"] for r in rows} == {"linear-relu-linear-tanh",
                                          "linear-relu-linear-relu-linear-tanh"}
    assert not any(k.startswith("model.") for k in rows[0])
    assert {r["run"] for r in rows} == {runs[0].name, runs[1].name}


def test_sizes_read_off_the_input_are_not_varied_keys():
    """A language model's block_size changes its first linear layer's in_features (block_size
    × embedding_dim): only block_size is a setting."""
    from minidl_cli.compare import Entry, varied_keys

    def entry(block_size):
        config = {"data.block_size": block_size, "model.0.type": "embedding",
                  "model.0.num_embeddings": 27, "model.0.embedding_dim": 4,
                  "model.1": "flatten", "model.2.type": "linear",
                  "model.2.in_features": 4 * block_size, "model.2.out_features": 27}
        return Entry(f"b{block_size}", ".", config, "language_model")

    assert varied_keys([entry(3), entry(5)]) == ["data.block_size"]


def test_each_entry_once_however_often_it_is_named(sweep):
    point = next(p for p in sweep.iterdir() if p.is_dir() and "=" in p.name)
    for paths in ((sweep, sweep), (sweep, point), (point, sweep, point)):
        rows = json.loads(invoke("compare", *paths, "--json").stdout)
        assert len(rows) == 4 and len({r["path"] for r in rows}) == 4, paths


def test_members_not_completed_are_marked_and_never_started_points_listed(tmp_path):
    """A sweep stopped after its first member: that point is interrupted (one of its two
    seeds done), the other never started; both are rows, with their status."""
    from minidl_cli import sweeps
    from minidl_cli.sweeps import parse_sweeps
    from minidl_cli.train import StopFlag

    grid = parse_sweeps(["optimizer.lr=0.01,0.1"])
    resolved = sweeps.resolve_points(write_config(tmp_path), ["train.epochs=1"], grid, None)
    flag = StopFlag()
    sweep, _ = sweeps.run_sweep(grid, resolved, [0, 1], 1,
                                lambda point, row: setattr(flag, "signum", 2), flag)
    rows = json.loads(invoke("compare", sweep, "--json").stdout)
    assert [(r["run"].split("/")[1], r["seeds"], r["status"]) for r in rows] == [
        ("optimizer.lr=0.01", 1, "interrupted"), ("optimizer.lr=0.1", 0, "not started")]
    assert rows[1]["test_accuracy_mean"] is None
    table = invoke("compare", sweep, "--out", tmp_path / "cmp")
    header, *lines = table.stdout.splitlines()[:3]
    assert header.split()[-1] == "status" and lines[0].endswith("interrupted")
    assert lines[1].endswith("not started")
    assert "not drawn, without a test_accuracy: " + rows[1]["run"] in table.output


def test_a_sweep_with_no_finished_epoch_is_one_line_for_compare_and_plot(tmp_path):
    from minidl_cli import sweeps
    from minidl_cli.sweeps import parse_sweeps
    from minidl_cli.train import StopFlag

    grid = parse_sweeps(["optimizer.lr=0.01,0.1"])
    resolved = sweeps.resolve_points(write_config(tmp_path), ["train.epochs=1"], grid, None)
    stopped = StopFlag()
    stopped.signum = 2  # stopped before its first member started
    sweep, rows = sweeps.run_sweep(grid, resolved, None, 1, None, stopped)
    assert [r["status"] for r in rows] == ["not started"] * 2
    for command in ("compare", "plot"):
        result = invoke(command, sweep)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
        assert "no run has finished an epoch yet (2 not started)" in result.output, result.output


def test_a_search_draws_markers_without_a_legend_entry_per_trial():
    """A grid's lines are labelled by the other keys (floats to 4 digits) and joined; a
    search's trials share no values, so they are one unjoined series without a legend."""
    from minidl_cli.compare import series

    grid = [{"lr": lr, "width": w, "test_accuracy_mean": 0.5}
            for lr in (0.012345678, 0.1) for w in (4, 8)]
    lines, joined = series(grid, "width", ["lr", "width"])
    assert joined and sorted(lines) == ["lr=0.01235", "lr=0.1"]
    assert [len(m) for m in lines.values()] == [2, 2]
    trials = [{"lr": 0.01 * (i + 1) + 0.001 * i, "width": 4 + i, "test_accuracy_mean": 0.5}
              for i in range(5)]
    lines, joined = series(trials, "width", ["lr", "width"])
    assert not joined and lines == {"": trials}
    lines, joined = series(grid[:2], "width", ["width"])  # one key: one joined line
    assert joined and lines == {"": grid[:2]}


def test_out_inside_a_run_a_seed_group_or_a_sweep_is_refused_before_any_work(sweep, tmp_path):
    """`compare A B --out RUN` (or RUN/plots) drew its pictures into another run's folder;
    refused as plot's --out is, naming what holds the folder, with nothing printed or
    written."""
    run = run_of(invoke("train", write_config(tmp_path), "-q", "train.epochs=1"))
    point = next(p for p in sweep.iterdir() if (p / "group.json").is_file())
    kept = {p: p.read_bytes() for folder in (run, sweep) for p in folder.rglob("*")
            if p.is_file()}
    for out, holder in ((run, f"the run {run}"), (run / "plots", f"the run {run}"),
                        (run / "new", f"the run {run}"), (sweep, f"the sweep {sweep}"),
                        (point / "pictures", f"the seed group {point}"),
                        (point / "seed-0000" / "plots", f"the run {point / 'seed-0000'}")):
        result = invoke("compare", sweep, run, "--out", out)
        assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
        assert f"--out {out} is inside {holder}" in result.output, result.output
    assert not (run / "new").exists() and not (point / "pictures").exists()
    assert {p: p.read_bytes() for folder in (run, sweep) for p in folder.rglob("*")
            if p.is_file()} == kept
    drawn = invoke("compare", sweep, run, "--out", tmp_path / "cmp")
    assert drawn.exit_code == 0 and any((tmp_path / "cmp").glob("*.png")), drawn.output
