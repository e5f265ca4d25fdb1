"""Speaker-wise cross-validation of frozen-feature presets: a choice between settings made on several validation
speakers, none of them the test speaker.

    python benchmarks/speaker_cv.py                # frozen-joint, frozen-hlop, frozen-hlop-taskend; 4 speakers, seeds 0-4
    python benchmarks/speaker_cv.py -presets frozen-hlop,frozen-gpm -speakers george -seeds 0,1,2
    python benchmarks/speaker_cv.py -presets frozen-hlop -flags="-hlop_out_num 40,200,100" -tag fc1-40

One validation speaker gives a noisy answer (100 rows per task). Here each training speaker of the tables' split
is held out in turn as the validation speaker (``-val_groups``), the test speaker stays the test speaker, and the
encoders are pretrained again without either, so that no encoder heard the speaker the choice is made on:

    python spiking_pretrain_multimodal.py -config configs/frozen-joint.yaml -split group -val_groups V \\
        -test_groups nicolas -out logs/speaker_cv/pre-V -resume
    python spiking_train_multimodal_end.py -config configs/P.yaml -pretrained logs/speaker_cv/pre-V \\
        -seeds S -out_dir logs/speaker_cv/V/P[+TAG] -resume [FLAGS]

The table printed at the end reads the validation rows only (results.json's ``acc_val`` and ``bwt_val``; for a
preset that trains on every task at once, its last row's earlier tasks against 100%, the later classes'
confusions alone), per speaker and as the mean over speakers.
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tables import CONFIGS, run_step
from common.cli import FlagParser, run_cli
from common.errors import UserError
from common.paths import REPO_ROOT


def run_world(speaker: str, test: str, presets: list[str], seeds: str, out: Path, flags: list[str], tag: str) -> None:
    """Encoders pretrained without ``speaker`` and ``test``, then each preset (with ``flags``) on them (both steps
    resume)."""
    encoders = out / f"pre-{speaker}"
    split = ["-split", "group", "-val_groups", speaker, "-test_groups", test]
    pretrain = ["spiking_pretrain_multimodal.py", "-config", str(CONFIGS / "frozen-joint.yaml"), *split]
    run_step([*pretrain, "-out", str(encoders), "-resume"], f"speaker {speaker}")
    for preset in presets:
        folder = out / speaker / f"{preset}{tag}"
        train = ["spiking_train_multimodal_end.py", "-config", str(CONFIGS / f"{preset}.yaml"), "-pretrained"]
        run_step(
            [*train, str(encoders), "-seeds", seeds, "-out_dir", str(folder), "-resume", *flags], f"speaker {speaker}"
        )


def validation_scores(folder: Path, preset: str, speaker: str, test: str) -> tuple[float, float]:
    """Mean validation ACC and BWT (%) over a run's seeds; joint training's BWT is its confusions alone. A run
    that ``preset`` did not make, or that held out other speakers, is refused."""
    path = folder / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: no such run; run it first (drop -only_table)")
    summary = json.loads(path.read_text())
    config = summary.get("config", {})
    made_by = (config.get("preset") or {}).get("path")
    if made_by != f"configs/{preset.split('+')[0]}.yaml":
        raise UserError(f"{path}: made with -config {made_by}, not configs/{preset.split('+')[0]}.yaml")
    held_out = config.get("split_groups", {})
    if held_out.get("val") != [speaker] or held_out.get("test") != [test]:
        raise UserError(f"{path}: validation {held_out.get('val')} and test {held_out.get('test')}, not "
                        f"[{speaker!r}] and [{test!r}]: a run of another world")  # fmt: skip
    seeds = summary["seeds"]
    runs = [json.loads((folder / f"seed{s}" / "results.json").read_text()) for s in seeds]
    accs, bwts = [], []
    for run in runs:
        if "acc_matrix_val" not in run:
            raise UserError(f"{folder}: results.json has no validation matrix (no validation rows?)")
        last = run["acc_matrix_val"][-1]
        accs.append(100 * run["acc_val"])
        bwt = run["bwt_val"]
        bwts.append(100 * (bwt if bwt is not None else statistics.fmean(v - 1 for v in last[:-1])))
    return statistics.fmean(accs), statistics.fmean(bwts)


def table(speakers: list[str], presets: list[str], out: Path, test: str) -> list[str]:
    """Markdown: one row per speaker, one column per run name (validation ACC / BWT %), then the mean row."""
    lines = ["| validation speaker | " + " | ".join(f"`{p}`" for p in presets) + " |"]
    lines.append("| --- |" + " --- |" * len(presets))
    scores = {p: [] for p in presets}
    for speaker in speakers:
        cells = []
        for preset in presets:
            acc, bwt = validation_scores(out / speaker / preset, preset, speaker, test)
            scores[preset].append((acc, bwt))
            cells.append(f"{acc:.2f} / {bwt:.2f}")
        lines.append(f"| {speaker} | " + " | ".join(cells) + " |")
    means = [
        f"{statistics.fmean(a for a, _ in scores[p]):.2f} / {statistics.fmean(b for _, b in scores[p]):.2f}"
        for p in presets
    ]
    lines.append("| mean | " + " | ".join(means) + " |")
    return lines


def main(argv) -> None:
    parser = FlagParser(prog="python benchmarks/speaker_cv.py", description=__doc__.splitlines()[0])
    parser.flag("-presets", default="frozen-joint,frozen-hlop,frozen-hlop-taskend", help="configs/<name>.yaml, "
                "comma-separated; each must use frozen encoders")  # fmt: skip
    parser.flag("-speakers", default="george,jackson,theo,yweweler", help="validation speakers, one world each")
    parser.flag("-test_speaker", default="nicolas", help="the test speaker, kept out of every world's training")
    parser.flag("-seeds", default="0,1,2,3,4", help="training seeds of every run")
    parser.flag("-out", default=str(REPO_ROOT / "logs" / "speaker_cv"), help="where the worlds' runs go")
    parser.flag("-flags", default="", help='flags added to every continual run, as -flags="-hlop_lr 0.02" (needs -tag)')
    parser.flag("-tag", default="", help="names the runs with -flags: logs/speaker_cv/<speaker>/<preset>+<tag>")
    parser.flag("-only_table", action="store_true", help="print the table of finished runs, run nothing")
    args = parser.parse_args(argv)
    presets, speakers, out = args.presets.split(","), args.speakers.split(","), Path(args.out)
    if bool(args.flags) != bool(args.tag):
        raise UserError("-flags and -tag go together: the tag names the runs the flags change")
    tag = f"+{args.tag}" if args.tag else ""
    for preset in presets:
        if not (CONFIGS / f"{preset}.yaml").is_file():
            raise UserError(f"-presets: no configs/{preset}.yaml")
    if args.test_speaker in speakers:
        raise UserError(f"-speakers: {args.test_speaker} is the test speaker (-test_speaker)")
    if not args.only_table:
        for speaker in speakers:
            run_world(speaker, args.test_speaker, presets, args.seeds, out, shlex.split(args.flags), tag)
    print("\n".join(table(speakers, [f"{p}{tag}" for p in presets], out, args.test_speaker)))


if __name__ == "__main__":
    sys.exit(run_cli(main))
