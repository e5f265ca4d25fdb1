"""Speed against the peers: one training step of the same spiking MLP, timed side by side in one process.

    python benchmarks/peers.py [-official DIR] [-rounds 11] [-steps 5] [-threads 1] [-docs docs/scale.md]

The network is the default spiking MLP of the continual script (batch 64, 784 -> 800 -> 800 -> 10, T = 20,
the reference's LIF/DSR constants: Vth 0.3, tau 1, delta_t 0.05, alpha 0.3); a step is forward,
cross-entropy, backward and an SGD step on one shared batch. Contenders:

- mmhlop: its baseline and HLOP with its defaults (Oja's rule on every batch, the projection), each through
  the loop's own ``train_step`` on task 1 (after task 0, so that HLOP projects);
- the official HLOP-SNN code (``-official DIR``, a clone of pkuxmq/HLOP-SNN; read from there, never copied):
  its ``spiking_MLP`` as its scripts train it, baseline and HLOP as shipped (5 Hebbian iterations per batch).
  On a CPU it needs one patch, applied at run time and listed in the output: ``modules.neuron_dsr.sum_tensor``
  sums a trained threshold's gradient over processes with ``torch.distributed`` whenever the GPU count is not
  1 (0 on a CPU); with one process that sum is the value itself;
- SpikingJelly's multi-step ``LIFNode`` MLP and snnTorch's ``Leaky`` MLP, trained by BPTT with their default
  surrogates (optional: ``pip install ".[bench]"``; a missing one is skipped with a line).

Rounds interleave the contenders (each round times ``-steps`` steps of every one, in a rotated order); the
table gives the median and the spread (min-max) of samples/s in CPU time and in wall time, each step's
arithmetic (``flops_per_sample``), and the share of the CPU's rate for one (T x batch) x hidden x
hidden product (the largest layer over all timesteps as one GEMM) that the step reaches.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F
from torch import nn

from common import atomic
from common.cli import FlagParser, positive_int, run_cli
from common.device import keep_freed_memory
from common.errors import UserError
from common.paths import REPO_ROOT
from continual.config import ContinualConfig
from continual.data import ContinualData
from continual.methods import HLOP, Baseline, Context, HLOPConfig
from continual.resolve import resolve
from continual.stream import experiences
from continual.trainer import build_model, start_task, train_step
from models.neurons import NeuronConfig
from pretrain.encoder_settings import SPIKING_IMAGE_GRID

CPU_PATCH = "modules.neuron_dsr.sum_tensor = identity (one process: the sum over processes is the value)"


@dataclass(frozen=True)
class Shape:
    batch: int = 64
    inputs: int = 784
    hidden: int = 800
    classes: int = 10
    timesteps: int = 20


def flops_per_sample(shape: Shape, per_timestep: bool) -> float:
    """The step's GEMM arithmetic per sample: forward products, and backward input and weight gradients (but the
    first layer's input gradient). mmhlop computes fc1 once (its input is constant over time) and every backward
    product once, on weighted rates; the per-timestep peers do all of them at every timestep."""
    i, h, c, t = shape.inputs, shape.hidden, shape.classes, shape.timesteps
    forward_once, forward_each_step = 2 * i * h + 2 * h * c, 2 * h * h
    backward = 2 * i * h + 2 * (2 * h * h) + 2 * (2 * h * c)
    if per_timestep:
        return t * (forward_once + forward_each_step + backward)
    return forward_once + t * forward_each_step + backward


@dataclass
class Contender:
    name: str
    step: Callable[[], None]
    flops: float  # per sample
    baseline: str | None = None  # the contender whose cost this one adds to (HLOP over its baseline)


def shared_batch(shape: Shape, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch every contender trains on: inputs in [0, 1] (as the scaled features), labels."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape.batch, shape.inputs, generator=generator)
    return x, torch.randint(shape.classes, (shape.batch,), generator=generator)


def _two_task_data(x: torch.Tensor, y: torch.Tensor, shape: Shape) -> ContinualData:
    """Task 0: a copy of the batch (to learn a subspace from); task 1: the batch itself."""
    features, labels = torch.cat([x, x]), torch.cat([y % 2, 2 + y % (shape.classes - 2)])
    n = len(x)
    rows = {split: [torch.arange(n), torch.arange(n, 2 * n)] for split in ("train", "val", "test")}
    tasks = [[0, 1], list(range(2, shape.classes))]
    names = [f"C{c}" for c in range(shape.classes)]
    return ContinualData(features, labels, tasks, [[names[c] for c in t] for t in tasks], names, rows,
                         feature_dim=shape.inputs)  # fmt: skip


def mmhlop_model(shape: Shape, neuron: NeuronConfig | None = None) -> tuple:
    x, y = shared_batch(shape)
    data = _two_task_data(x, y, shape)
    config = ContinualConfig(batch_size=shape.batch, hidden=shape.hidden,
                             neuron=neuron or NeuronConfig(timesteps=shape.timesteps)).for_mode("frozen")  # fmt: skip
    torch.manual_seed(0)
    return build_model(data, config, torch.device("cpu")), data, config


def subspace_sizes(sizes: tuple[int, ...], shape: Shape) -> tuple[int, ...]:
    """Lateral neurons per layer (inputs of fc1, fc2, the classifier): the defaults, fewer on a small test shape."""
    return tuple(
        min(size, dim // 4) for size, dim in zip(sizes, (shape.inputs, shape.hidden, shape.hidden), strict=True)
    )


def mmhlop_contenders(shape: Shape) -> list[Contender]:
    """mmhlop's baseline and HLOP (its defaults), each a ``train_step`` of task 1 as the loop runs it."""
    contenders, c = [], HLOPConfig()
    hlop = HLOP(replace(c, out_num=subspace_sizes(c.out_num, shape), out_num_inc=subspace_sizes(c.out_num_inc, shape)))
    for name, method in (("mmhlop baseline", Baseline()), ("mmhlop HLOP", hlop)):
        model, data, config = mmhlop_model(shape)
        config = resolve("frozen", config, method)
        method.before_run(Context(model, data, config))
        stream = experiences(data, method.stream)
        start_task(model, method, stream[0], data, config)
        method.after_task(Context(model, data, config, 0, rows=data.rows["train"][0]))
        training = start_task(model, method, stream[1], data, config)
        context = Context(model, data, config, 1, 1, rows=data.rows["train"][1])
        context.projector = method.projector(context)
        training.network.train()
        contenders.append(Contender(name, lambda t=training, m=method, c=context: train_step(t, m, c),
                                    flops_per_sample(shape, per_timestep=False),
                                    "mmhlop baseline" if name.endswith("HLOP") else None))  # fmt: skip
    return contenders


