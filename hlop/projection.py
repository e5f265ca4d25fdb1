"""Gradient projection for linear layers, shared by HLOP (Hebbian subspaces) and GPM (SVD bases).

A layer ``y = x W^T`` learning a new task is updated with ``grad_W = g^T (x - P x)``, where ``P``
projects onto the subspace spanned by the inputs of earlier tasks. For an old input ``x_old`` in
that subspace, ``dW x_old = 0``: the layer's outputs on old tasks do not move. The forward pass is
unchanged; the input gradient (for the layers below) is unchanged too.

A layer driven by spike trains sees one input per timestep. Where the projection is linear
(GPM, HLOP with non-spiking lateral neurons) projecting each timestep and averaging equals
projecting the average. Spiking lateral neurons quantise their answer, which is not linear: the
reference HLOP-SNN code projects (and quantises) each timestep's input, and so does
``orthogonal_in_time``.
"""

from __future__ import annotations

from typing import Protocol

import torch

from hlop.layers import UpdateProjection, project_gradient


class Projector(Protocol):
    """Anything that can remove the old-task component of a layer's input."""

    def orthogonal(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, N) minus its projection onto layer ``layer``'s protected subspace."""
        ...

    def orthogonal_in_time(self, layer: int, spikes: torch.Tensor, time_weights: torch.Tensor) -> torch.Tensor:
        """``sum_t a_t (s_t - P s_t)`` for spike trains ``spikes`` (T, B, N) and time weights ``a`` (T,)."""
        ...

    def quantizes_timesteps(self, layer: int) -> bool:
        """Whether ``orthogonal_in_time`` projects each timestep on its own (not the time average)."""
        ...


class SubspaceProjector:
    """Projection away from one protected subspace per layer, given as rows of ``basis(layer)``.

    HLOP's bases are the frozen lateral Hebbian weights (with spike-count quantisation when the
    lateral neurons spike); GPM's are orthonormal SVD bases. Both inherit the projections from
    here, so the projection applied to gradients is the same code. Projections run in fp32 even
    under autocast: bf16 rounding would leak old-task components into updates.
    """

    update_projection: UpdateProjection

    def basis(self, layer: int) -> torch.Tensor:
        raise NotImplementedError

    def encoder_basis(self, layer: int) -> torch.Tensor:
        """The protected subspace of encoder layer ``layer`` (``-encoder_mode continual``)."""
        raise NotImplementedError

    def protect_encoder_gradients(self, model) -> None:
        """After the backward pass: the encoder layers' weight gradients lose their old-task subspace
        (``hlop.layers``), and every protected layer's weights are noted for ``project_update``."""
        if not model.encoder_layers:
            return
        for i, layer in enumerate(model.encoder_layers):
            project_gradient(layer, self.encoder_basis(i))
        self.update_projection.snapshot(model.protected_layers)

    def project_update(self, model) -> None:
        """After the optimizer step, with learning encoders: every protected layer's whole update is
        projected, since Adam rescales a projected gradient back into the protected subspace."""
        if not model.encoder_layers:
            return
        bases = [self.basis(i) for i in range(len(model.projected_layers))]
        bases += [self.encoder_basis(i) for i in range(len(model.encoder_layers))]
        self.update_projection.apply(model.protected_layers, bases)

    def quantizer(self, layer: int):
        """The lateral neurons' answer quantiser of ``layer``, or None where they do not spike."""
        return None

    def quantizes_timesteps(self, layer: int) -> bool:
        return self.quantizer(layer) is not None

    def orthogonal(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return orthogonal_to_rows(x.float(), self.basis(layer).float(), self.quantizer(layer))

    def orthogonal_in_time(self, layer: int, spikes: torch.Tensor, time_weights: torch.Tensor) -> torch.Tensor:
        with torch.autocast(spikes.device.type, enabled=False):
            spikes, time_weights = spikes.float(), time_weights.float()
            if not self.quantizes_timesteps(layer):  # linear: project the time average once
                return self.orthogonal(layer, torch.einsum("t,tbn->bn", time_weights, spikes))
            return orthogonal_to_rows_in_time(spikes, time_weights, self.basis(layer).float(), self.quantizer(layer))


class _DecoupledLinear(torch.autograd.Function):
    """``x @ weight.T`` forward; backward, the weight gradient reads ``x_for_weight`` and the input
    gradient ``weight_back`` (the projection's and the weight-transport-free methods' hooks)."""

    @staticmethod
    def forward(ctx, x, x_for_weight, weight, weight_back):
        ctx.save_for_backward(x_for_weight, weight_back)
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad):
        x_for_weight, weight_back = ctx.saved_tensors
        grad_x = grad @ weight_back.to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_weight = grad.t() @ x_for_weight.to(grad.dtype) if ctx.needs_input_grad[2] else None
        return grad_x, None, grad_weight, None


def decoupled_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    x_for_weight: torch.Tensor | None = None,
    weight_back: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x @ weight.T`` whose weight gradient uses ``x_for_weight`` (e.g. the input's part orthogonal
    to old tasks) and whose input gradient uses ``weight_back`` (e.g. sign(W) for sign symmetry)."""
    if x_for_weight is None and weight_back is None:
        return x @ weight.t()
    x_for_weight = x if x_for_weight is None else x_for_weight
    weight_back = weight if weight_back is None else weight_back
    return _DecoupledLinear.apply(x, x_for_weight.detach(), weight, weight_back.detach())


def projected_linear(x: torch.Tensor, weight: torch.Tensor, x_orthogonal: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` whose weight gradient uses ``x_orthogonal`` in place of ``x``."""
    return decoupled_linear(x, weight, x_orthogonal)


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


def orthogonal_to_rows_in_time(
    spikes: torch.Tensor, time_weights: torch.Tensor, basis: torch.Tensor, quantize
) -> torch.Tensor:
    """``sum_t a_t (s_t - basis^T q(basis s_t))`` without materialising T projected inputs."""
    rate = torch.einsum("t,tbn->bn", time_weights, spikes)
    if basis.shape[0] == 0:
        return rate
    coefficients = quantize(spikes @ basis.t())  # (T, B, M): each timestep's lateral answer
    return rate - torch.einsum("t,tbm->bm", time_weights, coefficients) @ basis
