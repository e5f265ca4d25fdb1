"""The tests' script runner: a script run in the test's process answers as a new interpreter does."""

import pytest

from common.paths import REPO_ROOT
from tests.fixtures import run_script

SCRIPT = """
import sys, warnings
sys.path.insert(0, {root!r})  # a new interpreter puts the script's folder first, not the repository
from common.errors import UserError


def main(argv):
    warnings.warn("a user warning")
    print("to stdout", argv)
    if argv[0] == "user-error":
        raise UserError("-flag x: a bad value")
    if argv[0] == "crash":
        raise ValueError("bad input")
    raise SystemExit(int(argv[0]))


if __name__ == "__main__":
    from common.cli import run_cli

    sys.exit(run_cli(main))
"""


@pytest.mark.parametrize("argument", ["0", "3", "user-error"])
def test_an_in_process_run_gives_what_a_new_interpreter_gives(tmp_path, argument):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(root=str(REPO_ROOT)))
    here = run_script(str(script), argument)
    fresh = run_script(str(script), argument, fresh=True)
    assert here.returncode == fresh.returncode == {"0": 0, "3": 3, "user-error": 2}[argument]
    assert here.stdout == fresh.stdout == f"to stdout ['{argument}']\n"
    assert "UserWarning: a user warning" in here.stderr and "UserWarning: a user warning" in fresh.stderr
    assert ("error: -flag x: a bad value" in here.stderr) == (argument == "user-error")


def test_an_uncaught_error_exits_1_with_its_traceback(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(root=str(REPO_ROOT)))
    for result in (run_script(str(script), "crash"), run_script(str(script), "crash", fresh=True)):
        assert result.returncode == 1 and result.stderr.rstrip().endswith("ValueError: bad input")
