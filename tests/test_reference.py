"""mmhlop against a plain per-timestep transcription of the reference HLOP-SNN code (tests/reference_hlop.py)."""

import pytest
import torch
import torch.nn.functional as F

from continual.methods import HLOP, HLOPConfig
from hlop.projection import orthogonal_to_rows_in_time
from models.neurons import NeuronConfig, reference_grad_scale
from models.spiking_mlp import SpikingMLP
from tests import reference_hlop as ref
from tests.fixtures import context, start

NEURON = NeuronConfig(timesteps=10, vth=0.3, tau=1.0, delta_t=0.05, alpha=0.3)
LABELS = torch.tensor([0, 1, 2, 3, 0, 1])


def tiny_model(dsr_backward="reference", seed=0) -> SpikingMLP:
    torch.manual_seed(seed)
    model = SpikingMLP(12, 4, hidden=16, neuron=NEURON, dsr_backward=dsr_backward)
    with torch.no_grad():  # weights that keep most neurons between silence and saturation
        model.fc1.weight.uniform_(-0.2, 1.0)
        model.fc2.weight.uniform_(-0.1, 0.3)
    return model


def inputs(seed=1) -> torch.Tensor:
    return torch.rand(6, 12, generator=torch.Generator().manual_seed(seed)) * 4


def protecting_hlop(model: SpikingMLP, spiking: bool, placement: str = "timestep", projection: str = "exact") -> HLOP:
    """HLOP after one task: 3, 5 and 4 frozen lateral rows (orthonormal) on fc1, fc2 and the classifier."""
    config = HLOPConfig(
        projection=projection,
        out_num=(3, 5, 4),
        spiking=spiking,
        spiking_scale=20.0,
        spiking_timesteps=40,
        spiking_projection=placement,
        learning="online",
    )
    hlop = HLOP(config)
    start(hlop, context(model))
    torch.manual_seed(5)
    hlop.before_task(context(model, 0))
    for subspace in hlop.subspaces:
        subspace.merge()
    return hlop


def mmhlop_gradients(model: SpikingMLP, x, projector=None) -> list[torch.Tensor]:
    model.zero_grad()
    F.cross_entropy(model(x, projector).logits, LABELS).backward()
    return [layer.weight.grad.clone() for layer in model.projected_layers] + [n.vth.grad.clone() for n in model.neurons]


def reference_gradients(model: SpikingMLP, x, hlop: HLOP | None = None, spiking=False) -> list[torch.Tensor]:
    weights = [layer.weight.detach().clone().requires_grad_() for layer in model.projected_layers]
    vths = [n.vth.detach().clone().requires_grad_() for n in model.neurons]
    bases = [s.frozen for s in hlop.subspaces] if hlop is not None else None
    out = ref.spiking_mlp_forward(x, *weights, *vths, NEURON, bases, spiking, scale=20.0, steps=40)
    F.cross_entropy(out, LABELS).backward()
    return [w.grad for w in weights] + [v.grad for v in vths]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def assert_all_close(ours, theirs):
    names = ["fc1", "fc2", "classifier", "sn1.Vth", "sn2.Vth"]
    for name, a, b in zip(names, ours, theirs, strict=True):
        assert b.abs().sum() > 0, f"{name}: the reference gradient is zero, the example tests nothing"
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{name} gradient differs from the reference")


def test_forward_equals_the_reference():
    model, x = tiny_model(), inputs()
    weights = [layer.weight.detach() for layer in model.projected_layers]
    vths = [n.vth.detach() for n in model.neurons]
    with torch.no_grad():
        expected = ref.spiking_mlp_forward(x, *weights, *vths, NEURON)
        torch.testing.assert_close(model(x).logits, expected, rtol=1e-5, atol=1e-5)


def test_dsr_gradients_equal_the_reference_without_projection():
    model, x = tiny_model(), inputs()
    assert_all_close(mmhlop_gradients(model, x), reference_gradients(model, x))


@pytest.mark.parametrize("spiking", [False, True])
def test_projected_gradients_equal_the_reference(spiking):
    """HLOP's projection, with spiking lateral neurons quantising each timestep's input as the reference."""
    model, x = tiny_model(), inputs()
    hlop = protecting_hlop(model, spiking)
    ours = mmhlop_gradients(model, x, hlop.projector(context(None, 1)))
    theirs = reference_gradients(model, x, hlop, spiking)
    assert_all_close(ours, theirs)
    unprojected = mmhlop_gradients(model, x)
    assert cosine(unprojected[1], theirs[1]) < 0.999, "the projection changed nothing: the example tests nothing"


