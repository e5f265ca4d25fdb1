"""The class-incremental diagnostic: a fresh least-squares head on each layer's input, and how far old
classes' mean representations moved there (continual.representation)."""

import torch

from common.rundir import RunDir
from continual.config import ContinualConfig
from continual.methods import Baseline
from continual.methods.heads import RIDGE
from continual.representation import class_means, representation_report, ridge_accuracy
from continual.trainer import build_model
from models.neurons import NeuronConfig
from tests.fixtures import make_continual_data, run_resolved

CONFIG = ContinualConfig(epochs=8, batch_size=16, hidden=128, neuron=NeuronConfig(timesteps=8))


def test_ridge_accuracy_is_the_least_squares_fit_answering_only_over_the_given_classes():
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(60, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(3, (60,), generator=generator)
    test = torch.randn(30, 5, generator=generator, dtype=torch.float64)
    scale = 1 / train.pow(2).sum(1).mean().sqrt()  # the analytic head's: training rows of unit mean squared norm
    weight = torch.linalg.lstsq(  # the ridge as least squares on augmented rows
        torch.cat([train * scale, RIDGE**0.5 * torch.eye(5, dtype=torch.float64)]),
        torch.cat([torch.nn.functional.one_hot(labels, 4).double(), torch.zeros(5, 4, dtype=torch.float64)]),
    ).solution
    classes = torch.tensor([True, True, True, False])
    expected = (test * scale @ weight)[:, :3].argmax(1)
    for truth in (expected, (expected + 1) % 3):
        assert ridge_accuracy(train, labels, test, truth, classes) == (expected == truth).double().mean().item()


def test_drift_is_zero_for_a_network_that_did_not_move_and_measured_against_the_saved_means():
    data = make_continual_data(n_tasks=3)
    model = build_model(data, CONFIG, torch.device("cpu"))
    saved = {}
    reports = [representation_report(model, data, task, saved) for task in range(3)]
    assert [len(r["hidden2"]["class_mean_drift"]) for r in reports] == [0, 1, 2]
    assert all(d == 0 for r in reports for entry in r.values() for d in entry["class_mean_drift"])
    assert {key: tuple(means.shape) for key, means in saved.items() if key.endswith("/2")} == {
        "fused/2": (data.n_classes, data.feature_dim),
        "hidden1/2": (data.n_classes, CONFIG.hidden),
        "hidden2/2": (data.n_classes, CONFIG.hidden),
    }
    with torch.no_grad():  # move the last hidden layer: every old class's mean moves there, and only there
        model.fc2.weight.mul_(-1.0)
    moved = representation_report(model, data, 2, {key: means for key, means in saved.items() if key[-1] in "01"})
    assert all(d > 0.1 for d in moved["hidden2"]["class_mean_drift"])
    assert all(d == 0 for layer in ("fused", "hidden1") for d in moved[layer]["class_mean_drift"])


def test_runs_record_the_diagnostic_for_every_task(tmp_path):
    folder = RunDir(tmp_path / "run", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    data = make_continual_data(n_tasks=3)
    results = run_resolved(data, Baseline(), CONFIG, folder)
    reports = results["representation"]
    assert len(reports) == 3 and [len(r["hidden2"]["class_mean_drift"]) for r in reports] == [0, 1, 2]
    assert all(0 <= entry["linear_probe_acc"] <= 1 for r in reports for entry in r.values())
    assert all(d == 0 for r in reports for d in r["fused"]["class_mean_drift"])  # frozen features do not move
    # the fixture's classes are well separated: a fresh head on the plain network's features tells them apart
    # better than the plain network, which forgets (the diagnostic's point)
    assert reports[-1]["hidden2"]["linear_probe_acc"] > results["acc"]


def test_a_joint_run_has_no_earlier_task_to_drift_from(tmp_path):
    from continual.methods import Joint

    folder = RunDir(tmp_path / "joint", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    results = run_resolved(make_continual_data(n_tasks=3), Joint(), CONFIG, folder)
    assert [entry["class_mean_drift"] for entry in results["representation"][0].values()] == [[], [], []]


def test_class_means():
    representation = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0]], dtype=torch.float64)
    means = class_means(representation, torch.tensor([0, 0, 2]), 3)
    assert means.tolist() == [[2.0, 1.0], [0.0, 0.0], [0.0, 5.0]]
