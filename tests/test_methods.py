"""The comparison methods: joint, EWC, replay and compressed latent replay, GPM."""

import pytest
import torch
import torch.nn.functional as F

from common.errors import UserError
from common.rundir import RunDir
from continual.config import ContinualConfig
from continual.methods import EWC, GPM, HLOP, Baseline, EWCConfig, HLOPConfig, Joint, Replay, ReplayConfig, compose
from continual.methods.gpm import extend_basis
from continual.methods.replay import pack_bits, unpack_bits
from continual.trainer import build_model
from hlop.projection import SubspaceProjector
from models.neurons import NeuronConfig
from tests.fixtures import context, make_continual_data, run_resolved, run_script

CONFIG = ContinualConfig(epochs=8, batch_size=16, hidden=128, neuron=NeuronConfig(timesteps=8))
REPLAY = ReplayConfig(memory_size=10, epochs=5, batch_per_task=10, lr=0.05)


def run(tmp_path, method, name="run", config=CONFIG):
    folder = RunDir(tmp_path / name, ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    return run_resolved(make_continual_data(n_tasks=3), method, config, folder)


def test_joint_is_an_upper_bound_where_forgetting_is_certain(tmp_path):
    baseline = run(tmp_path, Baseline(), "base")
    joint = run(tmp_path, Joint(), "joint")
    assert joint["acc"] >= baseline["acc"] + 0.2
    assert joint["acc_matrix"][0] == [None, None, None] and None not in joint["acc_matrix"][-1]
    assert joint["bwt"] is None
    assert joint["memory_bytes"] == 3 * 2 * 40 * 40 * 4  # every training feature is kept


def test_replay_and_gpm_forget_less_than_the_baseline(tmp_path):
    baseline = run(tmp_path, Baseline(), "base")
    for name, method in (("replay", Replay(config=REPLAY)), ("gpm", GPM())):
        results = run(tmp_path, method, name)
        assert results["acc"] > baseline["acc"] + 0.2, name
        assert results["bwt"] > baseline["bwt"] + 0.3, name


def test_replay_memory_keeps_memory_size_samples_per_class(tmp_path):
    method = Replay(config=REPLAY)
    run(tmp_path, method)
    data = make_continual_data(n_tasks=3)
    assert torch.bincount(data.labels[method.memory.rows]).tolist() == [10] * 6
    assert method.memory.tasks.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    assert method.memory_bytes() == 60 * 40 * 4 + 2 * 60 * 8  # each row's 40 features, its label and task


def test_compressed_latent_replay_halves_the_memory_at_ratio_two(tmp_path):
    sizes = {}
    for compress in (1, 2):
        method = Replay(config=ReplayConfig(**{**REPLAY.__dict__, "latent": True, "compress": compress}))
        run(tmp_path, method, f"c{compress}")
        sizes[compress] = method.payload_bytes()
        assert method.name == ("latent-replay" if compress == 1 else "latent-replay-c2")
    assert sizes[1] == 60 * 8 * 128 // 8  # 60 samples, 8 timesteps x 128 neurons, one bit each
    assert sizes[2] * 2 == sizes[1]


def test_latent_replay_expands_kept_steps_and_freezes_the_layer_below():
    torch.manual_seed(0)
    data = active_data()
    model = build_model(data, CONFIG, torch.device("cpu"))
    method = Replay(config=ReplayConfig(latent=True, compress=2))
    features = data.features[:5]
    spikes = method._decode_latent(model, method._encode_latent(model, features))[0]
    full = model(features, keep_spikes=True).layer_spikes[0]
    assert full.sum() > 0, "the test needs spikes to compare"
    torch.testing.assert_close(spikes[0::2], full[0::2])  # kept steps are exact
    torch.testing.assert_close(spikes[1::2], full[0::2])  # each is repeated in place of the dropped one
    method.before_optimizer(context(model, 1))
    assert not model.fc1.weight.requires_grad


def test_bits_pack_and_unpack():
    bits = torch.rand(3, 21) > 0.5
    packed = pack_bits(bits)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 3)
    assert torch.equal(unpack_bits(packed, 21), bits)


