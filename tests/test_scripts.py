"""The two top-level scripts end to end on a tiny fixture, as a user runs them."""

import subprocess
import sys

from common.paths import REPO_ROOT


def run_script(*args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def test_pretrain_script_prints_three_accuracies_and_refuses_to_clobber(scene_dir, tmp_path):
    out = tmp_path / "pw"
    common = ["--data-dir", str(scene_dir), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    first = run_script(
        "spiking_pretrain_multimodal.py", *common, "-epochs", "1", "--image-size", "16", "--feature-dim", "16"
    )
    assert first.returncode == 0, first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy (tiny, ") and all(f" {m} " in last for m in ("image", "audio", "fused"))
    second = run_script("spiking_pretrain_multimodal.py", *common, "-epochs", "1")
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1 and "already holds results" in second.stderr
    resumed = run_script(
        "spiking_pretrain_multimodal.py",
        *common,
        "-epochs",
        "1",
        "--image-size",
        "16",
        "--feature-dim",
        "16",
        "-resume",
    )
    assert resumed.returncode == 0 and "already finished" in resumed.stdout
