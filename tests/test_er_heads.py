"""Experience replay (ER, DER++) and the class-incremental heads that store no rows (analytic, NCM)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from common.errors import UserError
from common.rundir import RunDir
from continual.config import ContinualConfig
from continual.methods import DERPP, ER, ERACE, ERConfig
from continual.methods.heads import AnalyticHead, HeadConfig, NCMHead
from continual.trainer import build_model
from models.neurons import NeuronConfig
from tests.fixtures import context, make_continual_data, run_resolved

CONFIG = ContinualConfig(epochs=6, batch_size=16, hidden=64, neuron=NeuronConfig(timesteps=6))


def run(tmp_path, methods, name="run", config=CONFIG, data=None):
    folder = RunDir(tmp_path / name, ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    return run_resolved(data or make_continual_data(n_tasks=3), methods, config, folder)


def extended_batches(tmp_path, config: ERConfig, data) -> tuple[ER, list]:
    """Run ER on ``data``; with every training batch it extended: (task, new rows, the stored rows it added)."""
    seen = []

    class Spy(ER):
        def extend_batch(self, context, rows):
            extended = super().extend_batch(context, rows)
            seen.append((context.task, len(rows), extended[len(rows) :].clone()))
            return extended

    method = Spy(config)
    run(tmp_path, method, data=data)
    return method, seen


def test_er_batches_hold_stored_rows_in_the_stated_share(tmp_path):
    """From task 1 on, every training batch of 16 new rows carries 16 / (1 - share) - 16 stored ones."""
    data = make_continual_data(n_tasks=3)
    method, seen = extended_batches(tmp_path, ERConfig(memory_size=5, share=0.2), data)
    assert all(len(old) == 0 for task, _, old in seen if task == 0)
    later = [(task, new, old) for task, new, old in seen if task > 0]
    assert later and all(len(old) == round(new * 0.2 / 0.8) for _, new, old in later)
    for task, _, old in later:  # stored rows are earlier tasks' training rows
        earlier = torch.cat(data.rows["train"][:task])
        assert torch.isin(old, earlier).all()
    assert torch.bincount(data.labels[method.rows]).tolist() == [5] * 6  # class-balanced: 5 rows per class
    assert method.memory_bytes() == 30 * (40 * 4 + 8)  # 30 rows of 40 float32 features, and their labels


def test_er_balanced_batches_give_each_earlier_class_as_many_rows_as_each_new_class(tmp_path):
    """ER's default share: a batch of n new rows of the task's c classes carries n / c rows per earlier class."""
    assert ER().config.share == "balanced" and DERPP().config.share == ERACE().config.share == 0.5
    _, seen = extended_batches(tmp_path, ERConfig(memory_size=5), make_continual_data(n_tasks=3))  # 2 classes a task
    later = [(task, new, old) for task, new, old in seen if task > 0]
    assert {task for task, _, _ in later} == {1, 2}
    assert all(len(old) == new * task for task, new, old in later)  # 2 new classes, 2 * task earlier ones


def test_a_reservoir_keeps_the_budget_and_der_stores_the_logits(tmp_path):
    method = DERPP(ERConfig(memory_budget=12))
    results = run(tmp_path, method)
    memory = method.memory
    assert len(memory) == 12 and memory.logits.shape == (12, 6) and int(memory.seen) == 3 * 80 * 6
    assert set(memory.tasks.tolist()) <= {0, 1, 2} and memory.tasks.max() == 2  # the newest task holds rows too
    assert results["memory_bytes"] == 12 * (40 * 4 + 8) + 12 * 6 * 4


def test_replay_forgets_less_than_the_baseline(tmp_path):
    from continual.methods import Baseline

    config = ContinualConfig(epochs=8, batch_size=16, hidden=128, neuron=NeuronConfig(timesteps=8))
    baseline = run(tmp_path, Baseline(), "base", config)
    for name, method in (("er", ER(ERConfig(memory_size=10))), ("derpp", DERPP(ERConfig(memory_size=10)))):
        results = run(tmp_path, method, name, config)
        assert results["acc"] > baseline["acc"] + 0.2, name


def test_er_ace_keeps_new_rows_off_the_old_classes_and_stored_rows_on_every_class():
    data = make_continual_data(n_tasks=3)
    method, config = ERACE(ERConfig(memory_size=5)), ContinualConfig()
    new = data.rows["train"][2][:4]
    stored = torch.cat([data.rows["train"][0][:3], data.rows["train"][1][:3], data.rows["train"][2][4:6]])
    rows = torch.cat([new, stored])
    assert method.class_mask(context(None, 0, data, config), rows, None) is None  # task 0: plain ER
    method.incoming = len(new)  # as extend_batch leaves it: the batch's own rows, then the stored ones
    mask = method.class_mask(context(None, 2, data, config), rows, None)
    assert mask[:4].tolist() == [[False] * 4 + [True] * 2] * 4  # task 2's rows: only classes 4, 5
    assert mask[4:].all()  # stored rows: every class
    task_mask = data.row_masks(rows)  # the task scenario's mask is kept, and narrowed no further for old rows
    assert torch.equal(method.class_mask(context(None, 2, data, config), rows, task_mask), task_mask)


def test_er_ace_memory_holds_the_task_being_learned_and_it_forgets_less_than_the_baseline(tmp_path):
    from continual.methods import Baseline

    drawn = []

    class Spy(ERACE):
        def extend_batch(self, context, rows):
            extended = super().extend_batch(context, rows)
            drawn.append((context.task, context.data.row_task[extended[len(rows) :]].clone()))
            return extended

    config = ContinualConfig(epochs=8, batch_size=16, hidden=128, neuron=NeuronConfig(timesteps=8))
    baseline = run(tmp_path, Baseline(), "base", config)
    results = run(tmp_path, Spy(ERConfig(memory_size=10)), "er_ace", config)
    for task in (1, 2):  # stored rows of the task being learned meet the old ones in the memory batches
        stored = torch.cat([tasks for t, tasks in drawn if t == task])
        assert set(stored.tolist()) == set(range(task + 1))
    assert min(results["acc_matrix"][i][i] for i in range(3)) > 0.5  # the newest task is predicted too
    assert results["acc"] > baseline["acc"] + 0.2


def test_methods_named_together_run_together_each_from_its_own_flags():
    from continual.cli import build_parser, methods_from_args
    from continual.methods import HLOP

    args = build_parser().parse_args(["-method", "hlop,er", "-memory_size", "7", "-head", "ncm"])
    methods = methods_from_args(args)
    assert [type(m) for m in methods] == [HLOP, ER, NCMHead] and methods[1].config.memory_size == 7
    for bad in ("hlop,nothing", "er,er"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["-method", bad])


def test_er_share_must_leave_room_for_new_rows():
    with pytest.raises(UserError, match="-er_share 1.0"):
        ERConfig(share=1.0)
    from continual.cli import build_parser

    assert build_parser().parse_args(["-er_share", "balanced"]).er_share == "balanced"
    with pytest.raises(UserError, match="-er_share balance: expected a share above 0 and at most 0.95"):
        build_parser().parse_args(["-er_share", "balance"])


def _feed(head, batches):
    """Call the head's task-end update with given representations and labels, as after each task."""
    for task, (phi, labels) in enumerate(batches):
        head.representations = lambda context, p=phi, y=labels: (p, y)
        head.after_task(context(None, task))


