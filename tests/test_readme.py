"""The README opens with the two commands, and CI runs the second one verbatim."""

from common.paths import REPO_ROOT


def _readme_commands():
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_exactly_two_commands():
    text = (REPO_ROOT / "README.md").read_text()
    assert text.index("```bash") < text.index("\n## "), "the commands must come before the first section"
    assert len(_readme_commands()) == 2


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    test_command = _readme_commands()[1]
    assert "pytest" in test_command
    assert test_command in ci
