"""Gradient projection memory (Saha et al., ICLR 2021): HLOP's non-Hebbian twin.

After each task, each projected layer's inputs on (up to ``samples``) training rows form a
representation matrix; the part not yet spanned by the layer's basis is decomposed by SVD, and
the fewest new directions are added that bring the captured share of the inputs' energy to
``threshold``. Later tasks' gradients are projected orthogonally to these orthonormal bases by
the same code as HLOP's (``SubspaceProjector``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from continual.methods.base import Method, TaskContext
from hlop.projection import SubspaceProjector
from models.spiking_mlp import SpikingMLP


@dataclass(frozen=True)
class GPMConfig:
    threshold: tuple[float, float, float] = (0.97, 0.97, 0.97)
    samples: int = 300

    def to_dict(self) -> dict:
        return asdict(self)


def extend_basis(basis: torch.Tensor, inputs: torch.Tensor, threshold: float) -> torch.Tensor:
    """Add to ``basis`` (k, N; orthonormal rows) the directions of ``inputs`` (n, N) GPM's criterion asks for."""
    inputs = inputs.double()
    total = inputs.pow(2).sum()
    residual = inputs - (inputs @ basis.double().t()) @ basis.double() if len(basis) else inputs
    captured = total - residual.pow(2).sum()
    if total == 0 or captured / total >= threshold:
        return basis
    _, singular, directions = torch.linalg.svd(residual, full_matrices=False)
    energy = captured + torch.cumsum(singular.pow(2), dim=0)
    keep = int((energy / total < threshold).sum().item()) + 1
    return torch.cat([basis, directions[:keep].to(basis.dtype)])


class GPM(Method, SubspaceProjector):
    name = "gpm"

    def __init__(self, config: GPMConfig = GPMConfig()):
        super().__init__()
        self.config = config

    def prepare(self, model: SpikingMLP) -> None:
        device = model.fc1.weight.device
        for i, layer in enumerate(model.projected_layers):
            self.register_buffer(f"basis{i}", torch.zeros(0, layer.in_features, device=device))

    def basis(self, layer: int) -> torch.Tensor:
        return getattr(self, f"basis{layer}")

    def projector(self, task: int):
        return self if task > 0 else None

    @torch.no_grad()
    def after_task(self, context: TaskContext) -> None:
        rows = context.train_rows[: self.config.samples]
        inputs = context.model(context.data.features[rows]).layer_inputs
        for i, (x, threshold) in enumerate(zip(inputs, self.config.threshold, strict=True)):
            setattr(self, f"basis{i}", extend_basis(self.basis(i), x.float(), threshold))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in list(self._buffers):  # bases grow task by task: take the saved shapes
            if prefix + name in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name]).to(self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