def test_methods_compose_with_hooks_fanned_out():
    hlop, replay = HLOP(HLOPConfig()), Replay(ReplayConfig())
    both = compose([hlop, replay])
    assert both.name == "hlop+replay" and compose([Baseline(), replay]).name == "replay"
    assert both.projector(context(None, 1)) is hlop and both.projector(context(None, 0)) is None
    assert compose([hlop]) is hlop
    with pytest.raises(UserError, match="gpm and hlop both project gradients"):  # refused before anything trains
        compose([hlop, GPM()])

    class Pull(Baseline):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def penalty(self, context):
            return torch.tensor(self.value)

    assert compose([Pull(1.5), Pull(2.0)]).penalty(context(None)).item() == pytest.approx(3.5)
    assert {"methods.1.memory.rows", "methods.1.memory.tasks"} <= set(both.state_dict())  # saved in checkpoints


def test_a_method_defined_in_a_test_runs_through_the_loop_and_script_flags(tmp_path):
    """Adding a method touches one file: it declares its flags and hooks, the loop and the parser need nothing else."""
    import spiking_train_multimodal_end as script
    from continual.methods import METHODS

    class CountSteps(Baseline):
        name = "count_steps"

        def __init__(self, every=1):
            super().__init__()
            self.every, self.steps, self.tasks = every, 0, []

        @classmethod
        def add_flags(cls, parser):
            parser.flag("-count_every", type=int, default=1, help="toy: count every n-th step")

        @classmethod
        def from_args(cls, args):
            return cls(args.count_every)

        def after_optimizer_step(self, context):
            self.steps += 1

        def after_task(self, context):
            self.tasks.append(context.task)

    METHODS["count_steps"] = CountSteps
    try:
        args = script.build_parser().parse_args(["-method", "count_steps", "-count_every", "3", "-replay"])
        methods = script.methods_from_args(args)
    finally:
        del METHODS["count_steps"]
    assert isinstance(methods[0], CountSteps) and methods[0].every == 3 and isinstance(methods[1], Replay)
    toy = CountSteps()
    results = run(
        tmp_path, toy, config=ContinualConfig(epochs=2, batch_size=16, hidden=16, neuron=NeuronConfig(timesteps=4))
    )
    assert (
        results["method"] == "count_steps" and toy.tasks == [0, 1, 2] and toy.steps == 5 * 2 * 3
    )  # 80 rows per task / batch 16, 2 epochs, 3 tasks


def test_every_hook_receives_one_context_in_loop_order_also_through_a_composite(tmp_path):
    """A toy method sees each hook of ``HOOKS`` where its name says it runs; composed, every method sees each."""
    from continual.methods import HOOKS

    class Trace(Baseline):
        def __init__(self, name):
            super().__init__()
            self.name, self.calls = name, []

        def hook(self, name, context):
            assert context.model is not None and context.data is not None and context.config is not None
            if name in ("after_backward", "after_optimizer_step"):
                assert context.output is not None and context.rows is not None and context.epoch >= 1
                assert all(layer.weight.grad is not None for layer in context.model.projected_layers)
            self.calls.append((name, context.task))
            super().hook(name, context)

    first, second = Trace("first"), Trace("second")
    config = ContinualConfig(epochs=1, batch_size=40, hidden=16, neuron=NeuronConfig(timesteps=4))
    run(tmp_path, [first, second], config=config)
    per_task = ["before_task", "before_optimizer"] + ["after_backward", "after_optimizer_step"] * 2 + ["after_task"]
    expected = [("before_run", 0)] + [(name, task) for task in range(3) for name in per_task]
    assert first.calls == expected and second.calls == expected  # 80 rows a task, batches of 40
    assert {name for name, _ in expected} == set(HOOKS)


def test_a_hook_new_to_the_loop_reaches_every_composed_method_by_its_name():
    """Composition dispatches by name: a loop that adds a hook needs nothing in ``compose``."""

    class Listens(Baseline):
        def __init__(self):
            super().__init__()
            self.heard = []

        def after_validation(self, context):  # a hook no loop calls yet
            self.heard.append(context.epoch)

    a, b = Listens(), Listens()
    compose([a, b]).hook("after_validation", context(None, epoch=3))
    assert a.heard == [3] and b.heard == [3]