def load_official(folder: Path):
    """The official code's spiking_MLP class, its modules imported from ``folder`` (its ``models`` package would
    shadow mmhlop's, so the model file is loaded by path), with the CPU patch applied."""
    if not (folder / "models" / "spiking_mlp_hlop.py").is_file():
        raise UserError(f"-official {folder}: no models/spiking_mlp_hlop.py (give a clone of pkuxmq/HLOP-SNN)")
    if str(folder) not in sys.path:
        sys.path.append(str(folder))  # after mmhlop's folders: only its ``modules`` package is new
    import modules.neuron_dsr as neuron_dsr

    neuron_dsr.sum_tensor = lambda tensor: tensor  # CPU_PATCH
    spec = importlib.util.spec_from_file_location("hlop_snn_spiking_mlp", folder / "models" / "spiking_mlp_hlop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.spiking_MLP


def official_model(folder: Path, shape: Shape, neuron: NeuronConfig, hlop: bool = False) -> nn.Module:
    setting = {"timesteps": shape.timesteps, "train_Vth": True, "Vth": neuron.vth, "tau": neuron.tau,
               "delta_t": neuron.delta_t, "alpha": neuron.alpha, "Vth_bound": neuron.vth_bound, "rate_stat": False}  # fmt: skip
    if shape.inputs != 784:
        raise UserError("-official: the official spiking_MLP reads 784 inputs; keep -inputs 784")
    model = load_official(folder)(setting, num_classes=shape.classes, n_hidden=shape.hidden)
    if hlop:  # as its scripts leave it after task 0: a merged subspace and new neurons for task 1
        model.add_hlop_subspace(list(subspace_sizes((80, 200, 100), shape)))  # its scripts' sizes
        model.merge_hlop_subspace()
        model.add_hlop_subspace(list(subspace_sizes((70, 70, 70), shape)))
    return model


def official_contenders(folder: Path, shape: Shape) -> list[Contender]:
    x, y = shared_batch(shape)
    frames = x.view(shape.batch, 1, 1, 28, 28).expand(-1, shape.timesteps, -1, -1, -1)  # its input layout
    contenders = []
    for name, hlop in (("official HLOP-SNN baseline", False), ("official HLOP-SNN HLOP", True)):
        torch.manual_seed(0)
        model = official_model(folder, shape, NeuronConfig(timesteps=shape.timesteps), hlop)
        params = [p for n, p in model.named_parameters() if "hlop" not in n]
        optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        flags = (
            {"projection": True, "proj_id_list": [0], "update_hlop": True, "fix_subspace_id_list": [0]} if hlop else {}
        )

        def step(model=model, optimizer=optimizer, flags=flags):
            optimizer.zero_grad()
            F.cross_entropy(model(frames, **flags), y).backward()
            optimizer.step()

        contenders.append(Contender(name, step, flops_per_sample(shape, per_timestep=True),
                                    "official HLOP-SNN baseline" if hlop else None))  # fmt: skip
    return contenders


def spikingjelly_model(shape: Shape, neuron: NeuronConfig) -> nn.Module:
    """The same network in SpikingJelly: multi-step LIF nodes whose charge equals mmhlop's
    (``v + (x - v) / tau`` with ``1 / tau = 1 - exp(-delta_t / tau_mmhlop)``), soft reset, spikes of 1."""
    from spikingjelly.activation_based import functional, layer
    from spikingjelly.activation_based import neuron as sj

    beta = math.exp(-neuron.delta_t / neuron.tau)

    def lif():
        return sj.LIFNode(tau=1 / (1 - beta), v_threshold=neuron.alpha * neuron.vth, v_reset=None, step_mode="m")

    net = nn.Sequential(layer.Linear(shape.inputs, shape.hidden, bias=False), lif(),
                        layer.Linear(shape.hidden, shape.hidden, bias=False), lif(),
                        layer.Linear(shape.hidden, shape.classes, bias=False))  # fmt: skip
    functional.set_step_mode(net, "m")
    return net


def snntorch_model(shape: Shape, neuron: NeuronConfig) -> nn.Module:
    """The same network in snnTorch: ``Leaky`` neurons (``mem = beta mem + input``, fed ``(1 - beta)`` times the
    current), subtractive reset at the step that fires."""
    import snntorch

    beta = math.exp(-neuron.delta_t / neuron.tau)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(shape.inputs, shape.hidden, bias=False)
            self.fc2 = nn.Linear(shape.hidden, shape.hidden, bias=False)
            self.classifier = nn.Linear(shape.hidden, shape.classes, bias=False)
            self.lif1, self.lif2 = (snntorch.Leaky(beta=beta, threshold=neuron.alpha * neuron.vth, reset_delay=False)
                                    for _ in range(2))  # fmt: skip

        def forward(self, x, keep_spikes: bool = False):
            mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
            current1, logits, kept = self.fc1(x), 0, []
            for _ in range(shape.timesteps):
                spikes1, mem1 = self.lif1((1 - beta) * current1, mem1)
                spikes2, mem2 = self.lif2((1 - beta) * self.fc2(spikes1), mem2)
                logits = logits + self.classifier(spikes2) / shape.timesteps
                kept.append((spikes1, spikes2))
            return (logits, kept) if keep_spikes else logits

    return Net()


def peer_contenders(shape: Shape) -> tuple[list[Contender], list[str]]:
    """SpikingJelly and snnTorch where installed; the lines saying which are not."""
    x, y = shared_batch(shape)
    neuron, contenders, skipped = NeuronConfig(timesteps=shape.timesteps), [], []
    for name, build in (
        ("SpikingJelly LIF MLP, BPTT", spikingjelly_model),
        ("snnTorch Leaky MLP, BPTT", snntorch_model),
    ):
        try:
            torch.manual_seed(0)
            model = build(shape, neuron)
        except ImportError as missing:
            skipped.append(f"{name}: skipped ({missing.name} is not installed; pip install '.[bench]')")
            continue
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sequence = name.startswith("SpikingJelly")

        def step(model=model, optimizer=optimizer, sequence=sequence):
            optimizer.zero_grad()
            if sequence:
                from spikingjelly.activation_based import functional

                functional.reset_net(model)
                logits = model(x.unsqueeze(0).expand(shape.timesteps, -1, -1)).mean(0)
            else:
                logits = model(x)
            F.cross_entropy(logits, y).backward()
            optimizer.step()

        contenders.append(Contender(name, step, flops_per_sample(shape, per_timestep=True)))
    return contenders, skipped


def forward_spikes(kind: str, shape: Shape, neuron: NeuronConfig, official: Path | None = None) -> list[torch.Tensor]:
    """The two hidden layers' spike trains (T, batch, hidden) as booleans (fired or not) of one contender's network
    on the shared batch, its weights copied from mmhlop's (``kind``: mmhlop, official, spikingjelly or snntorch).
    The peers' neurons emit spikes of 1, so their second layer reads fc2's weights times Vth / delta_t; SpikingJelly
    and snnTorch subtract their firing threshold on a spike, which is mmhlop's rule with ``alpha`` 1 only."""
    x, _ = shared_batch(shape)
    model, _, _ = mmhlop_model(shape, neuron)
    with torch.no_grad():
        ours = [s.detach() > 0 for s in model(x, keep_spikes=True).layer_spikes]
    if kind == "mmhlop":
        return ours
    scale, t = neuron.vth / neuron.delta_t, shape.timesteps
    weights = (model.fc1.weight.detach(), model.fc2.weight.detach(), model.classifier.weight.detach())
    kept: list[torch.Tensor] = []

    def keep(module, inputs, output):
        kept.append(output.detach().reshape(t, shape.batch, -1))

    with torch.no_grad():
        if kind == "official":
            net = official_model(official, shape, neuron)
            for layer, weight in zip((net.fc1, net.fc2, net.classifiers[0]), weights, strict=True):
                layer.weight.copy_(weight)
            for sn in (net.sn1, net.sn2):
                sn.register_forward_hook(keep)
            net(x.view(shape.batch, 1, 1, 28, 28).expand(-1, t, -1, -1, -1))
            return [spikes > 0 for spikes in kept]
        net = (spikingjelly_model if kind == "spikingjelly" else snntorch_model)(shape, neuron)
        layers = (net[0], net[2], net[4]) if kind == "spikingjelly" else (net.fc1, net.fc2, net.classifier)
        for layer, weight, factor in zip(layers, weights, (1, scale, scale), strict=True):
            layer.weight.copy_(weight * factor)
        if kind == "spikingjelly":
            for node in (net[1], net[3]):
                node.register_forward_hook(keep)
            net(x.unsqueeze(0).expand(t, -1, -1))
        else:
            _, steps = net(x, keep_spikes=True)
            kept = [torch.stack([step[layer] for step in steps]) for layer in (0, 1)]
    return [spikes > 0 for spikes in kept]


ENCODER_DIM = 784  # the pretraining script's -feature_dim


def encoder_contenders(shape: Shape, image_size: int = 32, timesteps: int = 8) -> tuple[list[Contender], list[str]]:
    """One training step of the spiking image encoder (``-encoder_type spiking``: three conv LIF blocks with batch
    norm, average pools, an LIF projection of the last block pooled to the default grid; trained with DSR, and with
    BPTT) and of the same network in
    SpikingJelly (multi-step conv LIF nodes, BPTT), each with a linear head, on one batch of uint8 images."""
    from models.spiking_encoders import SpikingImageEncoder

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (shape.batch, image_size, image_size, 3), generator=generator, dtype=torch.uint8)
    labels = torch.randint(shape.classes, (shape.batch,), generator=generator)
    neuron, contenders, skipped = NeuronConfig(timesteps=timesteps), [], []
    for training in ("dsr", "bptt"):
        torch.manual_seed(0)
        encoder = SpikingImageEncoder(ENCODER_DIM, neuron, training, SPIKING_IMAGE_GRID)
        contenders.append(_encoder_step(f"mmhlop spiking image encoder, {training.upper()}", encoder, images, labels,
                                        shape, lambda e=encoder: e(images)))  # fmt: skip
    try:
        torch.manual_seed(0)
        net = spikingjelly_encoder(neuron)
    except ImportError as missing:
        return contenders, [f"SpikingJelly conv LIF encoder: skipped ({missing.name} is not installed)"]
    frames = (
        ((images.permute(0, 3, 1, 2).float() - 0.5 * 255) / (0.25 * 255)).unsqueeze(0).expand(timesteps, -1, -1, -1, -1)
    )

    def forward(net=net):
        from spikingjelly.activation_based import functional

        functional.reset_net(net)
        return net(frames).mean(0)

    contenders.append(_encoder_step("SpikingJelly conv LIF encoder, BPTT", net, images, labels, shape, forward))
    return contenders, skipped


