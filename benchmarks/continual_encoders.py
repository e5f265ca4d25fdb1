"""The cost of learning the whole network task after task: -encoder_mode continual against frozen features.

    python benchmarks/continual_encoders.py [-split group] [-method hlop] [FLAGS of the continual script]

Runs the 5-task continual script twice on the embedded dataset, with the same method and seed:
once on the cached features of frozen encoders (``pre_weight/<dataset>[-group]``, pretrained
first if missing) and once with ``-encoder_mode continual -pretrained none`` (images and MFCC
through the encoders on every batch). Prints the seconds of each run, the training samples per
second (rows x epochs over the run's training time) and the ratio; JSON in
``logs/benchmarks/continual_encoders.json``. Timed figures live here, not in the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import atomic
from common.cli import FlagParser, run_cli
from common.errors import UserError
from common.paths import REPO_ROOT, shown


def run(args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "spiking_train_multimodal_end.py", "-out_dir", f"{folder}/run", *args]
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(f"{' '.join(command[1:])} failed: {result.stderr.strip().splitlines()[-1:]}")
        return json.loads(Path(folder, "run", "results.json").read_text())


def main(argv) -> None:
    parser = FlagParser(prog="python benchmarks/continual_encoders.py", description=__doc__.splitlines()[0])
    parser.flag("-split", default="group", help="the pretraining and continual split")
    parser.flag("-json", default=str(REPO_ROOT / "logs" / "benchmarks" / "continual_encoders.json"))
    args, extra = parser.parse_known_args(argv)
    pretrained = subprocess.run(
        [sys.executable, "spiking_pretrain_multimodal.py", "-split", args.split, "-resume"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if pretrained.returncode != 0:
        raise UserError(f"pretraining failed: {pretrained.stderr.strip().splitlines()[-1:]}")
    frozen = run(["-split", args.split, *extra])
    continual = run(["-split", args.split, "-encoder_mode", "continual", "-pretrained", "none", *extra])
    figures = {}
    for name, results in (("frozen", frozen), ("continual", continual)):
        epochs = results["config"]["epochs"]
        figures[name] = {
            "seconds": results["seconds"],
            "samples_per_second": results["train_rows"] * epochs / sum(results["task_seconds"]),
            "acc": results["acc"],
            "bwt": results["bwt"],
        }
    figures["ratio"] = figures["continual"]["seconds"] / figures["frozen"]["seconds"]
    atomic.write_json(args.json, {"flags": extra, "split": args.split, **figures})
    for name in ("frozen", "continual"):
        f = figures[name]
        print(
            f"{name:9s}: {f['seconds']:.1f} s, {f['samples_per_second']:.0f} training samples/s, ACC {f['acc'] * 100:.2f}%"
        )
    print(f"continual / frozen time: {figures['ratio']:.2f}x; figures: {shown(args.json)}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
