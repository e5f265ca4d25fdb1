"""The docs' commands parse as written, and the docs use one spelling per flag and never speak of anything
outside the repository."""

import re
import shlex

import pytest

from common.paths import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def _commands(path):
    """Every script invocation in the file's bash blocks: (script, its arguments)."""
    text = path.read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            for part in line.split("&&"):
                words = shlex.split(part)
                for index, word in enumerate(words):
                    if word.endswith(("spiking_train_multimodal_end.py", "spiking_pretrain_multimodal.py")):
                        yield word, words[index + 1 :]
                        break


CASES = [(path.name, script, args) for path in DOCS for script, args in _commands(path)]


def test_the_docs_show_commands():
    assert len(CASES) >= 10


@pytest.mark.parametrize(("doc", "script", "args"), CASES, ids=[f"{c[0]}:{' '.join(c[2])[:40]}" for c in CASES])
def test_every_command_in_the_docs_parses_as_written(doc, script, args):
    import spiking_pretrain_multimodal as pretraining
    import spiking_train_multimodal_end as continual

    module = continual if script.endswith("end.py") else pretraining
    parsed = module.build_parser().parse_args(args)
    if module is continual:
        continual.methods_from_args(parsed)
        continual.config_from_args(parsed)


def test_the_docs_spell_flags_one_way_and_stay_inside_the_repository():
    allowed = {
        "--help",
        "--help-all",
        "--standalone",
        "--nproc_per_node",
        "--nnodes",
        "--rdzv_id",
        "--rdzv_backend",
        "--rdzv_endpoint",
    }
    for path in DOCS:
        text = path.read_text()
        double = {m for m in re.findall(r"(?<![\w-])--[a-z][\w-]*", text) if m.split("=")[0] not in allowed}
        assert not double, f"{path.name} spells flags with two dashes: {sorted(double)}"
        for phrase in ("this session", "shared/", "DESIGN.md", "this machine's"):
            assert phrase not in text, f"{path.name} speaks of {phrase!r}"


def test_the_readme_fits_one_screen_of_needs():
    assert len((REPO_ROOT / "README.md").read_bytes()) <= 15 * 1024