def spikingjelly_encoder(neuron: NeuronConfig) -> nn.Module:
    """mmhlop's spiking image encoder's layers in SpikingJelly, multi-step (its charge as ``spikingjelly_model``)."""
    from spikingjelly.activation_based import functional, layer
    from spikingjelly.activation_based import neuron as sj

    beta = math.exp(-neuron.delta_t / neuron.tau)

    def lif():
        return sj.LIFNode(tau=1 / (1 - beta), v_threshold=neuron.alpha * neuron.vth, v_reset=None, step_mode="m")

    def block(c_in, c_out):
        return [layer.Conv2d(c_in, c_out, 3, padding=1, bias=False), layer.BatchNorm2d(c_out), lif()]

    grid = SPIKING_IMAGE_GRID  # the pretraining default's embedding: the last block on a grid x grid grid
    net = nn.Sequential(*block(3, 32), layer.AvgPool2d(2), *block(32, 64), layer.AvgPool2d(2), *block(64, 128),
                        layer.AdaptiveAvgPool2d(grid), layer.Flatten(), layer.Linear(128 * grid * grid, ENCODER_DIM),
                        lif())  # fmt: skip
    functional.set_step_mode(net, "m")
    return net


def _encoder_step(name: str, encoder: nn.Module, images, labels, shape: Shape, embed: Callable) -> Contender:
    head = nn.Linear(ENCODER_DIM, shape.classes)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-3)
    encoder.train()

    def step():
        optimizer.zero_grad()
        F.cross_entropy(head(embed()), labels).backward()
        optimizer.step()

    return Contender(name, step, flops=0.0)


