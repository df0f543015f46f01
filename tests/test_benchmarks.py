"""The benchmark scripts still compare like with like, and still run (no timing asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_conv  # noqa: E402
import bench_csv  # noqa: E402
import bench_gpt  # noqa: E402
import bench_overhead  # noqa: E402
import bench_rnn  # noqa: E402
import bench_step  # noqa: E402
import mnist1d_reference  # noqa: E402
import torch_twin  # noqa: E402


def test_the_three_step_implementations_do_the_same_maths():
    """minidl, torch.nn + autograd and the raw loop: the same weights after 30 float64 steps."""
    assert bench_step.check_agreement() < 1e-10


def test_the_inlined_loop_runs_minidls_ops():
    assert bench_overhead.check_agreement_of_all() < 1e-10


@pytest.mark.parametrize("script", [bench_step, bench_overhead])
def test_the_scripts_print_their_table(script, capsys):
    argv = ["--widths", "4", "--batches", "8", "--repeats", "1", "--budget", "0.001"]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert "| width | batch | minidl" in out and "|     4 |     8 |" in out


def test_bench_csv_small_mode_prints_both_tables(capsys):
    """A 2000-row CSV: the load table (minidl, and pandas when installed) and samples/s."""
    assert bench_csv.main(["--rows", "2000", "--repeats", "1", "--epochs", "--in-process"]) == 0
    out = capsys.readouterr().out
    assert "2,000 rows x 10 features + label" in out
    assert "| minidl csv |" in out
    assert ("minidl / pandas: load time" in out) or ("pip install pandas" in out)
    assert "| 1,000 |" in out  # one epoch of the 1000-row table


@pytest.mark.parametrize("case", list(bench_conv.CASES))
def test_the_convnet_steps_do_the_same_maths(case):
    """minidl, torch.nn + autograd and the raw loop: the same weights after 3 float64 steps."""
    assert bench_conv.check_agreement(case, batch=2, steps=3) < 1e-10


def test_the_convnet_script_prints_its_table(capsys):
    argv = ["--cases", "digits", "mnist1d", "--batch", "4", "--repeats", "1",
            "--budget", "0.001", "--no-memory"]
    assert bench_conv.main(argv) == 0
    out = capsys.readouterr().out
    assert "| network | batch | minidl ms | torch.nn ms | raw ms" in out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ")][1:]
    assert [row[1].strip() for row in rows] == ["digits", "mnist1d"]
    assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)


@pytest.mark.parametrize("impl", ["minidl", "torch.nn", "raw"])
def test_the_convnet_memory_child_prints_a_step_peak(impl, capsys):
    """What each fresh process of the memory table runs: three steps, their peak in MB."""
    bench_conv.memory_child("mnist1d", 4, impl)
    assert float(capsys.readouterr().out) >= 0


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_recurrent_steps_do_the_same_maths(cell):
    """minidl, torch.nn.GRU/LSTM + autograd and the raw loop at MNIST-1D's size: the same
    weights after 10 float64 steps of backprop through time and Adam."""
    assert bench_rnn.check_agreement(cell, "mnist1d") < 1e-10


def test_the_recurrent_floor_table_prints_each_layer_and_its_products(capsys):
    """--floor: the layer alone (torch.nn with and without oneDNN, minidl) and minidl's
    matrix products alone; oneDNN is switched back on afterwards."""
    assert bench_rnn.main(["--floor", "--sizes", "mnist1d", "--repeats", "1"]) == 0
    assert torch.backends.mkldnn.enabled
    out = capsys.readouterr().out
    assert ("| cell | size | torch.nn layer ms | torch.nn, oneDNN off, ms | minidl layer ms "
            "| its matrix products ms |") in out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ")][1:]
    assert [(row[1].strip(), row[2].strip()) for row in rows] == [("gru", "mnist1d"),
                                                                  ("lstm", "mnist1d")]
    assert all(float(v) > 0 for row in rows for v in row[3:7])


def test_the_gpt_steps_do_the_same_maths():
    """The GPT config in minidl, in torch.nn with plain attention and with fused attention:
    the same weights after 3 float64 AdamW steps."""
    assert bench_gpt.check_agreement() < 1e-10


@pytest.mark.parametrize("shuffle", ["true", "false"])
def test_the_torch_twin_of_a_config_trains_to_minidls_result(tmp_path, shuffle):
    """benchmarks/torch_twin.py trains the to_torch() twin on the run's own data, weights and
    batches (reshuffled every epoch, or in the stored order with train.shuffle: false): for a
    linear model (the same arithmetic) it ends at minidl's test loss."""
    import csv

    from tests.helpers import invoke

    config = Path(__file__).resolve().parents[1] / "configs" / "mnist1d-logistic.yaml"
    overrides = ["train.epochs=2", f"train.shuffle={shuffle}", f"runs_dir={tmp_path}"]
    result = invoke("train", config, "-q", *overrides)
    assert result.exit_code == 0, result.output
    with open(Path(result.stdout.strip().splitlines()[-1]) / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    twin = torch_twin.train_twin(str(config), 0, overrides)
    assert abs(twin["test_loss"] - float(last["test_loss"])) < 1e-5
    assert abs(twin["test_accuracy"] - float(last["test_accuracy"])) < 1e-9


def test_the_torch_twin_script_takes_overrides_as_minidl_train_does(capsys):
    """`torch_twin.py CONFIG KEY=VALUE... --seeds S` trains the overridden config."""
    config = str(Path(__file__).resolve().parents[1] / "configs" / "mnist1d-logistic.yaml")
    overrides = ["train.epochs=1", "data.shuffle_sequence=true"]
    assert torch_twin.main([config, *overrides, "--seeds", "0"]) == 0
    twin = torch_twin.train_twin(config, 0, overrides)
    assert f"seed 0: test loss {twin['test_loss']:.4f}" in capsys.readouterr().out


def test_the_mnist1d_cnn_config_takes_the_papers_batches():
    """The CNN config's twin (train.shuffle: false) and the authors' protocol written out in
    benchmarks/mnist1d_reference.py start from the same weights and take the same batches:
    after one epoch (40 steps) they end at the same test loss and accuracy."""
    config = Path(__file__).resolve().parents[1] / "configs" / "mnist1d-cnn.yaml"
    reference = mnist1d_reference.train(mnist1d_reference.load("minidl", False), "cnn", 3,
                                        steps=40)
    twin = torch_twin.train_twin(str(config), 3, ["train.epochs=1"])
    assert abs(reference["test_loss"] - twin["test_loss"]) < 1e-5
    assert abs(reference["last"] / 100 - twin["test_accuracy"]) < 1e-9


def test_the_mnist1d_reference_script_prints_last_and_best(capsys):
    argv = ["--data", "minidl", "--model", "logistic", "--seeds", "0-1", "--steps", "300",
            "--shuffle-seq"]
    assert mnist1d_reference.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("seed ") == 2 and "last: " in out and "best: " in out
