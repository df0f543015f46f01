"""`minidl` as a process (cli.Command): the garbage collector paused while it imports, and
an end without the interpreter's teardown (cli.exit_now) that loses nothing: exit codes,
buffered output and atexit handlers are as with sys.exit. Called from Python (CliRunner,
tests) the commands change neither."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from minidl_cli import __version__
from minidl_cli.cli import common
from tests.helpers import invoke, write_config

PROGRAM = """
import atexit, sys
atexit.register(lambda: print("atexit ran", file=sys.stderr))
from minidl_cli.cli import main
sys.argv = ["minidl", *sys.argv[1:]]
main()
print("not reached")
"""


def _minidl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("args", "code", "out", "err"), [  # no torch: quick
    (["--version"], 0, __version__, ""),
    (["nonsense"], 2, "", "No such command 'nonsense'"),
])
def test_the_entry_point_exits_with_the_commands_code_and_output(args, code, out, err):
    result = _minidl(*args)
    assert result.returncode == code, result.stderr
    assert out in result.stdout and "not reached" not in result.stdout
    assert err in result.stderr and result.stderr.rstrip().endswith("atexit ran")


def test_a_usage_error_keeps_its_exit_code_when_its_reader_is_gone():
    """`minidl train x --jobs 2 2>&1 | head -1`: click's error hit a closed pipe (EPIPE) and
    the process exited 1 instead of 2 about half the time; here the reader is gone at once."""
    import os

    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-c", PROGRAM, "nonsense"], stdout=write,
                                stderr=write, timeout=120)
    finally:
        os.close(write)
    assert result.returncode == 2


def test_exit_now_behaves_like_sys_exit():
    for code, returncode, stderr in (("0", 0, ""), ("None", 0, ""), ("3", 3, ""),
                                     ("'bye'", 1, "bye\n")):
        program = (f"import sys; print('buffered', end=''); from minidl_cli.cli import "
                   f"exit_now; exit_now({code})")
        result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
        assert (result.returncode, result.stdout, result.stderr) == (returncode, "buffered",
                                                                    stderr)


def test_a_train_process_collects_again_once_torch_is_imported(tmp_path):
    program = PROGRAM.replace('atexit.register(lambda: print("atexit ran", file=sys.stderr))',
                              'import gc; atexit.register(lambda: print("gc", gc.isenabled(), '
                              'gc.get_freeze_count() > 10000, "torch" in sys.modules))')
    result = subprocess.run([sys.executable, "-c", program, "train",
                             str(write_config(tmp_path)), "--print-config"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "gc True True True" in result.stdout


def test_pause_and_imports_done(monkeypatch):
    monkeypatch.setattr(common, "_gc_paused", False)
    frozen = gc.get_freeze_count()
    common.imports_done()  # not paused (a test, a library user): nothing happens
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    try:
        common.pause_gc_for_imports()
        assert not gc.isenabled()
        kept = [object() for _ in range(3)]  # noqa: F841  (objects made while paused)
        common.imports_done()
        assert gc.isenabled() and gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.enable()


def test_commands_called_from_python_leave_the_collector_alone(tmp_path):
    frozen = gc.get_freeze_count()
    assert invoke("train", write_config(tmp_path), "--print-config").exit_code == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen


@pytest.mark.parametrize("closed", [">&-", "2>&-", ">&- 2>&-"])
def test_a_run_started_with_its_output_closed_completes(tmp_path, closed):
    """`minidl train ... >&-` / `2>&-`: Python sets a closed stream to None; the run trains to
    the end, is marked completed and exits 0 (it crashed with exit 1 and stayed "running")."""
    config = write_config(tmp_path)
    script = tmp_path / "m.py"
    script.write_text(PROGRAM)
    result = subprocess.run(f'"{sys.executable}" "{script}" train "{config}" {closed}',
                            shell=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert '"status": "completed"' in (run / "meta.json").read_text()
