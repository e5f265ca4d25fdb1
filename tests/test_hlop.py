"""HLOP: the Hebbian subspace, the projection that protects old tasks, and the method's schedule."""

import pytest
import torch

from common.errors import UserError
from continual.config import ContinualConfig
from continual.methods import HLOP, HLOPConfig
from continual.resolve import resolve
from hlop.hebbian import HebbianSubspace
from hlop.projection import orthogonal_to_rows, projected_linear
from models.neurons import NeuronConfig
from models.spiking_mlp import SpikingMLP
from tests.fixtures import context, start


def low_rank_inputs(n: int, basis: torch.Tensor, generator) -> torch.Tensor:
    k = basis.shape[1]
    scales = torch.linspace(3, 1, k)
    return (torch.randn(n, k, generator=generator) * scales) @ basis.t()


def principal_cosines(rows: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between span(rows) and span(basis columns)."""
    q = torch.linalg.qr(rows.t())[0]
    return torch.linalg.svdvals(q.t() @ basis)


def test_hebbian_rows_span_the_principal_subspace_like_an_svd():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(60, 5, generator=generator))[0]
    data = low_rank_inputs(4000, basis, generator) + 0.01 * torch.randn(4000, 60, generator=generator)
    subspace = HebbianSubspace(60, lr=0.01)
    subspace.add_subspace(5)
    for _ in range(10):
        for batch in data.split(64):
            subspace.hebbian_update(batch)
    svd_basis = torch.linalg.svd(data, full_matrices=False)[2][:5].t()
    cosines = principal_cosines(subspace.weight, svd_basis)
    assert cosines.min() > 0.999, f"largest principal angle {torch.rad2deg(torch.acos(cosines.min())):.2f} degrees"
    torch.testing.assert_close(subspace.weight @ subspace.weight.t(), torch.eye(5), atol=0.02, rtol=0)


def test_update_equals_the_full_rule_with_frozen_rows_held():
    """The optimised update (frozen rows' reconstruction removed once) equals the reference rule."""
    torch.manual_seed(0)
    optimised = HebbianSubspace(30, lr=0.05, spiking=True, spiking_scale=4.0, spiking_timesteps=40)
    optimised.add_subspace(4)
    optimised.merge()
    optimised.add_subspace(3)
    reference_weight, reference_velocity = optimised.weight.clone(), optimised.velocity.clone()
    x = torch.rand(16, 30)
    optimised.hebbian_update(x, iterations=5)
    for _ in range(5):  # the rule as the reference writes it: all rows answer, frozen rows do not move
        y = optimised.quantize(x @ reference_weight.t())
        delta = torch.clamp(y.t() @ (x - y @ reference_weight) / 16, -10, 10)
        delta[:4] = 0
        reference_velocity[4:] = 0.9 * reference_velocity[4:] + 0.1 * delta[4:]
        reference_weight = reference_weight + 0.05 * reference_velocity
    torch.testing.assert_close(optimised.weight, reference_weight)
    torch.testing.assert_close(optimised.weight[:4], reference_weight[:4])


def test_spiking_quantisation_gives_spike_counts_within_the_scale():
    subspace = HebbianSubspace(4, lr=0.1, spiking=True, spiking_scale=20.0, spiking_timesteps=40)
    y = subspace.quantize(torch.tensor([-50.0, -3.3, 0.26, 7.0, 99.0]))
    torch.testing.assert_close(y, torch.tensor([-20.0, -3.5, 0.5, 7.0, 20.0]))


def test_projection_keeps_old_task_outputs_while_a_new_task_is_learned():
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    old_basis = torch.linalg.qr(torch.randn(50, 6, generator=generator))[0]
    old_inputs = low_rank_inputs(512, old_basis, generator)
    subspace = HebbianSubspace(50, lr=0.01)
    subspace.add_subspace(6)
    for _ in range(30):
        for batch in old_inputs.split(64):
            subspace.hebbian_update(batch)
    subspace.merge()

    new_inputs = torch.randn(256, 50, generator=generator)  # overlaps the old subspace too
    targets = torch.randn(256, 8, generator=generator)

    def train(project: bool) -> tuple[float, float]:
        layer = torch.nn.Linear(50, 8, bias=False)
        torch.nn.init.normal_(layer.weight, generator=torch.Generator().manual_seed(2))
        before = layer(old_inputs).detach()
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.05)
        first_loss = None
        for _ in range(200):
            x = new_inputs
            out = projected_linear(x, layer.weight, subspace.orthogonal(x)) if project else layer(x)
            loss = torch.nn.functional.mse_loss(out, targets)
            first_loss = first_loss or loss.item()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        change = (layer(old_inputs).detach() - before).norm() / before.norm()
        return change.item(), loss.item() / first_loss

    protected_change, protected_loss = train(project=True)
    free_change, _ = train(project=False)
    assert protected_change < 0.01, "projected updates must leave old-task outputs unchanged"
    assert free_change > 0.3, "without projection the same training moves old-task outputs"
    assert protected_loss < 0.7, "the new task must still be learned in the free directions"


def test_orthogonal_to_orthonormal_rows_is_exact():
    basis = torch.linalg.qr(torch.randn(10, 3))[0].t()
    x = torch.randn(7, 10)
    residual = orthogonal_to_rows(x, basis)
    torch.testing.assert_close(residual @ basis.t(), torch.zeros(7, 3), atol=1e-5, rtol=0)


def test_hlop_sizes_follow_the_schedule_and_never_exceed_the_input():
    method = HLOP(HLOPConfig(out_num=(20, 200, 100), out_num_inc=(10, 70, 70)))
    assert method.sizes(0) == [20, 200, 100]
    assert method.sizes(1) == method.sizes(2) == [10, 70, 70]
    assert method.sizes(3) == [7, 50, 50] and method.sizes(6) == [4, 30, 30] and method.sizes(9) == [1, 10, 10]
    model = SpikingMLP(12, 3, hidden=16, neuron=NeuronConfig(timesteps=4))
    method = HLOP(HLOPConfig(out_num=(10, 10, 10), out_num_inc=(10, 10, 10), learning="online"))
    start(method, context(model))
    for task in range(3):
        method.before_task(context(model, task))
        method.after_task(context(model, task))
    assert [s.weight.shape[0] for s in method.subspaces] == [12, 16, 16]


def test_hlop_state_round_trip_with_grown_subspaces():
    model = SpikingMLP(12, 3, hidden=16, neuron=NeuronConfig(timesteps=4))
    method = HLOP(HLOPConfig(out_num=(3, 4, 5), out_num_inc=(2, 2, 2), learning="online"))
    start(method, context(model))
    method.before_task(context(model, 0))
    method.after_task(context(model, 0))
    method.before_task(context(model, 1))
    restored = HLOP(method.config)
    start(restored, context(model))
    restored.load_state_dict(method.state_dict())
    for a, b in zip(method.subspaces, restored.subspaces, strict=True):
        torch.testing.assert_close(a.weight, b.weight)
        assert int(a.n_frozen) == int(b.n_frozen)


def test_hebbian_step_reusing_the_forward_projection_equals_recomputing_it():
    """HLOP's update takes the old-task residual the forward pass already computed; same weights."""
    import copy

    for spiking, with_wfr in ((False, True), (True, True), (True, False)):
        torch.manual_seed(0)
        model = SpikingMLP(12, 4, hidden=16, neuron=NeuronConfig(timesteps=4))
        config = HLOPConfig(
            out_num=(3, 4, 4), out_num_inc=(2, 3, 3), spiking=spiking, with_wfr=with_wfr, learning="online"
        )
        method = HLOP(config)
        start(method, context(model))
        method.before_task(context(model, 0))
        method.after_task(context(model, 0))
        method.before_task(context(model, 1))
        twin, before = copy.deepcopy(method), [s.weight.clone() for s in method.subspaces]
        output = model(torch.rand(8, 12), method.projector(context(None, 1)), keep_spikes=method.needs_spikes)
        assert output.layer_orthogonal[0] is not None
        method.hebbian_updates(output, batch_size=8)
        output.layer_orthogonal = None  # the twin recomputes every residual
        twin.hebbian_updates(output, batch_size=8)
        for ours, recomputed, initial in zip(method.subspaces, twin.subspaces, before, strict=True):
            assert not torch.equal(ours.weight, initial), "the step must learn"
            torch.testing.assert_close(ours.weight, recomputed.weight, rtol=1e-5, atol=1e-6)


def test_new_rows_can_start_orthogonal_to_the_old_subspace():
    torch.manual_seed(0)
    subspace = HebbianSubspace(20, lr=0.05)
    subspace.add_subspace(6)
    subspace.merge()
    subspace.add_subspace(5, orthogonal_to_old=True)
    old, new = subspace.weight[:6], subspace.weight[6:]
    torch.testing.assert_close(new @ old.t(), torch.zeros(5, 6), atol=1e-5, rtol=0)
    torch.testing.assert_close(new @ new.t(), torch.eye(5), atol=1e-5, rtol=0)
    subspace.add_subspace(4)  # the reference's initialisation: orthonormal among themselves only
    assert (subspace.weight[11:] @ old.t()).abs().max() > 0.05


def _low_rank_rows(rows=400, n=64, rank=8, seed=0):
    """Rows in a known ``rank``-dimensional subspace whose directions' energies span two orders of magnitude."""
    generator = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(n, rank, generator=generator)).Q.t()  # (rank, n) orthonormal
    energies = torch.logspace(0, -2, rank)
    return (torch.randn(rows, rank, generator=generator) * energies.sqrt()) @ basis, basis