def test_an_impossible_combination_is_refused_before_anything_is_written(tmp_path):
    from continual.methods import LatentReplay

    with pytest.raises(UserError, match="-method latent-replay-c2 does not work with -encoder_mode continual"):
        LatentReplay().check("continual", "class")
    result = run_script(
        "spiking_train_multimodal_end.py", "-encoder_mode", "continual", "-pretrained", "none",
        "-method", "latent_replay", "-out_dir", str(tmp_path / "x1"),
    )  # fmt: skip
    assert result.returncode == 2 and "does not work with -encoder_mode continual" in result.stderr
    assert not (tmp_path / "x1").exists(), "a refused run leaves nothing behind"


def active_data():
    """The fixture with inputs large enough for an untrained network to spike."""
    data = make_continual_data(n_tasks=2)
    data.features *= 4
    return data


def test_ewc_fisher_is_the_mean_of_per_sample_squared_gradients():
    torch.manual_seed(0)
    data = active_data()
    model = build_model(data, CONFIG, torch.device("cpu"))
    method = EWC(EWCConfig(lambda_=10.0, samples=12))
    method.before_run(context(model))
    rows = data.rows["train"][0][:12]
    method.after_task(context(model, 0, data, CONFIG, rows=rows))
    naive = [torch.zeros_like(layer.weight) for layer in model.projected_layers]
    for row in rows:
        model.zero_grad()
        F.cross_entropy(model(data.features[row : row + 1]).logits, data.labels[row : row + 1]).backward()
        for fisher, layer in zip(naive, model.projected_layers, strict=True):
            fisher += layer.weight.grad**2 / len(rows)
    for i, fisher in enumerate(naive):
        assert fisher.abs().sum() > 0
        torch.testing.assert_close(getattr(method, f"fisher{i}"), fisher, rtol=1e-4, atol=1e-10)


def test_ewc_penalty_pulls_weights_back_to_their_anchor():
    torch.manual_seed(0)
    data = active_data()
    model = build_model(data, CONFIG, torch.device("cpu"))
    method = EWC(EWCConfig(lambda_=10.0, samples=12))
    method.before_run(context(model))
    assert method.penalty(context(model)) is None, "no penalty before a task has finished"
    method.after_task(context(model, 0, data, CONFIG, rows=data.rows["train"][0]))
    assert method.penalty(context(model)).item() == pytest.approx(0.0)
    with torch.no_grad():
        model.classifier.weight += 0.5
    penalty = method.penalty(context(model))
    penalty.backward()
    expected = 10.0 * method.fisher2 * (model.classifier.weight.detach() - method.anchor2)
    torch.testing.assert_close(model.classifier.weight.grad, expected)
    assert penalty.item() > 0


def test_gpm_and_hlop_share_the_projection_code():
    for method in (GPM(), HLOP()):
        assert isinstance(method, SubspaceProjector)
        assert type(method).orthogonal is SubspaceProjector.orthogonal


def test_gpm_basis_keeps_the_threshold_share_of_energy_and_stays_orthonormal():
    torch.manual_seed(0)
    inputs = torch.randn(200, 3) @ torch.randn(3, 30) + 0.01 * torch.randn(200, 30)
    basis = extend_basis(torch.zeros(0, 30), inputs.t() @ inputs, 0.99)
    assert basis.shape[0] == 3
    torch.testing.assert_close(basis @ basis.t(), torch.eye(3), atol=1e-5, rtol=0)
    other = torch.randn(200, 2) @ torch.randn(2, 30)
    more = extend_basis(basis, other.t() @ other, 0.99)
    assert more.shape[0] == 5 and torch.allclose(more[:3], basis)
    torch.testing.assert_close(more @ more.t(), torch.eye(5), atol=1e-5, rtol=0)
    assert extend_basis(more, inputs.t() @ inputs, 0.99).shape[0] == 5, "nothing to add: the inputs are already spanned"
