"""The speaker-wise cross-validation's table: validation rows only, joint training read as its confusions."""

from __future__ import annotations

import json

import pytest

from benchmarks.speaker_cv import table
from common.errors import UserError


def _write(folder, seeds, per_seed, preset=None, val=None, test="t"):
    """A speaker_cv run of ``preset`` (the folder's name) in the world of the speaker ``val`` (its parent's name)."""
    folder.mkdir(parents=True)
    config = {"preset": {"path": f"configs/{preset or folder.name}.yaml"},
              "split_groups": {"val": [val or folder.parent.name], "test": [test]}}  # fmt: skip
    (folder / "results.json").write_text(json.dumps({"seeds": seeds, "config": config}))
    for seed, record in zip(seeds, per_seed, strict=True):
        (folder / f"seed{seed}").mkdir()
        (folder / f"seed{seed}" / "results.json").write_text(json.dumps(record))


def test_the_table_averages_validation_scores_over_seeds_then_speakers(tmp_path):
    for speaker, acc in (("a", 0.9), ("b", 0.8)):
        _write(tmp_path / speaker / "frozen-hlop", [0, 1], [
            {"acc_matrix_val": [[1.0, None], [0.8, 1.0]], "acc_val": acc, "bwt_val": -0.2, "acc": 0.5},
            {"acc_matrix_val": [[1.0, None], [0.9, 1.0]], "acc_val": acc - 0.1, "bwt_val": -0.1, "acc": 0.5},
        ])  # fmt: skip
        _write(tmp_path / speaker / "frozen-joint", [0], [
            {"acc_matrix_val": [[None, None], [0.96, 0.9]], "acc_val": 0.93, "bwt_val": None, "acc": 0.5},
        ])  # fmt: skip
    lines = table(["a", "b"], ["frozen-hlop", "frozen-joint"], tmp_path, "t")
    assert lines[2] == "| a | 85.00 / -15.00 | 93.00 / -4.00 |"
    assert lines[3] == "| b | 75.00 / -15.00 | 93.00 / -4.00 |"
    assert lines[4] == "| mean | 80.00 / -15.00 | 93.00 / -4.00 |"


def test_a_run_without_validation_rows_is_named(tmp_path):
    _write(tmp_path / "a" / "frozen-hlop", [0], [{"acc": 0.5, "bwt": 0.0}])
    with pytest.raises(UserError, match="no validation matrix"):
        table(["a"], ["frozen-hlop"], tmp_path, "t")


@pytest.mark.parametrize(
    ("preset", "val", "test", "says"),
    [
        ("frozen-gpm", "a", "t", "made with -config configs/frozen-gpm.yaml, not configs/frozen-hlop.yaml"),
        ("frozen-hlop", "b", "t", "a run of another world"),
        ("frozen-hlop", "a", "u", "a run of another world"),
    ],
)
def test_a_run_of_another_preset_or_world_is_refused(tmp_path, preset, val, test, says):
    record = {"acc_matrix_val": [[1.0, None], [0.8, 1.0]], "acc_val": 0.9, "bwt_val": -0.2}
    _write(tmp_path / "a" / "frozen-hlop", [0], [record], preset=preset, val=val, test=test)
    with pytest.raises(UserError, match=says):
        table(["a"], ["frozen-hlop"], tmp_path, "t")


def test_a_missing_run_is_named_not_a_traceback(tmp_path):
    with pytest.raises(UserError, match="no such run"):
        table(["a"], ["frozen-hlop"], tmp_path, "t")