def _largest_principal_angle(rows: torch.Tensor, basis: torch.Tensor) -> float:
    """Degrees between the span of ``rows`` and that of ``basis`` (test-side check: an SVD is fine here)."""
    ours = torch.linalg.qr(rows.t().double()).Q
    cosines = torch.linalg.svdvals(basis.double() @ ours).clamp(max=1)
    return float(torch.rad2deg(torch.arccos(cosines.min())))


def test_hebbian_passes_reach_a_subspace_whose_energies_span_two_orders_of_magnitude():
    """The default task-end passes find every direction, the weakest too; Oja's rule on every batch, with the
    updates a task gives it by default on frozen features (7 batches x 20 epochs at the default iterations and
    hidden-layer rate), leaves the weak ones out."""
    x, basis = _low_rank_rows()
    config = HLOPConfig().for_mode("frozen")
    passes = HebbianSubspace(64, lr=0.01)
    torch.manual_seed(1)
    passes.add_subspace(8)
    passes.consolidate(x.t() @ x / len(x), config.passes)
    assert _largest_principal_angle(passes.weight, basis) < 1.0
    torch.testing.assert_close(passes.weight @ passes.weight.t(), torch.eye(8), atol=1e-3, rtol=0)
    online = HebbianSubspace(64, lr=config.lr[1])
    torch.manual_seed(1)
    online.add_subspace(8)
    order = torch.Generator().manual_seed(0)
    for _ in range(20):  # epochs of one task, batches of 64
        for batch in torch.randperm(len(x), generator=order).split(64):
            online.hebbian_update(x[batch], config.iterations)
    assert _largest_principal_angle(online.weight, basis) > 10.0, "the online rule was expected to fall short"


