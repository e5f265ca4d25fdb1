"""Profile one HLOP training epoch with torch.profiler: the operators that take the most time.

python benchmarks/profile_continual.py [-pretrained DIR] [-device cuda] [-rows 15]
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torch.profiler import ProfilerActivity, profile

from benchmarks.speed import benchmark_config, epoch_seconds, load
from common.cli import FlagParser, run_cli
from common.device import select_device


def main(argv) -> None:
    parser = FlagParser(prog="python benchmarks/profile_continual.py", description=__doc__.splitlines()[0])
    parser.flag("-pretrained", default=None)
    parser.flag("-device", default=None)
    parser.flag("-rows", type=int, default=15, help="operators to list")
    args = parser.parse_args(argv)
    device = select_device(None, args.device)
    _, _, data = load(Path(args.pretrained) if args.pretrained else None, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        epoch_seconds("hlop", data, benchmark_config(), 1, device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=key, row_limit=args.rows))


if __name__ == "__main__":
    sys.exit(run_cli(main))
