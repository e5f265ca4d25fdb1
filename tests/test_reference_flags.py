"""The reference script's flags: each parses and changes what it should; the task split follows meta.json."""

import json

import pytest
import torch
import torch.nn.functional as F

import spiking_train_multimodal_end as script
from common.errors import UserError
from continual.config import ContinualConfig
from continual.evaluation import firing_rates
from continual.methods import HLOP, Baseline
from hlop.projection import decoupled_linear
from models.neurons import NeuronConfig
from models.spiking_mlp import SpikingMLP
from tests.fixtures import continual_tiny, make_continual_data, pretrain_tiny, run_resolved

NEURON = NeuronConfig(timesteps=6)


def parse(*flags):
    return script.build_parser().parse_args(list(flags))


def test_reference_flags_parse_into_the_config():
    args = parse("-cnf", "my-config", "-rate_stat", "1", "-sign_symmetric", "-dsr_backward", "exact")
    config = script.config_from_args(args)
    assert (config.feedback, config.rate_stat, config.dsr_backward) == ("sign_symmetric", True, "exact")
    assert args.cnf == "my-config"
    with pytest.raises(UserError, match="-j: mmhlop has no data-loading workers"):  # it would do nothing
        parse("-j", "8")
    assert script.config_from_args(parse("-feedback_alignment")).feedback == "feedback_alignment"
    defaults = script.config_from_args(parse())
    assert (defaults.feedback, defaults.rate_stat, defaults.dsr_backward) == ("exact", False, "reference")
    assert script.config_from_args(parse("-rate_stat")).rate_stat  # bare, as a switch
    with pytest.raises(UserError, match="pick one"):
        script.config_from_args(parse("-sign_symmetric", "-feedback_alignment"))
    hlop = HLOP.config_from_args(parse("-hlop_spiking", "-hlop_spiking_projection", "rate"))
    assert hlop.spiking and hlop.spiking_projection == "rate"
    assert HLOP.config_from_args(parse()).spiking_projection == "timestep"


def test_decoupled_linear_sends_the_input_gradient_through_the_feedback_matrix():
    x = torch.rand(3, 5, requires_grad=True)
    weight = torch.randn(4, 5, requires_grad=True)
    back, g = torch.randn(4, 5), torch.randn(3, 4)
    out = decoupled_linear(x, weight, None, back)
    torch.testing.assert_close(out, x @ weight.t())
    out.backward(g)
    torch.testing.assert_close(x.grad, g @ back)
    torch.testing.assert_close(weight.grad, g.t() @ x.detach())


def gradients(model, x, labels):
    model.zero_grad()
    F.cross_entropy(model(x).logits, labels).backward()
    return [layer.weight.grad.clone() for layer in model.projected_layers]


@pytest.mark.parametrize("feedback", ["sign_symmetric", "feedback_alignment"])
def test_weight_transport_free_backward_changes_only_the_lower_layers(feedback):
    torch.manual_seed(0)
    exact = SpikingMLP(8, 3, hidden=12, neuron=NEURON)
    other = SpikingMLP(8, 3, hidden=12, neuron=NEURON, feedback=feedback)
    other.load_state_dict(exact.state_dict(), strict=False)
    x, labels = torch.rand(5, 8) * 4, torch.tensor([0, 1, 2, 0, 1])
    ours, theirs = gradients(other, x, labels), gradients(exact, x, labels)
    torch.testing.assert_close(ours[2], theirs[2])  # the classifier's weight gradient needs no feedback
    assert not torch.allclose(ours[0], theirs[0]) and not torch.allclose(ours[1], theirs[1])
    if feedback == "sign_symmetric":
        expected = torch.sign(other.classifier.weight) / 12**0.5
        torch.testing.assert_close(other._weight_back(2), expected)
    else:
        fixed = other.feedback1.clone()
        torch.optim.SGD(other.parameters(), lr=1.0).step()
        torch.testing.assert_close(other.feedback1, fixed)  # fixed random matrices, not trained
        assert "feedback1" in other.state_dict()  # saved with the model, so -resume keeps them


def test_firing_rates_count_the_spikes():
    torch.manual_seed(0)
    data = make_continual_data(n_tasks=2)
    data.features *= 4
    model = SpikingMLP(data.features.shape[1], data.n_classes, hidden=16, neuron=NEURON)
    rows = data.rows["test"][0]
    spikes = model(data.features[rows], keep_spikes=True).layer_spikes
    by_hand = [(s > 0).float().mean().item() for s in spikes]
    assert firing_rates(model, data, rows, batch_size=3) == pytest.approx(by_hand, abs=1e-6)
    assert 0 < by_hand[0] < 1


def test_rate_stat_records_a_rate_per_layer_and_task(tmp_path):
    from common.rundir import RunDir

    data = make_continual_data(n_tasks=2)
    config = ContinualConfig(epochs=1, batch_size=16, hidden=16, neuron=NEURON, rate_stat=True)
    folder = RunDir(tmp_path / "run", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    results = run_resolved(data, Baseline(), config, folder)
    assert len(results["firing_rates"]) == 2 and all(len(rates) == 2 for rates in results["firing_rates"])
    assert all(0 <= rate <= 1 for rates in results["firing_rates"] for rate in rates)


def test_spiking_mlp_stays_fp32_under_autocast():
    torch.manual_seed(0)
    model = SpikingMLP(8, 3, hidden=12, neuron=NEURON)
    x = torch.rand(4, 8) * 4
    plain = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = model(x)
    assert all(t.dtype == torch.float32 for t in [cast.logits, *cast.layer_inputs, *cast.layer_outputs])
    torch.testing.assert_close(cast.logits, plain.logits)


def test_continual_script_uses_the_users_tasks_and_records_the_reference_flags(scene_dir, tmp_path):
    tasks = [["FOREST"], ["BEACH", "CITY"]]
    pretrained = pretrain_tiny(scene_dir, tmp_path)  # on every class: the task split does not change the encoders
    out = tmp_path / "run"
    cache = ["-cache_dir", str(tmp_path / "cache")]
    result = continual_tiny(scene_dir, pretrained, out, *cache, "-tasks", json.dumps(tasks), "-cnf", "smoke",
                            "-rate_stat", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(from -tasks)" in result.stdout and "firing rates after task 1" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == tasks
    assert results["config"]["cnf"] == "smoke" and len(results["firing_rates"]) == 2