def test_hebbian_passes_learn_only_what_the_frozen_rows_leave():
    """A second task's rows learn the part of its inputs outside the first task's subspace, orthogonal to it."""
    x, basis = _low_rank_rows(rank=8)
    subspace = HebbianSubspace(64, lr=0.01)
    torch.manual_seed(0)
    subspace.add_subspace(4)
    first = x @ basis[:4].t() @ basis[:4]  # the first task lives in four of the directions
    subspace.consolidate(first.t() @ first / len(first), 10)
    subspace.merge()
    subspace.add_subspace(4)
    residual = subspace.residual(x)
    subspace.consolidate(residual.t() @ residual / len(residual), 10)
    assert _largest_principal_angle(subspace.weight, basis) < 1.0
    assert subspace.weight[4:].matmul(subspace.weight[:4].t()).abs().max() < 1e-3


def test_what_grown_rows_leave_equals_the_dense_projection():
    """``grow``'s low-rank residual correlation equals ``(I - P) C (I - P)`` computed densely."""
    from hlop.hebbian import _left_outside

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(30, 30, generator=generator, dtype=torch.float64)
    correlation = a @ a.t() / 30
    rows = torch.randn(4, 30, generator=generator, dtype=torch.float64)  # not orthonormal: P needs (R R^T)^-1
    projector = rows.t() @ torch.linalg.inv(rows @ rows.t()) @ rows
    eye = torch.eye(30, dtype=torch.float64)
    expected = (eye - projector) @ correlation @ (eye - projector)
    torch.testing.assert_close(_left_outside(correlation, rows), expected, atol=1e-10, rtol=0)


def test_grown_neurons_hold_the_threshold_share_as_few_as_an_svd_needs():
    """Grown by energy, the lateral neurons are as many as GPM's SVD criterion picks, and leave outside at most
    1.1 times the energy the SVD's directions leave."""
    x, _ = _low_rank_rows(rank=8)
    correlation = x.t().double() @ x.double() / len(x)
    energies = torch.linalg.eigvalsh(correlation).flip(0)
    threshold = 0.95
    needed = int((energies.cumsum(0) / energies.sum() < threshold).sum()) + 1
    subspace = HebbianSubspace(64, lr=0.01)
    torch.manual_seed(0)
    subspace.grow(correlation, correlation, threshold, budget=64)
    assert subspace.weight.shape[0] == needed
    ours = torch.linalg.qr(subspace.weight.t().double()).Q
    outside = float(correlation.trace() - (ours.t() @ correlation @ ours).trace())
    assert subspace.weight.shape[0] == needed
    assert outside <= 1.1 * float(energies[needed:].sum()), (outside, float(energies[needed:].sum()))


