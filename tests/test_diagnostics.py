"""The subspace diagnostic (hlop.diagnostics) against explicit formulas on small inputs."""

import torch

from continual.evaluation import full_layer_warnings
from hlop.diagnostics import LayerEnergy, layer_report


def _energy(basis, x):
    energy = LayerEnergy(basis)
    for rows in x.split(7):
        energy.add(rows)
    return energy


def test_the_share_outside_is_what_the_basis_leaves_and_the_svd_share_is_the_eigen_tail():
    torch.manual_seed(0)
    x = torch.randn(40, 3) @ torch.randn(3, 6) + 0.01 * torch.randn(40, 6)
    basis = torch.linalg.qr(torch.randn(6, 2)).Q.t()  # two orthonormal rows, not the principal ones
    energy = _energy(basis, x)
    expected = (x - x @ basis.t() @ basis).pow(2).sum() / x.pow(2).sum()
    assert abs(energy.share_outside() - float(expected)) < 1e-5
    tail = torch.linalg.svdvals(x.double())[2:].pow(2).sum() / x.double().pow(2).sum()
    assert abs(energy.best_share_outside(old_rows=0) - float(tail)) < 1e-6
    assert energy.best_share_outside(old_rows=0) <= energy.share_outside()
    # with one old row kept, the best two-direction subspace holds it: never better than the free choice
    assert energy.best_share_outside(old_rows=1) >= energy.best_share_outside(old_rows=0) - 1e-9


def test_no_directions_leave_everything_and_silent_inputs_leave_nothing():
    x = torch.randn(10, 4)
    empty = _energy(torch.zeros(0, 4), x)
    assert empty.share_outside() == 1.0 and empty.best_share_outside(0) == 1.0
    silent = _energy(torch.zeros(0, 4), torch.zeros(10, 4))  # a spiking layer that never fired
    report = layer_report("layer", silent, silent, old_rows=0)
    assert (report["directions"], report["outside_train"], report["outside_svd_train"]) == (0, 0.0, 0.0)


def test_a_subspace_of_every_input_direction_leaves_nothing():
    """A layer whose lateral neurons span all its inputs (old rows included) has nothing outside, by either share."""
    torch.manual_seed(0)
    x = (torch.rand(50, 5) < 0.3).float()  # spikes
    basis = torch.linalg.qr(torch.randn(5, 5)).Q.t()
    energy = _energy(basis, x)
    assert energy.share_outside() < 1e-10
    assert energy.best_share_outside(old_rows=5) == 0.0 and energy.best_share_outside(old_rows=3) == 0.0


def test_a_layer_whose_subspace_spans_its_inputs_is_named_while_tasks_remain():
    """After a task, a protected layer with as many directions as inputs gets a warning line (later tasks cannot
    change it); a layer with room left, or the last task, gets none."""
    x = torch.randn(20, 4)
    full = layer_report("fc2", _energy(torch.eye(4), x), _energy(torch.eye(4), x), old_rows=2)
    room = layer_report("fc1", _energy(torch.eye(4)[:3], x), _energy(torch.eye(4)[:3], x), old_rows=2)
    assert (full["directions"], full["inputs"]) == (4, 4)
    lines = full_layer_warnings([room, full], task=3, n_tasks=5)
    assert len(lines) == 1 and "fc2" in lines[0] and "all 4 of its inputs" in lines[0] and "after 3" in lines[0]
    assert full_layer_warnings([room, full], task=4, n_tasks=5) == []
