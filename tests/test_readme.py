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


def test_the_notebook_example_runs(tmp_path):
    """docs/python.md's Python example, pointed at a tiny dataset and encoders (the rest as written)."""
    import contextlib
    import io
    import re

    from tests.fixtures import make_scene_dataset, pretrain_tiny

    data = make_scene_dataset(tmp_path / "data", classes=("A", "B", "C", "D"), per_class=10)
    pretrained = pretrain_tiny(data, tmp_path)
    block = re.search(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "python.md").read_text(), re.S).group(1)
    for old, new in (
        ('"datasets/avdigits"', repr(str(data))),
        ('"pre_weight/avdigits"', repr(str(pretrained))),
        ('"logs/notebook-hlop"', repr(str(tmp_path / "nb"))),
        ("overwrite=True", f"overwrite=True, cache_dir={str(tmp_path / 'cache')!r}"),
        ("ContinualConfig(epochs=20)", "ContinualConfig(epochs=2, hidden=16)"),
    ):
        assert old in block, old
        block = block.replace(old, new)
    block = block.replace("[HLOP()]", "[HLOP(HLOPConfig(out_num=(4, 8, 8), out_num_inc=(2, 4, 4)))]")
    block = "from continual.methods import HLOPConfig\n" + block
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, "README.md", "exec"), {})
    assert re.search(r"ACC 0\.\d{3}  BWT -?0\.\d{3}  audio only 0\.\d{3}", printed.getvalue())
    assert (tmp_path / "nb" / "results.json").is_file()


def test_the_library_imports_from_a_notebook_elsewhere_as_docs_python_md_says(tmp_path):
    import subprocess
    import sys

    code = (
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); from continual.experiment import Experiment; Experiment()"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
