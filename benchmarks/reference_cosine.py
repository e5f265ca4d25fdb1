"""How close mmhlop's projected weight gradients are to the reference formula on real data.

    python benchmarks/reference_cosine.py [-pretrained DIR] [-epochs 3] [-batch 64]

Trains task 0 of the pretrained folder's features with HLOP (spiking lateral neurons, scale 20,
40 steps), then takes one batch of task 1 and computes the weight gradients of fc1, fc2 and the
classifier three ways: the reference's per-timestep code (``tests/reference_hlop.py``), mmhlop
as it is (``-dsr_backward reference -hlop_spiking_projection timestep``), and mmhlop's earlier
placement (``-dsr_backward exact -hlop_spiking_projection rate``). Prints the cosine of each
against the reference.
"""

import sys
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tempfile

import torch
import torch.nn.functional as F

from common.cli import FlagParser, run_cli
from common.paths import CACHE_DIR, default_data_dir
from common.rundir import RunDir
from continual.config import ContinualConfig
from continual.data import continual_data
from continual.methods import HLOP, HLOPConfig
from continual.resolve import resolve
from continual.trainer import build_model, run_continual
from dataloader.dataset import prepare_data
from pretrain.artifacts import default_out_dir
from pretrain.folder import PretrainedFolder
from tests import reference_hlop as ref


def gradients(model, x, labels, projector) -> list[torch.Tensor]:
    model.zero_grad()
    F.cross_entropy(model(x, projector).logits, labels).backward()
    return [layer.weight.grad.clone() for layer in model.projected_layers]


def reference_gradients(model, x, labels, hlop: HLOP, config: ContinualConfig) -> list[torch.Tensor]:
    weights = [layer.weight.detach().clone().requires_grad_() for layer in model.projected_layers]
    vths = [n.vth.detach().clone().requires_grad_() for n in model.neurons]
    bases = [s.frozen for s in hlop.subspaces]
    c = hlop.config
    out = ref.spiking_mlp_forward(x, *weights, *vths, config.neuron, bases, True, c.spiking_scale, c.spiking_timesteps)
    F.cross_entropy(out, labels).backward()
    return [w.grad for w in weights]


def main(argv) -> None:
    parser = FlagParser(prog="python benchmarks/reference_cosine.py", description=__doc__.splitlines()[0])
    parser.flag("-pretrained", default=None, help="pretrained folder (default: the dataset's default)")
    parser.flag("-epochs", type=int, default=3, help="epochs of task 0 before the comparison")
    parser.flag("-batch", type=int, default=64, help="rows of task 1 in the compared batch")
    args = parser.parse_args(argv)
    data_dir = default_data_dir()
    folder = PretrainedFolder(args.pretrained or default_out_dir(data_dir.name))
    prepared = prepare_data(folder.data_spec(data_dir, CACHE_DIR), configured_tasks=folder.tasks)
    device = torch.device("cpu")
    data = continual_data(folder.features(prepared, device), prepared, device)
    data.task_classes, data.task_names = data.task_classes[:1], data.task_names[:1]  # train task 0 only
    hlop = HLOP(HLOPConfig(spiking=True, spiking_scale=20.0, spiking_timesteps=40))
    config = resolve("frozen", ContinualConfig(epochs=args.epochs), hlop)
    with tempfile.TemporaryDirectory() as work:
        run = RunDir(Path(work) / "run", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
        run_continual(data, hlop, config, run, device, {})
        model = build_model(data, config, device)
        model.load_state_dict(torch.load(Path(work) / "run" / "checkpoints" / "last.pt", weights_only=True)["model"])
    rows = prepared.rows("train", prepared.task_labels()[1])[: args.batch]
    x, labels = data.features[rows], data.labels[rows]
    expected = reference_gradients(model, x, labels, hlop, config)
    ours = gradients(model, x, labels, hlop)
    earlier = build_model(data, replace(config, dsr_backward="exact"), device)
    earlier.load_state_dict(model.state_dict())
    rate_hlop = HLOP(replace(hlop.config, spiking_projection="rate"))
    rate_hlop.subspaces = hlop.subspaces
    before = gradients(earlier, x, labels, rate_hlop)
    print(f"cosine with the reference's projected gradients ({len(rows)} rows of task 1, after {args.epochs} epochs):")
    for name, a, b, e in zip(("fc1", "fc2", "classifier"), ours, before, expected, strict=True):
        now = F.cosine_similarity(a.double().flatten(), e.double().flatten(), dim=0).item()
        then = F.cosine_similarity(b.double().flatten(), e.double().flatten(), dim=0).item()
        print(f"  {name:<10} mmhlop {now:.4f}   earlier placement (exact DSR, rate quantised) {then:.4f}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
