"""Results as code: every preset loads in both scripts, every table row has a preset, and the table command
writes rows from finished runs stamped with the commit they were measured at."""

import hashlib
import json

import pytest

from benchmarks import tables
from common.errors import UserError
from common.paths import REPO_ROOT

PRESETS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def made_by(name: str, *flags: str) -> dict:
    """results.json's record of a run of configs/<name>.yaml with ``flags`` (dests) also on the command line."""
    digest = hashlib.sha256((REPO_ROOT / "configs" / f"{name}.yaml").read_bytes()).hexdigest()[:16]
    return {"preset": {"path": f"configs/{name}.yaml", "sha256": digest},
            "command": {"argv": [], "flags": ["config", "out_dir", "resume", *flags]}}  # fmt: skip


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_parses_in_both_scripts_and_names_only_their_flags(path):
    import spiking_pretrain_multimodal as pretraining
    import spiking_train_multimodal_end as continual

    pretraining.build_parser().parse_args(["-config", str(path)])  # a key of neither script is refused
    args = continual.build_parser().parse_args(["-config", str(path)])
    continual.methods_from_args(args)  # and the method flags build
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines and all("#" in line for line in lines), f"{path.name}: every key says why it differs"


def test_every_table_row_has_a_preset_and_every_preset_a_row():
    named = [p for t in tables.TABLES for p in t.presets]
    assert sorted(named) == sorted(p.stem for p in PRESETS)
    assert set(tables.HEADLINE) <= set(named)


def test_the_table_command_writes_rows_from_runs_and_says_which_are_missing(tmp_path):
    runs = tmp_path / "runs"
    (runs / "frozen-hlop").mkdir(parents=True)
    record = {"method": "hlop", "acc": 0.958, "acc_std": 0.0069, "bwt": -0.0267, "bwt_std": 0.0063,
              "acc_audio_only": 0.6, "memory_bytes": 5 * 2**20, "seeds": [0, 1, 2], "provenance": {"commit": "abc1234"},
              "config": made_by("frozen-hlop")}  # fmt: skip
    (runs / "frozen-hlop" / "results.json").write_text(json.dumps(record))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- headline table: benchmarks/tables.py write -->\nold\n<!-- end of table -->\nrest\n")
    tables.main(["write", "-runs", str(runs), "-out", str(tmp_path / "results.md"), "-readme", str(readme)])
    text = (tmp_path / "results.md").read_text()
    assert (
        "| `frozen-hlop` | hlop | 95.8 ± 0.7 | -2.7 ± 0.6 | 60.0 | n/a | n/a | n/a | 5.0 MiB | 0,1,2 | abc1234 |"
        in text
    )
    assert "| `frozen-gpm` | not measured at " in text and "Written by `python benchmarks/tables.py write`" in text
    headline = readme.read_text()
    assert "old" not in headline and "| `frozen-hlop` | hlop | 95.8 ± 0.7 |" in headline and headline.endswith("rest\n")


def test_the_table_command_keeps_a_written_row_whose_run_is_not_here(tmp_path):
    """Runs stay on the machine that made them: writing again elsewhere keeps each row and its commit."""
    runs = tmp_path / "runs"
    (runs / "frozen-hlop").mkdir(parents=True)
    record = {"method": "hlop", "acc": 0.958, "bwt": -0.0267, "seeds": [0], "provenance": {"commit": "abc1234"},
              "config": made_by("frozen-hlop")}  # fmt: skip
    (runs / "frozen-hlop" / "results.json").write_text(json.dumps(record))
    out = tmp_path / "results.md"
    tables.write_tables(runs, out, None)
    row = next(line for line in out.read_text().splitlines() if line.startswith("| `frozen-hlop` |"))
    (runs / "frozen-hlop" / "results.json").unlink()
    tables.write_tables(runs, out, None)
    assert row in out.read_text().splitlines() and "abc1234" in row
    assert "| `frozen-gpm` | not measured at " in out.read_text()


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({}, "made with no -config file, not configs/frozen-er.yaml"),
        (made_by("frozen-hlop"), "made with -config configs/frozen-hlop.yaml, not configs/frozen-er.yaml"),
        ({**made_by("frozen-er"), "preset": {"path": "configs/frozen-er.yaml", "sha256": "0" * 16}},
         "an earlier configs/frozen-er.yaml"),
        (made_by("frozen-er", "seeds", "split"), "-seeds -split on the command line"),
    ],
)  # fmt: skip
def test_the_table_command_refuses_a_run_its_preset_did_not_make(tmp_path, config, says):
    runs = tmp_path / "runs"
    (runs / "frozen-er").mkdir(parents=True)
    record = {"method": "er", "acc": 0.9, "bwt": -0.05, "seeds": [0], "provenance": {"commit": "abc1234"}}
    (runs / "frozen-er" / "results.json").write_text(json.dumps({**record, "config": config}))
    with pytest.raises(UserError, match=says):
        tables.write_tables(runs, tmp_path / "results.md", None)
    assert not (tmp_path / "results.md").exists()
