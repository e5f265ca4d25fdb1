"""HLOP (Xiao et al., ICLR 2024): Hebbian subspaces of past inputs, and projection away from them.

Each projected layer (fc1, fc2, classifier) gets a ``HebbianSubspace``. While task ``k`` is
trained, its new lateral rows learn the principal subspace of the layer's inputs by Oja's rule
(after ``start_epochs`` epochs); for ``k > 0`` the layer's weight gradient uses inputs with the
frozen old-task subspace removed. After the task the rows are merged into the frozen subspace.
Subspace sizes: ``out_num`` for task 0, then ``out_num_inc`` per task, shrinking every third
task by 2/7 of the increment (the reference's 70 -> 50 -> 30 -> 10), never beyond a layer's
input size.

With spiking lateral neurons (``spiking``) the projection of fc2's and the classifier's inputs
quantises the lateral answer to each timestep's spikes, as the reference does
(``spiking_projection="timestep"``); ``"rate"`` quantises the answer to the weighted firing rate
instead. The Hebbian update always learns from the weighted rate (``with_wfr``, the reference's
default) or from every timestep's spikes.

The default sizes differ from the reference's (80, 200, 100) for fc1: frozen fused features are
nearly low-rank, and a subspace as large as the features' usable rank leaves fc1 nothing to learn
through (README, "Faithfulness to the reference, and the settings that differ", has the measurements).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from common.cli import comma_numbers, fraction, non_negative_int, positive_float, positive_int, whole_number
from common.distributed import current as distributed
from common.errors import UserError
from continual.methods.base import Context, Method
from hlop.hebbian import HebbianSubspace
from hlop.layers import UpdateProjection, input_dim
from hlop.projection import SubspaceProjector
from models.spiking_mlp import SpikingOutput


@dataclass(frozen=True)
class HLOPConfig:
    lr: tuple[float, float, float] = (0.001, 0.01, 0.01)  # the official code's: input layer, hidden layers
    iterations: int = 20  # the reference: 5, over ~7x more batches per task (PMNIST); README, deviations
    momentum: float = 0.9
    out_num: tuple[int, int, int] = (20, 200, 100)
    out_num_inc: tuple[int, int, int] = (10, 70, 70)
    shrink_every: int = 3
    shrink_fraction: float = 2 / 7
    spiking: bool = False
    spiking_scale: float = 20.0
    spiking_timesteps: int = 1000
    spiking_projection: str = "timestep"  # or "rate"
    new_rows: str = "random"  # new lateral rows at random angles to the old ones (the reference), or "orthogonal"
    with_wfr: bool = True
    start_epochs: int = 0
    # -encoder_mode continual: each encoder layer's subspace, as fractions of its input size (a conv's C*k*k)
    encoder_sizes: tuple[float, float] = (0.2, 0.05)  # task 0, each later task
    encoder_lr: float = 0.5  # on inputs rescaled to unit mean squared norm per batch
    encoder_iterations: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


class HLOP(Method, SubspaceProjector):
    name = "hlop"
    projects = True

    def __init__(self, config: HLOPConfig = HLOPConfig()):
        super().__init__()
        self.config = config
        self.needs_spikes = not config.with_wfr
        self.subspaces = nn.ModuleList()
        self.encoder_subspaces = nn.ModuleList()
        self.update_projection = UpdateProjection()

    @classmethod
    def add_flags(cls, parser) -> None:
        c = HLOPConfig()
        flag = parser.flag
        flag("-hlop_lr", default=",".join(f"{v:g}" for v in c.lr),
             help="Hebbian learning rate: one value, or one per layer (fc1,fc2,classifier)")  # fmt: skip
        flag("-hlop_iterations", type=positive_int, default=c.iterations, help="Hebbian iterations per batch")
        flag("-hlop_out_num", default=",".join(map(str, c.out_num)), help="lateral neurons per layer added for task 0")
        flag("-hlop_out_num_inc", default=",".join(map(str, c.out_num_inc)),
             help="lateral neurons per layer added for each later task (shrinking by 2/7 of it every third task: "
             "the reference's 70 -> 50 -> 30 -> 10)")  # fmt: skip
        flag(
            "-hlop_spiking",
            action="store_true",
            help="lateral neurons spike: their output is quantised to spike counts",
        )
        flag("-hlop_spiking_scale", type=positive_float, default=c.spiking_scale,
             help="range [-s, s] of the spiking lateral output")  # fmt: skip
        flag("-hlop_spiking_timesteps", type=whole_number, default=c.spiking_timesteps,
             help="timesteps of the spiking lateral neurons")  # fmt: skip
        flag("-hlop_spiking_projection", default=c.spiking_projection, choices=("timestep", "rate"),
             help="with -hlop_spiking, quantise the lateral answer to each timestep's input spikes (the reference) "
             "or to their weighted firing rate")  # fmt: skip
        flag("-hlop_new_rows", default=c.new_rows, choices=("orthogonal", "random"),
             help="each task's new lateral neurons start orthogonal to the old ones, or at random angles (the reference)")  # fmt: skip
        flag("-hlop_start_epochs", type=non_negative_int, default=c.start_epochs,
             help="Hebbian learning starts after this many epochs of each task")  # fmt: skip
        flag("-hlop_encoder_sizes", default=",".join(f"{v:g}" for v in c.encoder_sizes),
             help="-encoder_mode continual: lateral neurons of each encoder layer as fractions of its input size "
             "(a convolution's C*k*k), for task 0 and for each later task")  # fmt: skip
        flag("-hlop_encoder_lr", type=positive_float, default=c.encoder_lr,
             help="-encoder_mode continual: Hebbian rate of the encoder layers (inputs rescaled to unit mean squared norm)")  # fmt: skip
        flag("-hlop_encoder_iterations", type=positive_int, default=c.encoder_iterations,
             help="-encoder_mode continual: Hebbian iterations per batch of the encoder layers")  # fmt: skip
        flag("-not_hlop_with_wfr", action="store_true",
             help="Hebbian updates from each timestep's spikes instead of the weighted firing rate")  # fmt: skip

    @classmethod
    def from_args(cls, args) -> HLOP:
        return cls(cls.config_from_args(args))

    @staticmethod
    def config_from_args(args) -> HLOPConfig:
        return HLOPConfig(
            lr=comma_numbers(args.hlop_lr, "-hlop_lr"),
            iterations=args.hlop_iterations,
            out_num=comma_numbers(args.hlop_out_num, "-hlop_out_num", non_negative_int),
            out_num_inc=comma_numbers(args.hlop_out_num_inc, "-hlop_out_num_inc", non_negative_int),
            spiking=args.hlop_spiking,
            spiking_scale=args.hlop_spiking_scale,
            spiking_timesteps=args.hlop_spiking_timesteps,
            spiking_projection=args.hlop_spiking_projection,
            new_rows=args.hlop_new_rows,
            with_wfr=not args.not_hlop_with_wfr,
            start_epochs=args.hlop_start_epochs,
            encoder_sizes=comma_numbers(args.hlop_encoder_sizes, "-hlop_encoder_sizes", fraction, count=2),
            encoder_lr=args.hlop_encoder_lr,
            encoder_iterations=args.hlop_encoder_iterations,
        )

    def before_run(self, context: Context) -> None:
        c, model = self.config, context.model
        for name, layer, n in zip(("fc1", "fc2", "classifier"), model.projected_layers, c.out_num, strict=True):
            if n > layer.in_features:  # later increments are cut to the room left (see ``before_task``)
                raise UserError(
                    f"-hlop_out_num {','.join(map(str, c.out_num))}: {n} lateral neurons for {name}, whose input has "
                    f"only {layer.in_features} values; use at most that many"
                )
        device = model.fc1.weight.device
        self.subspaces = nn.ModuleList(
            HebbianSubspace(layer.in_features, lr, c.momentum, c.spiking, c.spiking_scale, c.spiking_timesteps)
            for layer, lr in zip(model.projected_layers, c.lr, strict=True)
        ).to(device)
        self.needs_encoder_inputs = bool(model.encoder_layers)
        self.encoder_subspaces = nn.ModuleList(
            HebbianSubspace(input_dim(layer), c.encoder_lr, c.momentum) for layer in model.encoder_layers
        ).to(device)

    def sizes(self, task: int) -> list[int]:
        """New lateral rows per layer for ``task``."""
        if task == 0:
            return list(self.config.out_num)
        factor = max(0.0, 1 - self.config.shrink_fraction * (task // self.config.shrink_every))
        return [round(n * factor) for n in self.config.out_num_inc]

    def encoder_size(self, task: int, in_features: int) -> int:
        """New lateral rows of an encoder layer with ``in_features`` inputs for ``task``."""
        share = self.config.encoder_sizes[0 if task == 0 else 1]
        return max(1, round(share * in_features))

    def before_task(self, context: Context) -> None:
        task, orthogonal = context.task, self.config.new_rows == "orthogonal"
        for subspace, n in zip(self.subspaces, self.sizes(task), strict=True):
            room = subspace.in_features - subspace.weight.shape[0]
            subspace.add_subspace(min(n, room), orthogonal_to_old=orthogonal)
        for subspace in self.encoder_subspaces:
            room = subspace.in_features - subspace.weight.shape[0]
            subspace.add_subspace(
                min(self.encoder_size(task, subspace.in_features), room), orthogonal_to_old=orthogonal
            )

    def after_backward(self, context: Context) -> None:
        if context.task > 0:
            self.protect_encoder_gradients(context.model)

    def after_optimizer_step(self, context: Context) -> None:
        """The whole update projected (learning encoders), then the lateral neurons' Hebbian learning."""
        if context.task > 0:
            self.project_update(context.model)
        if context.epoch > self.config.start_epochs:
            self.hebbian_updates(context.output, context.batch_size)

    def projector(self, context: Context):
        return self if context.task > 0 else None

    def basis(self, layer: int) -> torch.Tensor:
        return self.subspaces[layer].frozen

    def encoder_basis(self, layer: int) -> torch.Tensor:
        return self.encoder_subspaces[layer].frozen

    def quantizer(self, layer: int):
        return self.subspaces[layer].quantize if self.config.spiking else None

    def quantizes_timesteps(self, layer: int) -> bool:
        return self.config.spiking and self.config.spiking_projection == "timestep"

    def hebbian_updates(self, output: SpikingOutput, batch_size: int) -> None:
        """Oja's subspace rule on every protected layer's inputs of the batch (``output``)."""
        dist = distributed()
        all_reduce = dist.all_reduce if dist.enabled else None  # every process makes the full batch's update
        inputs, residuals = output.layer_inputs, output.layer_orthogonal or [None] * 3
        rows_per_sample = [1, 1, 1]
        if not self.config.with_wfr:  # every timestep's spikes are a sample (the constant input is one)
            inputs = [inputs[0]] + [spikes.flatten(0, 1) for spikes in output.layer_spikes]
            residuals = [residuals[0], None, None]
            rows_per_sample = [1] + [spikes.shape[0] for spikes in output.layer_spikes]
        for subspace, x, residual, rows in zip(self.subspaces, inputs, residuals, rows_per_sample, strict=True):
            subspace.hebbian_update(x, self.config.iterations, all_reduce, batch_size * rows, residual)
        for subspace, x in zip(self.encoder_subspaces, output.encoder_inputs or [], strict=False):
            x = x / x.pow(2).sum(1).mean().clamp(min=1e-12).sqrt()  # unit mean squared norm: one rate fits every layer
            subspace.hebbian_update(x, self.config.encoder_iterations, all_reduce)

    def protection_macs(self, context: Context) -> float:
        """Per training sample, for the spiking MLP's three layers: each Hebbian iteration's three products
        with the learning rows (answer, reconstruction, update), and the projection's two with the frozen rows
        (each timestep's, T of them, for fc2 and the classifier with spiking lateral neurons)."""
        timesteps = context.model.neurons[0].config.timesteps
        total = 0.0
        for index, subspace in enumerate(self.subspaces):
            learning = subspace.weight.shape[0] - subspace.frozen_rows
            total += self.config.iterations * 3 * learning * subspace.in_features
            if context.task > 0:
                per_step = timesteps if index > 0 and self.quantizes_timesteps(index) else 1
                total += 2 * subspace.frozen_rows * subspace.in_features * per_step
        return total

    def divergence(self) -> str | None:
        """Oja's rule keeps lateral rows near unit norm; far above it, the Hebbian learning has diverged."""
        names = ["fc1", "fc2", "classifier"] + [f"encoder layer {i}" for i in range(len(self.encoder_subspaces))]
        for layer, subspace in zip(names, [*self.subspaces, *self.encoder_subspaces], strict=True):
            if len(subspace.weight):
                largest = subspace.weight.norm(dim=1).max().item()
                if not largest <= 10:
                    return f"the lateral weights of {layer} have a row of norm {largest:.3g}, where Oja's rule keeps them near 1"
        return None

    def after_task(self, context: Context) -> None:
        for subspace in [*self.subspaces, *self.encoder_subspaces]:
            subspace.merge()
