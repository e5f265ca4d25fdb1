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


class LayerEnergy:
    """Sums over a layer's input rows, batch by batch: their energy, what the protected subspace leaves
    of it (through the method's own projection ``B^T q(B x)``), and their correlation ``x^T x``."""

    def __init__(self, basis: torch.Tensor, quantize=None):
        self.basis, self.quantize = basis.float(), quantize
        self.total = self.outside = 0.0
        self.correlation = torch.zeros(basis.shape[1], basis.shape[1], dtype=torch.float64, device=basis.device)

    def add(self, x: torch.Tensor) -> None:
        x = x.float()
        self.total += float(x.pow(2).sum())
        if self.basis.shape[0]:
            answer = x @ self.basis.t()
            answer = self.quantize(answer) if self.quantize is not None else answer
            self.outside += float((x - answer @ self.basis).pow(2).sum())
        else:
            self.outside += float(x.pow(2).sum())
        self.correlation += x.double().t() @ x.double()

    def share_outside(self) -> float:
        return self.outside / max(self.total, 1e-30)

    def best_share_outside(self, old_rows: int) -> float:
        """The least share outside any subspace of as many directions that contains the first ``old_rows`` rows'
        span (those of earlier tasks): GPM's choice at the same number of directions."""
        directions, correlation = self.basis.shape[0], self.correlation
        if self.total == 0:
            return 0.0  # a layer whose inputs were all zero (a silent spiking layer) leaves nothing outside
        if directions == 0:
            return 1.0
        if directions >= len(correlation):
            return 0.0  # the subspace spans every input direction
        if old_rows:
            q = torch.linalg.qr(self.basis[:old_rows].double().t()).Q  # the old rows' span, orthonormal
            outside = torch.eye(len(q), dtype=q.dtype, device=q.device) - q @ q.t()
            correlation = outside @ correlation @ outside
            correlation = (correlation + correlation.t()) / 2  # symmetric to rounding: eigh may not converge else
        energies = torch.linalg.eigvalsh(correlation).flip(0).clamp(min=0)
        return float(energies[max(directions - old_rows, 0) :].sum() / max(self.total, 1e-30))


def layer_report(name: str, train: LayerEnergy, test: LayerEnergy, old_rows: int) -> dict:
    """One protected layer's entry: its directions and the shares of the task's energy outside them."""
    basis = train.basis
    return {
        "layer": name,
        "directions": int(basis.shape[0]),
        "inputs": int(basis.shape[1]),
        "effective_directions": int((basis.norm(dim=1) > 0.5).sum()) if basis.shape[0] else 0,
        "outside_train": train.share_outside(),
        "outside_svd_train": train.best_share_outside(old_rows),
        "outside_test": test.share_outside(),
        "outside_svd_test": test.best_share_outside(old_rows),
    }
