"""Results as code: run the presets of configs/ and write the tables of docs/results.md (and README's headline).

    python benchmarks/tables.py run PRESET [PRESET ...]   # pretrain if needed, run each into logs/presets/<preset>
    python benchmarks/tables.py run all                   # every preset of every table
    python benchmarks/tables.py write                     # docs/results.md and README.md's table, from those runs

A preset is one YAML file both scripts read (``-config``); ``run`` calls
``spiking_pretrain_multimodal.py -config P -resume`` (unless the encoders start from random weights)
and ``spiking_train_multimodal_end.py -config P -out_dir logs/presets/<P> -resume``. ``write`` fills
each table below from the finished runs: every row names its preset and the commit it was measured
at, and a row whose run is missing says so instead of a number.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from common import atomic
from common.cli import FlagParser, run_cli
from common.errors import UserError
from common.paths import REPO_ROOT
from common.provenance import commit, machine

CONFIGS = REPO_ROOT / "configs"
RUNS = REPO_ROOT / "logs" / "presets"


@dataclass(frozen=True)
class Table:
    key: str  # its anchor in docs/results.md
    title: str
    about: str  # the protocol: what the encoders saw, the split, the scenario, the seeds
    presets: tuple[str, ...]
    columns: tuple[str, ...] = ("acc", "bwt", "avg_forgetting", "avg_incremental_acc", "memory")


HELD_OUT = "held-out speaker (`split: group`: nicolas only in test, lucas only in validation), seeds 0, 1, 2"
TABLES = (
    Table(
        "frozen",
        "Frozen encoders pretrained on all classes (the reference's protocol), class scenario",
        "The encoders saw every class's training rows before task 0 (later tasks leak into the features), pretrained "
        f"with the defaults (MFCC noise of 1.0, docs/pipeline.md); {HELD_OUT}.",
        (
            "frozen-joint",
            "frozen-baseline",
            "frozen-hlop",
            "frozen-hlop-paths",
            "frozen-hlop-taskend",
            "frozen-hlop-reference",
            "frozen-gpm",
            "frozen-ewc",
            "frozen-replay",
            "frozen-er",
            "frozen-hlop-er",
            "frozen-derpp",
            "frozen-hlop-analytic",
            "frozen-hlop-ncm",
            "frozen-hlop-reference-ncm",
        ),
        ("acc", "bwt", "acc_audio_only", "bwt_audio_only", "acc_image_only", "bwt_image_only", "memory"),
    ),
    Table(
        "leak-free-task",
        "Leak-free: the whole network learns task after task from random weights, task scenario",
        f"No encoder ever saw a later task's rows (`encoder_mode: continual`, `pretrained: none`); {HELD_OUT}.",
        (
            "leakfree-task-joint",
            "leakfree-task-baseline",
            "leakfree-task-hlop",
            "leakfree-task-hlop-online",
            "leakfree-task-gpm",
        ),
    ),
    Table(
        "leak-free-class",
        "Leak-free, class scenario: one head over all classes, no task label at test time",
        f"As above, with one head over every class seen so far (`leakfree-class-first-task-hlop-analytic`: the encoders "
        f"start from weights pretrained on task 0's rows only; HLOP with the closed-form head, "
        f"`leakfree-class-hlop-analytic`, is in the next table beside its spiking counterpart); {HELD_OUT}.",
        (
            "leakfree-class-joint",
            "leakfree-class-joint-analytic",
            "leakfree-class-baseline",
            "leakfree-class-hlop",
            "leakfree-class-gpm",
            "leakfree-class-gpm-analytic",
            "leakfree-class-baseline-analytic",
            "leakfree-class-fixed-analytic",
            "leakfree-class-first-task-hlop-analytic",
            "leakfree-class-gpm-analytic-embeddings",
            "leakfree-class-hlop-analytic-embeddings",
            "leakfree-class-hlop-ncm",
            "leakfree-class-er",
            "leakfree-class-er-ace",
            "leakfree-class-derpp",
            "leakfree-class-replay",
        ),
    ),
    Table(
        "failed-sensors",
        "A failed sensor: every test image or every test MFCC replaced",
        f"HLOP on frozen encoders pretrained on all classes, class scenario; {HELD_OUT}. ACC % of the fused "
        "network with the modality removed (only) or failed in each way (`-test_corrupt image:all,audio:all`); "
        "under a swap (each row given another row's image, or audio) no answer can be right for both sensors, so "
        'the "either" columns give the share of rows answered with the class of either row. The image gate '
        "(`-image_gate`, on by default) leaves an image out of its row's fusion where its embedding is atypical, "
        "the audio gate (`-audio_gate`, on by default) the audio where its MFCC frames do not correlate from one "
        "frame to the next.",
        ("sensors-attention", "sensors-attention-ungated", "sensors-attention-views", "sensors-reliability"),
        (
            "acc",
            "acc_audio_only",
            "acc_image_only",
            *(f"acc_corrupt_{m}{k}" for m in ("image", "audio") for k in ("", "_uniform", "_swap", "_constant")),
            "acc_corrupt_audio_silence",
            "acc_corrupt_image_swap_either",
            "acc_corrupt_audio_swap_either",
        ),
    ),
)
TABLES += (
    Table(
        "spiking-end-to-end",
        "Leak-free, class scenario: spiking from the input to the readout",
        "The spiking image and audio encoders learn task after task from random weights under HLOP, fused by the "
        "mean of their firing rates; the closed-form head reads their firing rates (no stored rows, no ANN "
        f"activation between the input and the readout), beside the same protocol with ANN encoders; {HELD_OUT}. "
        "Energy: per test sample, the toolkit's model (MACs at 4.6 pJ, synaptic operations at 0.9 pJ; "
        "docs/pipeline.md).",
        ("leakfree-class-hlop-analytic", "leakfree-class-spiking-hlop-analytic"),
        ("acc", "bwt", "avg_forgetting", "avg_incremental_acc", "memory", "energy"),
    ),
)
AVPHOTOS = "avphotos (CIFAR-10 photographs paired with the spoken digits, `data_dir: datasets/avphotos`): "
TABLES += (
    Table(
        "avphotos-frozen",
        "avphotos: frozen encoders pretrained on all classes, class scenario",
        f"{AVPHOTOS}as the first table, on photographs far harder than handwritten digits; {HELD_OUT}.",
        tuple(f"avphotos-frozen-{name}" for name in ("joint", "baseline", "hlop", "hlop-paths", "gpm", "er", "derpp")),
        TABLES[0].columns,
    ),
    Table(
        "avphotos-failed-sensors",
        "avphotos: a failed sensor",
        f"{AVPHOTOS}as the failed-sensor table above; {HELD_OUT}.",
        tuple(
            f"avphotos-sensors-{name}" for name in ("attention", "attention-ungated", "attention-views", "reliability")
        ),
        TABLES[3].columns,
    ),
    Table(
        "avphotos-spiking-end-to-end",
        "avphotos: leak-free class scenario, spiking from the input to the readout",
        f"{AVPHOTOS}as the spiking end-to-end table above, beside joint training with the same closed-form head; "
        f"{HELD_OUT}.",
        tuple(
            f"avphotos-leakfree-class-{name}" for name in ("joint-analytic", "hlop-analytic", "spiking-hlop-analytic")
        ),
        TABLES[-1].columns,
    ),
)
QUICK_START = Table(
    "quick-start",
    "The README's first command, and the reference command",
    "Encoders pretrained on all classes, the default stratified split (the same six speakers in training and "
    "test: a random row split, optimistic), class scenario, seed 0.",
    ("quickstart-baseline", "quickstart-hlop", "reference"),
)
TABLES = (QUICK_START, *TABLES)
HEADLINE = ("frozen-joint", "frozen-hlop", "frozen-hlop-reference", "frozen-gpm", "leakfree-task-joint",
            "leakfree-task-hlop", "leakfree-task-gpm", "leakfree-class-joint", "leakfree-class-hlop-analytic",
            "leakfree-class-spiking-hlop-analytic", "leakfree-class-er", "leakfree-class-er-ace", "avphotos-frozen-joint", "avphotos-frozen-hlop",
            "avphotos-frozen-gpm")  # fmt: skip
NAMES = {"acc": "ACC %", "bwt": "BWT %", "avg_forgetting": "avg forgetting %", "avg_incremental_acc":
         "avg incremental ACC %", "memory": "memory", "energy": "energy per test sample", "acc_audio_only": "audio only ACC %", "bwt_audio_only":
         "audio only BWT %", "acc_image_only": "image only ACC %", "bwt_image_only": "image only BWT %",
         "acc_corrupt_image_swap_either": "image swap: either class %",
         "acc_corrupt_audio_swap_either": "audio swap: either class %"}  # fmt: skip


def preset_path(name: str) -> Path:
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"preset {name}: no {path.relative_to(REPO_ROOT)}")
    return path


# flags that say where and how a run is done, not what it computes: a preset's run may add them
RUN_MANAGEMENT = frozenset(("config", "out_dir", "resume", "overwrite", "progress_every", "checkpoint_every", "device",
                            "gpu_id", "cache_dir", "debug", "compile", "quiet"))  # fmt: skip


def check_made_by_preset(name: str, results: dict, path: Path) -> None:
    """Refuse to publish a run under a preset's row unless that preset, as it is now, made it, with nothing added
    but where and how it ran (the seeds, the split and every setting are the preset's)."""
    config = results.get("config") or {}
    preset, command = config.get("preset") or {}, config.get("command") or {}
    want = preset_path(name)
    if preset.get("path") != want.relative_to(REPO_ROOT).as_posix():
        made = f"-config {preset['path']}" if preset.get("path") else "no -config file"
        raise UserError(
            f"{path}: made with {made}, not configs/{name}.yaml; run python benchmarks/tables.py run {name}"
        )
    if preset.get("sha256") != hashlib.sha256(want.read_bytes()).hexdigest()[:16]:
        raise UserError(f"{path}: made with an earlier configs/{name}.yaml; run python benchmarks/tables.py run {name}")
    added = sorted(set(command.get("flags", [])) - RUN_MANAGEMENT)
    if added:
        raise UserError(f"{path}: made with configs/{name}.yaml and -{' -'.join(added)} on the command line; "
                        f"a table row is the preset alone (python benchmarks/tables.py run {name})")  # fmt: skip


def run_preset(name: str, runs: Path = RUNS) -> None:
    """Pretrain (unless the encoders start from random weights) and run the preset; both resume if done."""
    path = preset_path(name)
    values = yaml.safe_load(path.read_text()) or {}
    steps = []
    learning = {**values, **(values.get("continual") or {})}
    if not (learning.get("encoder_mode") == "continual" and str(learning.get("pretrained", "none")) == "none"):
        steps.append(["spiking_pretrain_multimodal.py", "-config", str(path), "-resume"])
    steps.append(["spiking_train_multimodal_end.py", "-config", str(path), "-out_dir", str(runs / name), "-resume"])
    for step in steps:
        run_step(step, f"preset {name}")


def run_step(step: list[str], what: str) -> None:
    """``python *step`` from the repository root, shown first; a failure names ``what`` it was for."""
    print("$ python " + " ".join(step), flush=True)
    if subprocess.run([sys.executable, *step], cwd=REPO_ROOT).returncode != 0:
        raise UserError(f"{what}: python {' '.join(step)} failed")


def _cell(results: dict, column: str) -> str:
    if column == "energy":
        joules = (results.get("energy_joules") or {}).get("per_sample_inference")
        return "n/a" if joules is None else f"{joules * 1e6:.1f} µJ"
    if column == "memory":
        size = results.get("memory_bytes") or 0
        return next((f"{size / unit:.1f} {name}" for name, unit in (("MiB", 2**20), ("KiB", 2**10)) if size >= unit),
                    f"{size} B")  # fmt: skip
    value = results.get(column)
    if value is None:
        return "n/a"
    spread = results.get(f"{column}_std")
    return f"{value * 100:.1f}" + (f" ± {spread * 100:.1f}" if spread is not None else "")


def written_rows(path: Path) -> dict[str, str]:
    """The rows a file already holds, by preset: what ``write`` keeps for a preset whose run is not here
    (runs stay on the machine that made them; a row keeps the commit it was measured at)."""
    if not path.is_file():
        return {}
    rows = {}
    for line in path.read_text().splitlines():
        if line.startswith("| `") and "` | " in line and " | not measured at " not in line:
            rows.setdefault(line[3:].split("`", 1)[0], line)
    return rows


def table_lines(table_presets: tuple[str, ...], columns: tuple[str, ...], runs: Path, head: str,
                kept: dict[str, str] | None = None) -> list[str]:  # fmt: skip
    """A markdown table: one row per preset, its method and columns, the seeds and the commit it was measured at;
    a preset with no run in ``runs`` keeps its row of ``kept`` (with as many cells), or says it is not measured."""
    import json

    names = [NAMES.get(c, c.replace("acc_corrupt_", "").replace("_", " ") + " ACC %") for c in columns]
    lines = [
        "| preset | method | " + " | ".join(names) + " | seeds | measured at |",
        "| --- " * (len(columns) + 4) + "|",
    ]
    for name in table_presets:
        path = runs / name / "results.json"
        if not path.is_file():
            row = (kept or {}).get(name)
            cells = len(columns) + 4
            lines.append(row if row and row.count(" | ") == cells - 1 else
                         f"| `{name}` | not measured at {head} |" + " |" * (cells - 2))  # fmt: skip
            continue
        results = json.loads(path.read_text())
        check_made_by_preset(name, results, path)
        measured = results.get("provenance", {}).get("commit", "unknown")
        seeds = ",".join(map(str, results.get("seeds", [results.get("config", {}).get("seed", 0)])))
        cells = " | ".join(_cell(results, c) for c in columns)
        lines.append(f"| `{name}` | {results['method']} | {cells} | {seeds} | {measured} |")
    return lines


def write_tables(runs: Path, out: Path, readme: Path | None) -> None:
    head, kept = commit(), written_rows(out)
    text = [
        "# Measured results",
        "",
        "Written by `python benchmarks/tables.py write` from the runs of the presets in `configs/` "
        f"(on {machine()}). Every row names its preset: "
        "`python benchmarks/tables.py run PRESET` regenerates it (pretraining, then the continual run). "
        "A row measured at an earlier commit says so in its last column (`+changes`: the working tree then held "
        "uncommitted edits beside that commit). ACC, BWT and forgetting are in %, "
        "mean ± sample standard deviation over the seeds; memory is what the method keeps between tasks.",
        "",
    ]
    for table in TABLES:
        text += [f"## {table.title}", "", f'<a id="{table.key}"></a>{table.about}', ""]
        text += [*table_lines(table.presets, table.columns, runs, head, kept), ""]
    atomic.write_text(out, "\n".join(text))
    if readme is not None:
        lines = table_lines(HEADLINE, ("acc", "bwt", "memory"), runs, head, written_rows(readme))
        _replace_between(readme, "<!-- headline table: benchmarks/tables.py write -->", "<!-- end of table -->", lines)


def _replace_between(path: Path, start: str, end: str, lines: list[str]) -> None:
    text = path.read_text()
    if start not in text or end not in text:
        raise UserError(f"{path}: no {start} ... {end} block to write the table into")
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    atomic.write_text(path, before + start + "\n" + "\n".join(lines) + "\n" + end + after)


def main(argv) -> None:
    parser = FlagParser(prog="python benchmarks/tables.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "write"), help="run presets, or write the tables")
    parser.add_argument("presets", nargs="*", help="run: preset names (configs/<name>.yaml), or all")
    parser.flag("-runs", default=str(RUNS), help="where the presets' runs are (logs/presets)")
    parser.flag("-out", default=str(REPO_ROOT / "docs" / "results.md"), help="write: the tables' file")
    parser.flag("-readme", default=str(REPO_ROOT / "README.md"), help="write: the README whose headline table is "
                "replaced (none: leave it)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "write":
        write_tables(Path(args.runs), Path(args.out), None if args.readme == "none" else Path(args.readme))
        print(f"tables: {args.out}")
        return
    every = [p for t in TABLES for p in t.presets]
    names = every if args.presets == ["all"] else args.presets
    if not names:
        raise UserError("run: name the presets to run (configs/<name>.yaml), or all")
    for name in names:
        preset_path(name)  # every name exists before the first runs
    for done, name in enumerate(names):
        try:
            run_preset(name, Path(args.runs))
        except UserError as failed:
            rest = names[done + 1 :]
            raise UserError(f"{failed}{'; not run: ' + ', '.join(rest) if rest else ''}") from None


if __name__ == "__main__":
    sys.exit(run_cli(main))
