"""The tests' script runner: a run forked from the worker answers as a new interpreter does."""

import pytest

from tests.fixtures import _can_fork, run_script

SCRIPT = """
import logging, sys, warnings
warnings.warn("a user warning")
logging.getLogger("mmhlop").warning("a log record")
print("to stdout", sys.argv[1:])
raise SystemExit(int(sys.argv[1]))
"""


@pytest.mark.skipif(not _can_fork(), reason="the worker runs scripts in new interpreters here")
@pytest.mark.parametrize("exit_code", [0, 3])
def test_a_forked_run_gives_what_a_new_interpreter_gives(tmp_path, exit_code):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    forked = run_script(str(script), str(exit_code))
    fresh = run_script(str(script), str(exit_code), fresh=True)
    assert forked.returncode == fresh.returncode == exit_code
    assert forked.stdout == fresh.stdout == f"to stdout ['{exit_code}']\n"
    assert forked.stderr == fresh.stderr and "UserWarning: a user warning" in forked.stderr
    assert "a log record" in forked.stderr


def test_an_uncaught_error_exits_1_with_its_traceback(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("raise ValueError('bad input')\n")
    result = run_script(str(script))
    assert result.returncode == 1 and result.stderr.rstrip().endswith("ValueError: bad input")
