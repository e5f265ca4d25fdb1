"""Compare continual runs: a markdown table of ACC/BWT (mean ± std over seeds) and a plot.

    python compare.py RUN_DIR... [-plot FILE] [-markdown FILE]

Each RUN_DIR is a finished run's -out_dir (a single run, a -seeds or an -order_seeds summary). Every row
shows its protocol (scenario, encoders and what they saw, split); runs of different protocols are
refused unless -allow_mixed. The plot goes beside the runs (their common parent folder,
comparison.png) unless -plot names a file.
"""

import os
import sys
from pathlib import Path

from common import atomic
from common.cli import FlagParser, run_cli
from common.paths import shown
from continual.report import check_comparable, load_results, markdown_table, plot_final_accuracy, probe_table


def default_plot_path(run_dirs) -> Path:
    """comparison.png in the deepest folder that holds every run (never the working directory by accident)."""
    parents = [str(Path(run_dir).resolve().parent) for run_dir in run_dirs]
    return Path(os.path.commonpath(parents)) / "comparison.png"


def main(argv) -> None:
    parser = FlagParser(prog="python compare.py", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished runs' output folders")
    parser.flag(
        "-plot",
        default=None,
        help="where to save the plot of final accuracy per task (default: comparison.png in the runs' common parent)",
    )
    parser.flag("-markdown", default=None, help="also write the table to this file")
    parser.flag(
        "-allow_mixed",
        action="store_true",
        help="show runs of different protocols (scenario, encoders, what they saw, split, tasks) side by side; "
        "refused otherwise",
    )
    args = parser.parse_args(argv)
    runs = {}
    for run_dir in args.runs:
        name = Path(run_dir).resolve().name
        while name in runs:
            name += "'"
        runs[name] = load_results(run_dir)
    if args.allow_mixed:
        print("note: these runs differ in protocol; each row names its own (scenario, encoders, split)")
    else:
        check_comparable(runs)
    table = markdown_table(runs)
    probes = probe_table(runs)
    table += f"\n\nTest-time probes (one modality, failed sensors, validation rows):\n\n{probes}" if probes else ""
    print(table)
    plot = args.plot or default_plot_path(args.runs)
    plot_final_accuracy(runs, plot)
    print(f"plot: {shown(plot)}")
    if args.markdown:
        atomic.write_text(args.markdown, table + "\n")


if __name__ == "__main__":
    sys.exit(run_cli(main))