def gemm_flops_per_second(shape: Shape, repeats: int = 20) -> float:
    """The CPU's (or GPU's) rate for one (T x batch) x hidden x hidden product, the largest layer over all timesteps."""
    a, b = torch.rand(shape.timesteps * shape.batch, shape.hidden), torch.rand(shape.hidden, shape.hidden)
    a @ b  # warm up
    seconds = []
    for _ in range(repeats):
        started = time.process_time()
        a @ b
        seconds.append(time.process_time() - started)
    return 2 * a.shape[0] * shape.hidden * shape.hidden / max(statistics.median(seconds), 1e-9)


def measure(contenders: list[Contender], rounds: int, steps: int, batch: int) -> dict[str, dict[str, list[float]]]:
    """Samples per second of each contender, per round, in CPU time and wall time; rounds interleave them."""
    for contender in contenders:  # warm up: first calls allocate and pick kernels
        contender.step()
    times = {c.name: {"cpu": [], "wall": []} for c in contenders}
    for r in range(rounds):
        for contender in contenders[r % len(contenders) :] + contenders[: r % len(contenders)]:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(steps):
                contender.step()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            times[contender.name]["cpu"].append(steps * batch / max(cpu, 1e-9))
            times[contender.name]["wall"].append(steps * batch / max(wall, 1e-9))
    return times


