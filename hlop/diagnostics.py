"""How complete a protected subspace is: the share of a task's input energy it leaves outside.

After each task, for every protected layer (the spiking MLP's three, and the encoders' layers when
they learn), on that task's training rows and on its test rows:

- ``directions``: the rows of the subspace (HLOP's lateral neurons, GPM's basis vectors);
- ``outside``: ``sum |x - P x|^2 / sum |x|^2``, with ``P`` the projection the method applies to
  gradients (HLOP: ``W^T q(W x)`` of its lateral weights; GPM: its orthonormal basis);
- ``outside_svd``: the same share for the best subspace with as many directions, given the
  directions the method had before this task: the old ones (made orthonormal) plus the top
  eigen-directions of what they leave, i.e. GPM's choice at the same number of directions.
  Only this reference value uses an eigendecomposition; the methods' subspaces do not come from it.

The ratio of the two says whether a Hebbian subspace has converged to what an SVD would give.
"""

from __future__ import annotations

import torch


def energy_outside(x: torch.Tensor, basis: torch.Tensor, quantize=None) -> float:
    """``sum |x - B^T q(B x)|^2 / sum |x|^2`` over the rows of ``x``."""
    total = x.pow(2).sum().clamp(min=1e-30)
    if basis.shape[0] == 0:
        return 1.0
    answer = x @ basis.t()
    if quantize is not None:
        answer = quantize(answer)
    return float((x - answer @ basis).pow(2).sum() / total)


def best_outside(x: torch.Tensor, old: torch.Tensor, directions: int) -> float:
    """The least share of ``x``'s energy outside a subspace of ``directions`` rows that contains ``old``'s span."""
    x = x.double()
    total = x.pow(2).sum().clamp(min=1e-30)
    if directions <= 0:
        return 1.0
    if old.shape[0]:
        q = torch.linalg.qr(old.double().t()).Q  # (N, k): an orthonormal basis of the old rows' span
        x = x - (x @ q) @ q.t()
    added = max(directions - old.shape[0], 0)
    energies = torch.linalg.eigvalsh(x.t() @ x).flip(0).clamp(min=0)
    return float((energies[added:].sum()) / total)


def layer_report(name: str, train: torch.Tensor, test: torch.Tensor, basis, old_rows: int, quantize=None) -> dict:
    """One protected layer's entry: its directions and the shares of the task's energy outside them."""
    old = basis[:old_rows]
    effective = int((basis.norm(dim=1) > 0.5).sum()) if basis.shape[0] else 0
    return {
        "layer": name,
        "directions": int(basis.shape[0]),
        "effective_directions": effective,
        "outside_train": energy_outside(train, basis, quantize),
        "outside_svd_train": best_outside(train, old, basis.shape[0]),
        "outside_test": energy_outside(test, basis, quantize),
        "outside_svd_test": best_outside(test, old, basis.shape[0]),
    }
