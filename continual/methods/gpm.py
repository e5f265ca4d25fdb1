"""Gradient projection memory (Saha et al., ICLR 2021): HLOP's non-Hebbian twin.

After each task, each projected layer's inputs on (up to ``samples``) training rows form a
representation matrix X; the part not yet spanned by the layer's basis is decomposed, and the
fewest new directions are added that bring the captured share of the inputs' energy to
``threshold``. The decomposition uses the Gram matrix X^T X (its eigenvalues are X's squared
singular values), which processes sum with one all-reduce when they each hold a share of the rows. Later tasks' gradients are projected orthogonally to these orthonormal bases by
the same code as HLOP's (``SubspaceProjector``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from common import spec
from common.distributed import current as distributed
from common.spec import POSITIVE_INT, SHARE, setting
from continual.methods.base import Context, Method
from hlop.layers import UpdateProjection, input_dim
from hlop.projection import SubspaceProjector


@dataclass(frozen=True)
class GPMConfig:
    threshold: tuple[float, float, float] = setting((0.97, 0.97, 0.97), "-gpm_threshold", kind=SHARE, count=3,
        help="share of each layer's input energy its bases keep (one value or one per layer)")  # fmt: skip
    samples: int = setting(300, "-gpm_samples", kind=POSITIVE_INT,
                           help="training rows per task for the representation matrices")  # fmt: skip
    encoder_threshold: float = setting(0.97, "-gpm_encoder_threshold", kind=SHARE,
        help="-encoder_mode continual: share of each encoder layer's input energy its basis keeps")  # fmt: skip

    def __post_init__(self):
        spec.check(self)

    def to_dict(self) -> dict:
        return asdict(self)


def extend_basis(basis: torch.Tensor, gram: torch.Tensor, threshold: float) -> torch.Tensor:
    """Add to ``basis`` (k, N; orthonormal rows) the directions GPM's criterion asks for.

    ``gram`` is ``X^T X`` (N, N) of the task's inputs X.
    """
    gram = gram.double()
    total = torch.trace(gram)
    outside = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device) - basis.double().t() @ basis.double()
    residual = outside @ gram @ outside
    captured = total - torch.trace(residual)
    if total <= 0 or captured / total >= threshold:
        return basis
    energies, directions = torch.linalg.eigh(residual)
    energies, directions = energies.flip(0).clamp(min=0), directions.flip(1)
    reached = (captured + torch.cumsum(energies, dim=0)) / total
    keep = int((reached < threshold).sum().item()) + 1
    return torch.cat([basis, directions[:, :keep].t().to(basis.dtype)])


class GPM(Method, SubspaceProjector):
    name = "gpm"
    config_class = GPMConfig
    projects = True

    def __init__(self, config: GPMConfig = GPMConfig()):
        super().__init__()
        self.config = config
        self.update_projection = UpdateProjection()
        self.old_rows: list[int] = []  # each basis's rows before the task that just ended
        self.task_work = 0.0  # multiply-accumulates per training sample of the task that just ended

    def before_run(self, context: Context) -> None:
        model = context.model
        device = model.fc1.weight.device
        for i, layer in enumerate(model.projected_layers):
            self.register_buffer(f"basis{i}", torch.zeros(0, layer.in_features, device=device))
        for i, layer in enumerate(model.encoder_layers):
            self.register_buffer(f"encoder_basis{i}", torch.zeros(0, input_dim(layer), device=device))

    def basis(self, layer: int) -> torch.Tensor:
        return self.get_buffer(f"basis{layer}")

    def encoder_basis(self, layer: int) -> torch.Tensor:
        return self.get_buffer(f"encoder_basis{layer}")

    def projector(self, context: Context):
        return self if context.task > 0 else None

    def after_backward(self, context: Context) -> None:
        if context.task > 0:
            self.protect_encoder_gradients(context.model)

    def after_optimizer_step(self, context: Context) -> None:
        if context.task > 0:
            self.project_update(context.model)

    @torch.no_grad()
    def after_task(self, context: Context) -> None:
        """The task's bases from its training rows' layer inputs (GPM's threshold rule), after counting the
        projections the task's training spent."""
        dist, model = distributed(), context.model
        rows = dist.shard(context.rows[: self.config.samples])
        model.eval()
        model.record_encoder_inputs(True)
        output = model(context.data.inputs(rows))
        model.record_encoder_inputs(False)
        inputs = [*output.layer_inputs, *(output.encoder_inputs or [])]
        thresholds = [*self.config.threshold, *[self.config.encoder_threshold] * len(model.encoder_layers)]
        names = [f"basis{i}" for i in range(len(output.layer_inputs))]
        names += [f"encoder_basis{i}" for i in range(len(model.encoder_layers))]
        self.old_rows = [self.get_buffer(name).shape[0] for name in names]
        self.task_work = self._training_work(context)
        gram_macs = 0.0
        for name, x, threshold in zip(names, inputs, thresholds, strict=True):
            gram = dist.all_reduce(x.double().t() @ x.double())
            gram_macs += len(x) * x.shape[1] ** 2
            setattr(self, name, extend_basis(self.get_buffer(name), gram, threshold))
        self.task_work += gram_macs / (len(context.rows) * context.config.epochs)  # its eigendecompositions not counted

    def _training_work(self, context: Context) -> float:
        """Per training sample while the task was learned (from task 1 on): the projection's two products with
        each spiking-MLP layer's basis, and for learning encoders the projections of each batch's gradients
        and of its whole update."""
        if context.task == 0:
            return 0.0
        model = context.model
        total = float(
            sum(2 * self.basis(i).shape[0] * self.basis(i).shape[1] for i in range(len(model.projected_layers)))
        )
        for i, layer in enumerate(model.encoder_layers):
            basis = self.encoder_basis(i)
            total += 2 * 2 * basis.shape[0] * basis.shape[1] * layer.weight.shape[0] / context.config.batch_size
        return total

    def protection_macs(self, context: Context) -> float:
        """Multiply-accumulates per training sample of the task that just ended (counted by ``after_task``)."""
        return self.task_work

    def subspaces_of(self, context: Context) -> list[dict]:
        bases = [self.basis(i) for i in range(len(context.model.projected_layers))]
        bases += [self.encoder_basis(i) for i in range(len(context.model.encoder_layers))]
        return [
            {"layer": name, "basis": basis, "old_rows": old, "quantize": None}
            for name, basis, old in zip(context.model.protected_names, bases, self.old_rows, strict=True)
        ]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in list(self._buffers):  # bases grow task by task: take the saved shapes
            if prefix + name in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name]).to(self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
