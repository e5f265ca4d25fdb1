"""Pretrain the image and MFCC-audio encoders (ANN, or spiking with -encoder_type spiking) and their fusion.

Trains on the training split, selects on validation, tests once, and writes best.pt, last.pt
and meta.json to pre_weight/<dataset>/ (or -out). The continual script reads them. The flags are
declared in ``pretrain.cli``; the settings' open defaults are settled in ``pretrain.config``.
"""

import sys

from common import meter, spec
from common.cli import refuse_unused, run_cli
from common.device import select_device, wants_cuda
from common.distributed import init_distributed
from common.errors import UserError
from common.paths import shown
from common.rundir import RunDir
from common.seeding import use_deterministic_algorithms
from continual import cli as continual_cli
from dataloader.dataset import prepare_data
from dataloader.options import data_from_args
from dataloader.scene import TASKS
from pretrain import cli
from pretrain.artifacts import MARKERS, default_out_dir
from pretrain.convert import convert_pretrained, format_conversion
from pretrain.encoder_settings import EncoderSettings
from pretrain.trainer import pretrain


def build_parser():
    return cli.build_parser(description=__doc__.splitlines()[0], sibling=continual_cli.build_parser)


def main(argv) -> None:
    args = build_parser().parse_args(argv)
    refuse_unused(args, cli.APPLIES)
    encoders = spec.from_args(EncoderSettings, args)
    if args.convert and encoders.spiking:
        raise UserError("-convert: converts ANN encoders; spiking encoders are trained as spiking networks already")
    encoder = encoders.encoder_options()
    config = cli.config_from_args(args)  # bad values are refused before any data is read
    dist = init_distributed(use_cuda=wants_cuda(args.device))
    meter.configure(every=args.progress_every)
    if args.deterministic:
        use_deterministic_algorithms()
    data_spec, task_split = data_from_args(args)
    data = prepare_data(data_spec, task_split, TASKS)
    config = config.resolved(encoders.spiking, encoder["fusion"], data.table)
    kind = "spiking" if encoders.spiking else "ann"
    out = args.out or default_out_dir(
        data.table.name, args.modality, encoder["fusion"], args.pretrain_classes, args.split, kind
    )
    run = RunDir(out, MARKERS, resume=args.resume, overwrite=args.overwrite, out_flag="-out")
    device = select_device(args.gpu_id, args.device, dist.local_rank if dist.enabled else None)
    print(f"pretraining on {shown(data_spec.data_dir)} -> {shown(run.path)}", flush=True)
    for name, groups in data.groups().items():
        print(f"  {name} {data.table.group_column}: {', '.join(groups)}", flush=True)
    for note in data.notes():
        print(f"note: {note}", flush=True)
    flags = {k: v for k, v in vars(args).items() if not k.startswith("refused_") and k != "given"}
    meta = pretrain(data, encoder, config, run, device, flags=flags, compile_model=args.compile)
    if args.convert:
        print("converting the encoders to spiking networks (integrate-and-fire, threshold balancing) ...", flush=True)
        print(format_conversion(convert_pretrained(run.path, data, config, device, meta)))
        print(f"conversion: {shown(run.path / 'conversion.json')}, {shown(run.path / 'conversion.png')}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
