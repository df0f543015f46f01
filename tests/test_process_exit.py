"""`minidl` as a process ends without the interpreter's teardown (cli.exit_now), and loses
nothing by it: exit codes, buffered output and atexit handlers are as with sys.exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from minidl_cli import __version__

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


@pytest.mark.parametrize(("args", "code", "out", "err"), [
    (["--version"], 0, __version__, ""),
    (["train", "missing.yaml"], 2, "", "error: config file not found: missing.yaml"),
    (["nonsense"], 2, "", "No such command 'nonsense'"),
])
def test_the_entry_point_exits_with_the_commands_code_and_output(args, code, out, err):
    result = _minidl(*args)
    assert result.returncode == code, result.stderr
    assert out in result.stdout and "not reached" not in result.stdout
    assert err in result.stderr and result.stderr.rstrip().endswith("atexit ran")


def test_exit_now_behaves_like_sys_exit():
    for code, returncode, stderr in (("0", 0, ""), ("None", 0, ""), ("3", 3, ""),
                                     ("'bye'", 1, "bye\n")):
        program = (f"import sys; print('buffered', end=''); from minidl_cli.cli import "
                   f"exit_now; exit_now({code})")
        result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
        assert (result.returncode, result.stdout, result.stderr) == (returncode, "buffered",
                                                                    stderr)