@pytest.mark.parametrize("spiking", [False, True])
def test_rows_projection_equals_the_reference_with_rows_that_are_not_orthonormal(spiking):
    """``-hlop_projection rows`` projects as the reference does, with the learned rows as they are; the default
    ``exact`` then differs, since it removes the rows' span exactly."""
    model, x = tiny_model(), inputs()
    hlops = {name: protecting_hlop(model, spiking, projection=name) for name in ("rows", "exact")}
    for hlop in hlops.values():
        for subspace in hlop.subspaces:  # rows learned over several tasks: overlapping, not of unit norm
            rows = subspace.weight.clone()
            rows[1:] += 0.3 * rows[:1]
            subspace.weight = rows
            subspace.merge()
    theirs = reference_gradients(model, x, hlops["rows"], spiking)
    assert_all_close(mmhlop_gradients(model, x, hlops["rows"].projector(context(None, 1))), theirs)
    exact = mmhlop_gradients(model, x, hlops["exact"].projector(context(None, 1)))
    assert not torch.allclose(exact[0], theirs[0], rtol=1e-3, atol=1e-4)


def test_rate_placement_of_the_spiking_projection_is_not_the_reference():
    """The named alternative (quantising the weighted rate's answer) gives other gradients on this example."""
    model, x = tiny_model(), inputs()
    theirs = reference_gradients(model, x, protecting_hlop(model, True), spiking=True)
    rate = mmhlop_gradients(model, x, protecting_hlop(model, True, placement="rate").projector(context(None, 1)))
    for ours, expected in zip(rate[1:3], theirs[1:3], strict=True):  # fc2 and the classifier
        assert not torch.allclose(ours, expected, rtol=1e-3, atol=1e-3)


def test_exact_backward_differs_from_the_reference_by_the_stated_factor():
    """The README's deviation: fc1's gradient is the reference's divided by T * sum p_t^2, the classifier's equal."""
    x = inputs()
    exact = mmhlop_gradients(tiny_model("exact"), x)
    reference = mmhlop_gradients(tiny_model("reference"), x)
    factor = reference_grad_scale(NEURON.timesteps, NEURON.tau, NEURON.delta_t)
    assert factor == pytest.approx(1.0205, abs=1e-4)  # T = 10 here
    assert reference_grad_scale(20, 1.0, 0.05) == pytest.approx(1.0818, abs=1e-4)  # the defaults
    torch.testing.assert_close(exact[0] * factor, reference[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(exact[2], reference[2])


def test_per_timestep_projection_is_the_time_average_of_each_steps_projection():
    generator = torch.Generator().manual_seed(0)
    spikes = (torch.rand(7, 3, 9, generator=generator) > 0.6).float() * 6
    basis = torch.linalg.qr(torch.randn(9, 4, generator=generator))[0].t()
    weights = torch.rand(7, generator=generator)
    weights /= weights.sum()

    def quantize(y):
        return torch.round(torch.clamp(y, -20, 20) / 20 * 40) / 40 * 20

    by_hand = sum(weights[t] * (spikes[t] - ref.hlop_projection(spikes[t], basis, True, 20.0, 40)) for t in range(7))
    torch.testing.assert_close(orthogonal_to_rows_in_time(spikes, weights, basis, quantize), by_hand)


def test_hebbian_update_equals_the_reference():
    torch.manual_seed(0)
    hlop = protecting_hlop(tiny_model(), spiking=True)
    subspace = hlop.subspaces[1]
    subspace.add_subspace(3)
    x = torch.rand(8, 16) * 3
    weight, momentum = ref.hlop_update(
        subspace.weight.clone(), subspace.velocity.clone(), x, subspace.lr, 5, 5, True, 20.0, 40
    )
    subspace.hebbian_update(x, iterations=5)
    torch.testing.assert_close(subspace.weight, weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(subspace.velocity, momentum, rtol=1e-5, atol=1e-6)


def test_conv_gradient_projection_equals_the_references_projected_patch_formula():
    """modules/proj_conv.py: grad_W = sum_b grad_b @ orth_input_b^T with orth_input = x - B^T B x on the unfolded
    patches; mmhlop projects the ordinary weight gradient instead (hlop.layers.project_gradient)."""
    import torch.nn.functional as F
    from torch import nn

    from hlop.layers import project_gradient

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 6, 6)
    basis = torch.linalg.qr(torch.randn(27, 5)).Q.t()  # 5 orthonormal rows in the 27-dim patch space
    out = conv(x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    project_gradient(conv, basis)
    patches = F.unfold(x, 3, padding=1)  # (B, 27, L)
    orth = patches - basis.t() @ (basis @ patches)
    reference = torch.sum(torch.matmul(grad_out.reshape(2, 4, -1), orth.transpose(1, 2)), dim=0).reshape(
        conv.weight.shape
    )
    assert torch.allclose(conv.weight.grad, reference, rtol=1e-4, atol=1e-5)