def test_orthonormal_rows_span_the_same_subspace_and_are_orthonormal():
    from hlop.hebbian import orthonormal_rows

    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(6, 20, generator=generator, dtype=torch.float64)
    rows[3] = rows[2] + 0.3 * rows[3]  # far from orthogonal: Gram eigenvalues well away from 1
    basis = orthonormal_rows(rows)
    torch.testing.assert_close(basis @ basis.t(), torch.eye(6, dtype=torch.float64), atol=1e-8, rtol=0)
    assert _largest_principal_angle(basis, torch.linalg.qr(rows.t()).Q.t()) < 1e-4
    # the symmetric choice: the orthonormal rows closest to nearly orthonormal rows are nearly those rows
    near = torch.linalg.qr(rows.t()).Q.t() + 1e-3 * torch.randn(6, 20, generator=generator, dtype=torch.float64)
    assert (orthonormal_rows(near) - near).abs().max() < 5e-3


def test_exact_projection_removes_the_span_of_rows_that_are_not_orthonormal():
    """With rows at 0.6..1.6 Gram eigenvalues, ``x - W^T W x`` (the reference's, ``-hlop_projection rows``)
    leaves part of an old input; the default exact projection leaves nothing."""
    generator = torch.Generator().manual_seed(1)
    rows = torch.linalg.qr(torch.randn(16, 5, generator=generator)).Q.t()
    rows[1] = (rows[1] + 0.5 * rows[0]) / (1 + 0.25) ** 0.5  # unit norm, 0.45 overlap with row 0
    old = torch.randn(8, 5, generator=generator) @ rows  # inputs inside the rows' span
    for exact, leaves in ((True, False), (False, True)):
        subspace = HebbianSubspace(16, lr=0.01, exact_projection=exact)
        subspace.weight, subspace.velocity = rows.clone(), torch.zeros_like(rows)
        subspace.merge()
        left = subspace.orthogonal(old).norm() / old.norm()
        assert (left > 0.1) == leaves, f"exact={exact}: {left:.3g} of the old inputs left"
        if exact:
            assert left < 1e-5


def test_hlop_defaults_follow_the_encoder_mode():
    """Online Oja on frozen features (2 iterations at 10x the reference's rates); task-end passes grown by energy
    when encoders learn; rates and iterations given explicitly stay."""
    frozen, learning = HLOP(), HLOP()
    resolve("frozen", ContinualConfig(scenario="class"), frozen)
    resolve("continual", ContinualConfig(scenario="task"), learning)
    assert (frozen.config.learning, frozen.config.threshold, frozen.config.encoder_threshold) == ("online", None, None)
    assert learning.config.learning == "task_end" and learning.config.encoder_threshold == (0.99999, 0.9999)
    assert learning.config.lr == (0.001, 0.001, 0.001) and learning.config.iterations == 20
    assert frozen.config.lr == pytest.approx((0.01, 0.1, 0.1)) and frozen.config.iterations == 2
    reference = HLOP(HLOPConfig(lr=(0.001, 0.01, 0.01), iterations=5))
    resolve("frozen", ContinualConfig(scenario="class"), reference)
    assert (reference.config.lr, reference.config.iterations) == ((0.001, 0.01, 0.01), 5)
    chosen = HLOP(HLOPConfig(learning="online"))
    resolve("continual", ContinualConfig(scenario="task"), chosen)
    assert chosen.config.learning == "online" and chosen.config.encoder_threshold is None


def test_task_end_threshold_defaults_follow_the_encoder_mode():
    """-hlop_learning task_end grows the lateral neurons to 0.99 of each task's energy on frozen features, 0.97
    when the encoders learn; a threshold given explicitly stays, and without task_end learning it is refused."""
    frozen, learning = HLOP(HLOPConfig(learning="task_end")), HLOP(HLOPConfig(learning="task_end"))
    resolve("frozen", ContinualConfig(scenario="class"), frozen)
    resolve("continual", ContinualConfig(scenario="task"), learning)
    assert frozen.config.threshold == (0.99, 0.99, 0.99) and learning.config.threshold == (0.97, 0.97, 0.97)
    chosen = HLOP(HLOPConfig(learning="task_end", threshold=(0.9, 0.8, 0.7)))
    resolve("frozen", ContinualConfig(scenario="class"), chosen)
    assert chosen.config.threshold == (0.9, 0.8, 0.7)
    with pytest.raises(UserError, match="-hlop_threshold"):
        HLOPConfig(learning="online", threshold=(0.9, 0.9, 0.9))