def table(contenders: list[Contender], times: dict, gemm: float) -> list[str]:
    """Markdown: samples/s (median and min-max, CPU and wall time), mmhlop's lead, MFLOP per sample, GEMM share."""
    median = {name: statistics.median(t["cpu"]) for name, t in times.items()}
    ours = median.get("mmhlop baseline")
    lines = ["| contender | samples/s, CPU time (min-max) | samples/s, wall time (min-max) | mmhlop baseline is "
             "faster by | over its baseline | MFLOP / sample | share of the GEMM rate |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for c in contenders:
        cpu, wall = times[c.name]["cpu"], times[c.name]["wall"]
        lead = "-" if c.name.startswith("mmhlop") or not ours else f"{ours / median[c.name]:.2f}x"
        over = f"{median[c.baseline] / median[c.name]:.2f}x" if c.baseline else "-"
        share = f"{c.flops * median[c.name] / gemm:.2f}" if not c.baseline else "-"
        lines.append(f"| {c.name} | {median[c.name]:,.0f} ({min(cpu):,.0f}-{max(cpu):,.0f}) | "
                     f"{statistics.median(wall):,.0f} ({min(wall):,.0f}-{max(wall):,.0f}) | {lead} | {over} | "
                     f"{c.flops / 1e6:.1f} | {share} |")  # fmt: skip
    return lines


def encoder_table(contenders: list[Contender], times: dict) -> list[str]:
    """Markdown: samples/s of the encoders' steps (CPU time, median and min-max), and how much faster mmhlop's is."""
    median = {name: statistics.median(t["cpu"]) for name, t in times.items()}
    peer = next((m for name, m in median.items() if not name.startswith("mmhlop")), None)
    lines = ["| encoder | samples/s, CPU time (min-max) | over SpikingJelly's |", "| --- | --- | --- |"]
    for c in contenders:
        cpu = times[c.name]["cpu"]
        ratio = f"{median[c.name] / peer:.2f}x" if peer and c.name.startswith("mmhlop") else "-"
        lines.append(f"| {c.name} | {median[c.name]:,.0f} ({min(cpu):,.0f}-{max(cpu):,.0f}) | {ratio} |")
    return lines


def write_into(path: Path, lines: list[str]) -> None:
    start, end = "<!-- peers table: benchmarks/peers.py -->", "<!-- end of peers table -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise UserError(f"-docs {path}: no {start} ... {end} block to write the table into")
    before, rest = text.split(start, 1)
    atomic.write_text(path, before + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1])


