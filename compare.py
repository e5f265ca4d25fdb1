"""Compare continual runs: a markdown table of ACC/BWT (mean ± std over seeds) and a plot.

    python compare.py RUN_DIR... [--plot comparison.png] [--markdown FILE]

Each RUN_DIR is a finished run's -out_dir (a single run or a -seeds summary).
"""

import sys

from common import atomic
from common.cli import FlagParser, run_cli
from common.paths import shown
from continual.report import load_results, markdown_table, plot_final_accuracy


def main(argv) -> None:
    parser = FlagParser(prog="python compare.py", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished runs' output folders")
    parser.flag("--plot", default="comparison.png", help="where to save the plot of final accuracy per task")
    parser.flag("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    from pathlib import Path

    runs = {}
    for run_dir in args.runs:
        name = Path(run_dir).resolve().name
        while name in runs:
            name += "'"
        runs[name] = load_results(run_dir)
    table = markdown_table(runs)
    print(table)
    plot_final_accuracy(runs, args.plot)
    print(f"plot: {shown(args.plot)}")
    if args.markdown:
        atomic.write_text(args.markdown, table + "\n")


if __name__ == "__main__":
    sys.exit(run_cli(main))