def test_the_analytic_head_after_k_tasks_is_the_least_squares_fit_on_all_k_tasks_at_once():
    torch.manual_seed(0)
    classes, width, ridge = 6, 12, 0.5
    model = build_model(make_continual_data(n_tasks=3), ContinualConfig(hidden=width), torch.device("cpu"))
    head = AnalyticHead(HeadConfig(ridge=ridge))
    head.before_run(context(model, data=make_continual_data(n_tasks=3)))
    batches = [(torch.rand(30, width).double(), torch.randint(2 * t, 2 * t + 2, (30,))) for t in range(3)]
    _feed(head, batches)
    scale = 1 / batches[0][0].pow(2).sum(1).mean().sqrt()  # fixed by task 0's rows: unit mean squared norm
    assert head.scale.item() == pytest.approx(scale.item(), rel=1e-12)
    phi = torch.cat([p for p, _ in batches]) * scale
    targets = F.one_hot(torch.cat([y for _, y in batches]), classes).double()
    joint = torch.linalg.solve(phi.t() @ phi + ridge * torch.eye(width, dtype=phi.dtype), phi.t() @ targets)
    torch.testing.assert_close(head.weight, joint, rtol=1e-8, atol=1e-10)
    assert head.seen.all()


@pytest.mark.parametrize("metric, nearest", [("cosine", [0, 1, 1]), ("euclidean", [0, 1, 0])])
def test_the_nearest_class_mean_head_answers_with_the_nearest_mean_of_seen_classes(metric, nearest):
    """Class means (0, 1) and (4, 1): (1, 0.25) is nearer (0, 1) but points the way of (4, 1)."""
    model = build_model(make_continual_data(n_tasks=3), ContinualConfig(hidden=2), torch.device("cpu"))
    head = NCMHead(HeadConfig(metric=metric))
    head.before_run(context(model, data=make_continual_data(n_tasks=3)))
    _feed(head, [(torch.tensor([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]]).double(), torch.tensor([0, 0, 1, 1]))])
    rows = torch.tensor([[0.5, 1.0], [3.0, 1.0], [1.0, 0.25]])
    logits = head.predict(None, type("Output", (), {"layer_inputs": [None, None, rows]}))
    assert logits.argmax(1).tolist() == nearest and torch.isinf(logits[:, 2:]).all()  # unseen classes never win