def main(argv) -> None:
    parser = FlagParser(prog="python benchmarks/peers.py", description=__doc__.splitlines()[0])
    parser.flag("-official", default=None, help="a clone of pkuxmq/HLOP-SNN to time its code too (default: none)")
    parser.flag("-rounds", type=positive_int, default=11, help="interleaved rounds")
    parser.flag("-steps", type=positive_int, default=5, help="training steps of each contender per round")
    parser.flag("-threads", type=positive_int, default=1, help="torch threads (the figures are per thread count)")
    parser.flag("-batch", type=positive_int, default=Shape.batch, help="batch size")
    parser.flag("-hidden", type=positive_int, default=Shape.hidden, help="hidden neurons per layer")
    parser.flag("-timesteps", type=positive_int, default=Shape.timesteps, help="timesteps T")
    parser.flag(
        "-encoders",
        action="store_true",
        help="also time the spiking image encoder's training step (DSR, "
        "BPTT) against SpikingJelly's conv LIF network, on 32 x 32 images, T = 8",
    )
    parser.flag("-docs", default=None, help="also write the table into this file's peers block (docs/scale.md)")
    parser.flag("-json", default=str(REPO_ROOT / "logs" / "peers.json"), help="where the figures are written")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the scripts run (common.device.select_device); every contender shares the process
    shape = Shape(batch=args.batch, hidden=args.hidden, timesteps=args.timesteps)
    contenders = mmhlop_contenders(shape)
    if args.official:
        contenders += official_contenders(Path(args.official), shape)
        print(f"official HLOP-SNN from {args.official}, patched at run time: {CPU_PATCH}")
    peers, skipped = peer_contenders(shape)
    contenders += peers
    print("\n".join(skipped + ([] if args.official else ["official HLOP-SNN: skipped (no -official DIR)"])))
    times = measure(contenders, args.rounds, args.steps, shape.batch)
    gemm = gemm_flops_per_second(shape)
    lines = table(contenders, times, gemm)
    print(f"{shape}, {args.threads} thread(s), {args.rounds} rounds of {args.steps} steps; GEMM rate "
          f"{gemm / 1e9:.1f} GFLOP/s")  # fmt: skip
    print("\n".join(lines))
    atomic.write_json(Path(args.json), {"shape": shape.__dict__, "threads": args.threads, "gemm_flops": gemm,
                                        "times": times, "skipped": skipped})  # fmt: skip
    if args.encoders:
        encoders, missing = encoder_contenders(shape)
        print("\n".join(missing))
        encoder_times = measure(encoders, args.rounds, args.steps, shape.batch)
        lines += ["", "Spiking image encoder, one training step (32 x 32 images, T = 8, batch as above):", "",
                  *encoder_table(encoders, encoder_times)]  # fmt: skip
        print("\n".join(lines[-len(encoders) - 2 :]))
    if args.docs:
        write_into(Path(args.docs), lines)


if __name__ == "__main__":
    sys.exit(run_cli(main))
