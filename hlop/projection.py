"""Gradient projection for linear layers, shared by HLOP (Hebbian subspaces) and GPM (SVD bases).

A layer ``y = x W^T`` learning a new task is updated with ``grad_W = g^T (x - P x)``, where ``P``
projects onto the subspace spanned by the inputs of earlier tasks. For an old input ``x_old`` in
that subspace, ``dW x_old = 0``: the layer's outputs on old tasks do not move. The forward pass is
unchanged; the input gradient (for the layers below) is unchanged too.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Projector(Protocol):
    """Anything that can remove the old-task component of a layer's input."""

    def orthogonal(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """``x`` minus its projection onto layer ``layer``'s protected subspace."""
        ...


class SubspaceProjector:
    """Projection away from one protected subspace per layer, given as rows of ``basis(layer)``.

    HLOP's bases are the frozen lateral Hebbian weights (with spike-count quantisation when the
    lateral neurons spike); GPM's are orthonormal SVD bases. Both inherit ``orthogonal`` from
    here, so the projection applied to gradients is the same code.
    """

    def basis(self, layer: int) -> torch.Tensor:
        raise NotImplementedError

    def quantizer(self, layer: int):
        return None

    def orthogonal(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """In fp32 even under autocast: bf16 rounding would leak old-task components into updates."""
        with torch.autocast(x.device.type, enabled=False):
            return orthogonal_to_rows(x.float(), self.basis(layer).float(), self.quantizer(layer))


class _ProjectedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, x_orthogonal, weight):
        ctx.save_for_backward(x_orthogonal, weight)
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad):
        x_orthogonal, weight = ctx.saved_tensors
        grad_x = grad @ weight.to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_weight = grad.t() @ x_orthogonal.to(grad.dtype) if ctx.needs_input_grad[2] else None
        return grad_x, None, grad_weight


def projected_linear(x: torch.Tensor, weight: torch.Tensor, x_orthogonal: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` whose weight gradient uses ``x_orthogonal`` in place of ``x``."""
    return _ProjectedLinear.apply(x, x_orthogonal.detach(), weight)


def orthogonal_to_rows(x: torch.Tensor, basis: torch.Tensor, quantize=None) -> torch.Tensor:
    """``x - basis^T q(basis x)``: remove the component of ``x`` in the span of ``basis``'s rows.

    Exact for orthonormal rows and ``q`` the identity (GPM); HLOP's Hebbian rows are nearly
    orthonormal and ``q`` quantises their output to spike counts when the lateral neurons spike.
    """
    if basis.shape[0] == 0:
        return x
    coefficients = x @ basis.t()
    if quantize is not None:
        coefficients = quantize(coefficients)
    return x - coefficients @ basis
