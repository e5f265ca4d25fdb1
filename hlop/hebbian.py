"""Lateral Hebbian neurons that learn the principal subspace of a layer's inputs (HLOP).

For inputs ``x`` (B, N) and lateral weights ``W`` (M, N), the lateral neurons answer ``y = W x``
(quantised to spike counts when they spike) and learn by Oja's subspace rule

    dW = y (x - W^T y)^T / B,     clamped to [-10, 10], with momentum 0.9,

a few iterations per batch. The rows converge to an orthonormal basis of the inputs' principal
subspace. Each task adds new rows (``add_subspace``); when the task ends they are merged into the
frozen old subspace (``merge``), which the following tasks' gradients are projected away from.
Frozen rows still answer in ``y``, so the new rows learn the residual subspace of the new task.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hlop.projection import orthogonal_to_rows


def lateral_inverse(lateral: torch.Tensor, start: torch.Tensor | None = None, tolerance: float = 1e-8, steps: int = 60):
    """The inverse of the lateral answers' correlation ``<y y^T>`` (symmetric, positive) by Newton-Schulz
    steps ``L <- L (2 I - A L)`` on ``A`` scaled to a unit diagonal: matrix products only.

    Returns the inverse, the scaled inverse (which ``start`` may pass back as the next call's start: the
    answers' correlation changes little from one pass to the next) and the number of steps taken."""
    scale = lateral.diagonal().clamp(min=1e-300).rsqrt()
    scaled = lateral * scale[:, None] * scale[None, :]  # unit diagonal: near the identity once the rows decorrelate
    eye = torch.eye(len(lateral), dtype=lateral.dtype, device=lateral.device)
    inverse = eye / scaled.abs().sum(1).max()  # Gershgorin: every eigenvalue of A L starts in (0, 1]
    if start is not None and (eye - scaled @ start).pow(2).sum() < 0.25:  # Frobenius, above the spectral norm
        inverse = start
    taken = 0
    for taken in range(1, steps + 1):  # noqa: B007 - the count is returned
        error = eye - scaled @ inverse
        if error.abs().max() < tolerance:
            break
        inverse = inverse + inverse @ error
    return inverse * scale[:, None] * scale[None, :], inverse, taken


def orthonormal_rows(rows: torch.Tensor, tolerance: float = 1e-9, steps: int = 100) -> torch.Tensor:
    """Orthonormal rows spanning what ``rows`` (M, N) span: ``(R R^T)^-1/2 R`` (the symmetric
    orthonormalisation, the orthonormal rows closest to ``R``), by coupled Newton-Schulz steps on the
    rows' Gram matrix, in float64: matrix products only, no decomposition.

    HLOP projects ``x - B^T (B x)``, which removes the span of ``B`` only when its rows are orthonormal.
    Rows learned task after task are not (their Gram matrix's eigenvalues reach 0.6..1.6 in the leak-free
    runs): along such directions the projection leaves or overshoots a third to a half of an update."""
    if rows.shape[0] == 0:
        return rows
    r = rows.double()
    gram = r @ r.t()
    scale = float(gram.abs().sum(1).max())  # Gershgorin: the scaled Gram's eigenvalues lie in (0, 1]
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    root, inverse_root = gram / scale, eye.clone()
    for _ in range(steps):
        step = 1.5 * eye - 0.5 * inverse_root @ root
        root, inverse_root = root @ step, step @ inverse_root
        if (eye - inverse_root @ root).abs().max() < tolerance:
            break
    return ((inverse_root / scale**0.5) @ r).to(rows.dtype)


def _own_energy(rows: torch.Tensor, correlation: torch.Tensor, energy: float) -> torch.Tensor:
    """The energy of each row's answer that the other rows' answers do not explain (``1 / (A^-1)_ii`` of the
    answers' correlation ``A``): near zero for a row that found no direction of its own."""
    eye = torch.eye(len(rows), dtype=rows.dtype, device=rows.device)
    lateral = rows @ correlation @ rows.t() + 1e-12 * energy * eye
    return 1 / lateral_inverse(lateral)[0].diagonal().clamp(min=1e-300)


def subspace_passes(rows: torch.Tensor, correlation: torch.Tensor, passes: int, rate: float = 0.5,
                    energy: float | None = None) -> tuple[torch.Tensor, float]:  # fmt: skip
    """``passes`` of ``HebbianSubspace.consolidate``'s rule on ``rows`` (M, N) for inputs of correlation
    ``correlation`` (N, N), in float64; directions holding less than 1e-10 of ``energy`` (default: the
    correlation's trace) count as empty. Returns the rows and the multiply-accumulates spent."""
    ridge = 1e-10 * max(float(energy if energy is not None else correlation.diagonal().sum()), 1e-30)
    eye = torch.eye(rows.shape[0], dtype=rows.dtype, device=rows.device)
    start, macs = None, 0.0
    m, n = rows.shape
    for _ in range(passes):
        hebbian = rows @ correlation  # <y r^T>
        lateral = hebbian @ rows.t()  # <y y^T>
        lateral = (
            lateral + (ridge + 1e-9 * lateral.diagonal().max()) * eye
        )  # answers 1e-9 of the strongest count as none
        inverse, start, steps = lateral_inverse(lateral, start)
        rows = (1 - rate) * rows + rate * inverse @ hebbian
        macs += m * n * n + 2 * m * m * n + 2 * steps * m**3
    return rows, macs


def _left_outside(left: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``(I - P) left (I - P)``: the correlation ``left`` (N, N, symmetric) of what remains once the span of
    ``rows`` (M, N) is taken out, ``P = R^T (R R^T)^-1 R`` its projector. Expanded through ``R left`` so that
    every product costs M N^2 rather than N^3: growing a layer of 800 inputs one neuron at a time stays cheap."""
    gram_inverse = lateral_inverse(rows @ rows.t())[0]  # rows are orthonormal only to ~1e-3
    coefficients = gram_inverse @ rows  # P = R^T coefficients
    left_rows = rows @ left  # R left (M, N)
    held_left = coefficients.t() @ left_rows  # P left; left P is its transpose (both symmetric)
    inner = coefficients.t() @ (left_rows @ coefficients.t())  # with ``@ rows``: P left P
    return left - held_left - held_left.t() + inner @ rows


class HebbianSubspace(nn.Module):
    def __init__(
        self,
        in_features: int,
        lr: float,
        momentum: float = 0.9,
        spiking: bool = False,
        spiking_scale: float = 20.0,
        spiking_timesteps: float = 1000.0,
        exact_projection: bool = True,
    ):
        super().__init__()
        self.in_features = in_features
        self.lr = lr
        self.momentum = momentum
        self.spiking = spiking
        self.spiking_scale = spiking_scale
        self.spiking_timesteps = spiking_timesteps
        self.register_buffer("weight", torch.zeros(0, in_features))
        self.register_buffer("velocity", torch.zeros(0, in_features))
        self.register_buffer("n_frozen", torch.zeros((), dtype=torch.long))
        self.frozen_rows = 0  # n_frozen as a Python int: reading the buffer would wait for the GPU
        self.exact_projection = exact_projection
        self._basis: torch.Tensor | None = None  # the frozen rows made orthonormal, once per task

    @property
    def frozen(self) -> torch.Tensor:
        """The rows of finished tasks: the protected subspace."""
        return self.weight[: self.frozen_rows]

    @property
    def basis(self) -> torch.Tensor:
        """The rows the projection uses: the frozen rows made orthonormal (``orthonormal_rows``), so that
        ``x - B^T B x`` removes exactly their span; with ``exact_projection`` off, the frozen rows as they are
        (the reference's projection)."""
        if not self.exact_projection:
            return self.frozen
        if self._basis is None or self._basis.shape[0] != self.frozen_rows or self._basis.device != self.weight.device:
            self._basis = orthonormal_rows(self.frozen)
        return self._basis

    def add_subspace(self, n: int, generator: torch.Generator | None = None, orthogonal_to_old: bool = False) -> None:
        """Append ``n`` learning rows, initialised orthonormal among themselves.

        ``orthogonal_to_old``: also orthogonal to the rows already there, so that they start inside
        the residual subspace they are meant to learn. The reference starts them at random angles
        to the old rows; the overlap then decays only slowly and leaves the merged rows far from
        orthonormal, which makes the projection inexact (README, deviations).
        """
        if n <= 0:
            return
        new = torch.empty(n, self.in_features)
        nn.init.orthogonal_(new, generator=generator)
        old = self.weight.shape[0]
        if orthogonal_to_old and old:
            stacked = torch.cat([self.weight.detach().cpu().float().t(), new.t()], dim=1)  # (N, old + n)
            new = torch.linalg.qr(stacked).Q[:, old:].t().contiguous()
        self.weight = torch.cat([self.weight, new.to(self.weight)])
        self.velocity = torch.cat([self.velocity, torch.zeros_like(new).to(self.velocity)])

    def merge(self) -> None:
        """Freeze every row: the subspace learned so far becomes the old-task subspace."""
        self.frozen_rows = self.weight.shape[0]
        self.n_frozen.fill_(self.frozen_rows)
        self._basis = None

    def quantize(self, y: torch.Tensor) -> torch.Tensor:
        """Spike-count quantisation of the lateral output when the lateral neurons spike."""
        if not self.spiking:
            return y
        s, steps = self.spiking_scale, self.spiking_timesteps
        return torch.round(torch.clamp(y, -s, s) / s * steps) / steps * s

    def orthogonal(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` without its component in the frozen (old-task) subspace."""
        return orthogonal_to_rows(x, self.basis.to(x.dtype), self.quantize)

    @torch.no_grad()
    def hebbian_update(
        self,
        x: torch.Tensor,
        iterations: int = 5,
        all_reduce=None,
        total: int | None = None,
        residual: torch.Tensor | None = None,
    ) -> None:
        """``iterations`` steps of Oja's subspace rule on the inputs ``x`` (B, N); frozen rows stay.

        The frozen rows' share of the reconstruction ``W^T y`` does not change between iterations,
        so it is removed from ``x`` once (``residual``, which the forward pass may already have
        computed for the projection); each iteration then only involves the learning rows: the
        same update as the full rule with the frozen rows' updates zeroed.

        For data-parallel training, ``total`` is the global number of rows and ``all_reduce`` sums
        each step's update over processes, so every process makes the full batch's update.
        """
        start = self.frozen_rows
        if self.weight.shape[0] == start:
            return
        x = x.float()
        scale = 1.0 / (total or x.shape[0])
        if residual is None:
            residual = self.orthogonal(x) if start else x
        learning, velocity = self.weight[start:], self.velocity[start:]  # views: updated in place
        for _ in range(iterations):
            y = self.quantize(x @ learning.t())
            error = torch.addmm(residual, y, learning, alpha=-1)  # x - W^T y, frozen part already removed
            delta = torch.addmm(learning, y.t(), error, beta=0, alpha=scale)  # y (x - W^T y)^T / B
            if all_reduce is not None:
                all_reduce(delta)
            velocity.lerp_(delta.clamp_(-10, 10), 1 - self.momentum)  # m v + (1 - m) delta
            learning.add_(velocity, alpha=self.lr)

    @torch.no_grad()
    def consolidate(self, correlation: torch.Tensor, passes: int = 10, rate: float = 0.5) -> float:
        """Hebbian passes over a task's inputs at its end: the learning rows converge to the principal
        subspace of the inputs' part outside the frozen rows, the low-energy directions as fast as the others.

        ``correlation`` is ``<r r^T>`` (N, N) of those parts ``r`` over the task's rows, the sum of the
        Hebbian products the lateral synapses see. Each pass, with the rows' answers ``y = W r``::

            W <- (1 - rate) W + rate <y y^T>^-1 <y r^T>

        ``<y r^T> = W <r r^T>`` is Oja's Hebbian term; ``<y y^T>^-1`` decorrelates the lateral neurons'
        answers (anti-Hebbian lateral connections among them, computed by Newton-Schulz steps:
        products only). Oja's rule moves each direction at a speed proportional to its energy; here
        every pass is a step of subspace iteration, whose rows become orthonormal and span the top
        subspace whatever the energies (``rate`` 0.5: the rows' norms converge quadratically).
        Rows with no energy left to learn shrink towards zero instead of protecting a random direction.
        Returns the multiply-accumulates spent (for the energy estimate).
        """
        first = self.frozen_rows
        if self.weight.shape[0] == first or passes <= 0:
            return 0.0
        rows, macs = subspace_passes(self.weight[first:].double(), correlation.double(), passes, rate)
        self.weight[first:] = rows.to(self.weight.dtype)
        self.velocity[first:] = 0
        return macs

    @torch.no_grad()
    def grow(self, correlation: torch.Tensor, residual: torch.Tensor, threshold: float, budget: int,
             passes: int = 10) -> float:  # fmt: skip
        """Add lateral neurons at a task's end, a few at a time, until the subspace holds ``threshold`` of the
        task's input energy (as GPM's criterion chooses its directions), or ``budget`` neurons are added.

        ``correlation`` is the task's inputs' ``<x x^T>``, ``residual`` that of their part outside the frozen
        rows. Each group of new neurons learns, by ``consolidate``'s passes, the top subspace of what the
        neurons before it leave; nested this way they span the best subspace of their number. The energy
        they hold is their answers' (a local statistic); a group that finds directions with no energy
        ends the growth (one whose neurons found fewer directions than they are is learned again, a neuron at
        a time). Returns the multiply-accumulates spent.
        """
        total = float(correlation.double().diagonal().sum())
        left, macs = residual.double(), 0.0
        threshold = min(threshold, 1.0 - 1e-12)  # 1: as many neurons as the budget, while energy is left
        grown = torch.zeros(0, self.in_features, dtype=torch.float64, device=self.weight.device)
        group = max(1, math.ceil(budget / 10))
        room = min(budget, self.in_features - self.weight.shape[0])
        while len(grown) < room and float(left.diagonal().sum()) > (1 - threshold) * total:
            start = torch.empty(min(group, room - len(grown)), self.in_features)
            nn.init.orthogonal_(start)
            rows, spent = subspace_passes(start.to(left), left, passes, energy=total)
            macs += spent
            if len(rows) > 1 and not bool((_own_energy(rows, left, total) > 1e-6 * total).all()):
                group = 1  # fewer directions with energy left than new neurons: add them one at a time
                continue
            if len(rows) == 1 and float(_own_energy(rows, left, total)[0]) <= 1e-6 * total:
                break  # one neuron found no energy: nothing left to learn
            after = _left_outside(left, rows)
            if len(rows) > 1 and float(after.diagonal().sum()) < (1 - threshold) * total:
                group = 1  # this group would hold more than the threshold asks: its last neurons one at a time
                continue
            grown, left = torch.cat([grown, rows]), after
        self.weight = torch.cat([self.weight, grown.to(self.weight.dtype)])
        self.velocity = torch.cat([self.velocity, torch.zeros_like(grown).to(self.velocity.dtype)])
        return macs

    def drop_learning_rows(self) -> None:
        """Forget the rows of the task in progress (``grow`` learns them again at its end)."""
        self.weight, self.velocity = self.weight[: self.frozen_rows], self.velocity[: self.frozen_rows]

    def residual(self, x: torch.Tensor, quantized: bool = True) -> torch.Tensor:
        """``x`` without what the frozen rows answer for: the part the learning rows are to learn.

        ``quantized`` off: without their span, whether or not the lateral neurons spike. Spike-count answers
        leave a rounding error in every frozen direction, noise rather than a direction of the inputs; learned
        at a task's end it would be taken for energy still to protect (``grow`` then fills the layer)."""
        x = x.float()
        if not self.frozen_rows:
            return x
        return self.orthogonal(x) if quantized else orthogonal_to_rows(x, self.basis.to(x.dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the number of rows grows task by task: take the saved shapes before loading
        for name in ("weight", "velocity"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]).to(getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "n_frozen" in state_dict:
            self.frozen_rows = int(state_dict[prefix + "n_frozen"])
        self._basis = None