def test_the_task_end_residual_of_spiking_lateral_neurons_is_free_of_their_rounding():
    """What spiking frozen rows leave of an input they span: their spike-count answers leave a rounding error
    (the projection's, as the reference), while the residual the task's end learns from is zero."""
    torch.manual_seed(0)
    subspace = HebbianSubspace(8, lr=0.01, spiking=True, spiking_scale=20.0, spiking_timesteps=40)
    rows = torch.linalg.qr(torch.randn(8, 3)).Q.t().contiguous()
    subspace.weight, subspace.velocity = rows.clone(), torch.zeros_like(rows)
    subspace.merge()
    x = torch.randn(16, 3) @ rows * 3  # inside the frozen span
    assert subspace.residual(x).norm() > 0.05 * x.norm()  # rounding to steps of 0.5
    assert subspace.residual(x, quantized=False).norm() < 1e-5 * x.norm()


def test_learning_both_polishes_the_online_rows_at_the_task_end():
    """``-hlop_learning both``: the task's rows learned online are the start of its end-of-task passes (one
    pass here: one step of ``subspace_passes`` from them), not dropped and learned afresh."""
    from continual.config import ContinualConfig
    from hlop.hebbian import subspace_passes

    generator = torch.Generator().manual_seed(0)
    directions = torch.linalg.qr(torch.randn(12, 4, generator=generator)).Q.t()  # a known 4-dim subspace
    x = (torch.randn(64, 4, generator=generator) * torch.tensor([3.0, 1.0, 0.3, 0.1])) @ directions
    x = x + 0.03 * torch.randn(64, 12, generator=generator)  # every direction holds some energy
    torch.manual_seed(0)
    model = SpikingMLP(12, 3, hidden=16, neuron=NeuronConfig(timesteps=4))
    method = HLOP(HLOPConfig(out_num=(4, 4, 4), out_num_inc=(2, 2, 2), learning="both", passes=1))
    start(method, context(model))
    method.before_task(context(model, 0))
    online = method.subspaces[0].weight.clone()  # the rows as online learning left them

    class Data:  # what after_task reads
        def inputs(self, rows):
            return x[rows]

    method.after_task(context(model, 0, Data(), ContinualConfig(batch_size=8, epochs=1), rows=torch.arange(64)))
    expected, _ = subspace_passes(online.double(), (x.t() @ x / len(x)).double(), 1)
    torch.testing.assert_close(method.subspaces[0].weight, expected.float(), atol=1e-3, rtol=0)

    def outside(rows):
        return (orthogonal_to_rows(x, torch.linalg.qr(rows.t()).Q.t()).pow(2).sum() / x.pow(2).sum()).item()

    assert outside(method.subspaces[0].weight) < 0.5 * outside(online)  # a step towards the principal subspace


def test_modality_paths_bring_each_modality_alone_into_the_protected_subspace(tmp_path):
    """-hlop_modality_paths: the lateral neurons also learn the single-modality features' inputs, so less of an
    audio-only row's fc1 input lies outside the protected subspace than when they learn the fused rows only."""
    from dataclasses import replace

    from tests.fixtures import CONFIG, SMALL_HLOP, make_continual_data, run_small

    def outside_share(modality_paths: bool, name: str) -> float:
        data = make_continual_data(n_tasks=2)
        half = data.features.shape[1] // 2
        # as the fusion gives them: one modality's half of the feature, the other half silent
        data.probe_features = {"audio_only": data.features.clone(), "image_only": data.features.clone()}
        data.probe_features["audio_only"][:, :half] = 0
        data.probe_features["image_only"][:, half:] = 0
        hlop = HLOP(replace(SMALL_HLOP, out_num=(6, 32, 32), out_num_inc=(2, 32, 32), modality_paths=modality_paths))
        run_small(tmp_path / f"{name}-{modality_paths}", hlop, config=CONFIG, data=data)
        rows = hlop.subspaces[0].weight  # fc1's protected directions
        basis = torch.linalg.qr(rows.t()).Q
        x = data.probe_features[name][data.rows["train"][0]]
        return ((x - x @ basis @ basis.t()).pow(2).sum() / x.pow(2).sum()).item()

    for name in ("audio_only", "image_only"):
        assert outside_share(True, name) < outside_share(False, name) - 0.02