def test_weight_aligning_gives_the_new_classes_the_old_classes_mean_weight_norm():
    from continual.methods import WA

    data = make_continual_data(n_tasks=3)
    model = build_model(data, CONFIG, torch.device("cpu"))
    weight = model.snn.classifier.weight
    with torch.no_grad():
        weight[4:] *= 3.0  # task 2's classes: longer weight vectors, as after training on them
    before = weight.detach().clone()
    WA().after_task(context(model, 0, data))
    assert torch.equal(weight, before)  # task 0: nothing to align
    WA().after_task(context(model, 2, data))
    norms = weight.detach().norm(dim=1)
    assert torch.allclose(norms[4:].mean(), norms[:4].mean())
    assert torch.equal(weight[:4], before[:4])
    assert torch.allclose(weight[4:] / before[4:], (weight[4] / before[4])[0].expand(2, weight.shape[1]))
    with pytest.raises(UserError, match="-scenario task"):
        WA().check("frozen", "task")


def test_later_lr_zero_keeps_the_network_as_task_0_left_it_while_the_analytic_head_learns_every_class(tmp_path):
    """-later_lr 0 (the analytic-learning protocol): no epoch after task 0, so the task-0 checkpoint's network is
    the last one; the closed-form head alone learns the later classes, and answers them."""
    from continual.methods import Baseline

    config = ContinualConfig(epochs=8, batch_size=16, hidden=128, later_lr=0.0, neuron=NeuronConfig(timesteps=8))
    assert [config.epochs_of(task) for task in range(3)] == [8, 0, 0]
    results = run(tmp_path, [Baseline(), AnalyticHead(HeadConfig(input="hidden"))], config=config)
    first, last = (torch.load(tmp_path / "run" / f"checkpoints/task{t}.pt", weights_only=False) for t in (0, 2))
    for name, value in first["model"].items():
        assert torch.equal(value, last["model"][name]), name
    assert min(results["acc_matrix"][2]) > 0.5  # every task's classes, from one head over all six
    with pytest.raises(UserError, match="-later_lr"):
        ContinualConfig(later_lr=-0.1)


def test_a_head_beside_joint_training_learns_from_every_task_s_rows(tmp_path):
    """Joint training is one experience over all tasks: the task-end hooks see all its rows, not the last task's."""
    from continual.methods import Joint

    head = NCMHead(HeadConfig(input="hidden"))
    run(tmp_path, [Joint(), head], config=replace(CONFIG, epochs=1))
    assert head.seen.all() and head.counts.tolist() == [40.0] * 6


def test_er_ace_balanced_batches_give_every_seen_class_as_many_stored_rows(tmp_path):
    """ER-ACE's memory holds the task being learned too: a balanced memory batch draws n / c rows of each class seen
    so far (earlier and current), not a uniform draw in which each earlier class gets fewer."""
    data, seen = make_continual_data(n_tasks=3), []

    class Spy(ERACE):
        def extend_batch(self, context, rows):
            extended = super().extend_batch(context, rows)
            seen.append((context.task, len(rows), extended[len(rows) :].clone()))
            return extended

    run(tmp_path, Spy(ERConfig(memory_size=5, share="balanced")), data=data)
    full = [(task, new, old) for task, new, old in seen if task == 2 and new == CONFIG.batch_size]
    assert full
    for _, new, old in full:  # two classes a task: each of the six seen classes gets new / 2 stored rows
        assert torch.bincount(data.labels[old], minlength=6).tolist() == [new // 2] * 6


def test_later_lr_zero_charges_no_protection_energy_for_the_tasks_it_never_trains(tmp_path):
    from continual.methods import HLOP
    from tests.fixtures import SMALL_HLOP

    config = ContinualConfig(epochs=2, batch_size=16, hidden=128, later_lr=0.0, neuron=NeuronConfig(timesteps=4))
    results = run(tmp_path, [HLOP(SMALL_HLOP), AnalyticHead(HeadConfig(input="hidden"))], config=config)
    energy = results["energy_joules"]
    assert energy["protection_per_training_sample"][0] > 0 and energy["protection_per_training_sample"][1:] == [0, 0]
    task0 = energy["protection_per_training_sample"][0] * 2 * 40 * 2  # 2 epochs of 2 classes' 40 training rows
    assert energy["protection_total"] == pytest.approx(task0)
