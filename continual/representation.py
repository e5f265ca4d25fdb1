"""Why a class-incremental head forgets: how far the representation of old classes moved, and how much
of the classes seen so far a fresh least-squares head could still tell apart on it.

After each task, on each input of the spiking MLP's layers: the fused feature (fc1's), the first hidden
layer's weighted rate (fc2's) and the last hidden representation (the classifier's, which the
``-head analytic|ncm`` heads read), and with learning encoders each modality's embedding, so that a
run says at which layer the old classes moved or merged:

- ``linear_probe_acc``: the test accuracy, over the tasks seen so far, of a ridge least-squares head
  fitted afresh on the current network's representations of every seen task's training rows (the
  ``-head analytic`` solution if its statistics were up to date). A diagnostic that reads the old
  tasks' rows from the dataset, not a method: nothing it computes reaches training or a head. Below
  the run's own accuracy it says the head is fine and the representation is the limit; above it, the
  head's statistics (or the trained classifier) went stale while the representation moved.
- ``class_mean_drift``: for each earlier task, ``|mu_now - mu_then| / |mu_then|`` averaged over its
  classes, where ``mu`` is a class's mean representation on its training rows when its task ended and
  now: how far the layers below moved the old classes (0: not at all; 1: as far as the mean's length).

- ``features`` (learning encoders): every modality encoder's features, concatenated, as ``-head_input features``
  reads them (``models.encoders``).
- ``fusion_weights`` (learning encoders with a weighting fusion): each seen task's training rows' mean
  fusion weight per modality, after this task: a fusion that moves its weights between modalities
  moves the fused feature even where each encoder holds still.

The class means at each task's end are kept (classes x hidden width per task, in the checkpoint) so that a
resumed run reports the same drift.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.batching import batch_rows
from continual.data import ContinualData
from continual.methods.heads import RIDGE  # the analytic head's, for rows of unit mean squared norm

LAYERS = (
    "fused",
    "hidden1",
    "hidden2",
)  # the spiking MLP's layer inputs: fc1's (the fused feature), fc2's, the classifier's


@torch.no_grad()
def layer_representations(model, data: ContinualData, rows: torch.Tensor, batch_size: int = 256) -> dict:
    """Each of ``LAYERS`` on ``rows`` (rows, width), float64, in eval mode; with learning encoders also each
    modality's embedding (``image``, ``audio``) and the fusion's weights (``fusion_weights``, rows x modalities)."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in batch_rows(rows, batch_size):
        inputs = data.inputs(batch)
        for name, value in zip(LAYERS, model(inputs).layer_inputs, strict=True):
            parts.setdefault(name, []).append(value)
        if model.encoder is not None:
            embeddings, features = model.encoder.encode(*inputs[:2])
            for name, value in embeddings.items():
                parts.setdefault(name, []).append(value)
            parts.setdefault("features", []).append(torch.cat(list(features.values()), 1))
            weights = model.encoder.fuse(embeddings)[1]
            if weights is not None:
                parts.setdefault("fusion_weights", []).append(weights)
    return {name: torch.cat(values).double() for name, values in parts.items()}


def ridge_accuracy(train: torch.Tensor, train_labels, test: torch.Tensor, test_labels, classes: torch.Tensor,
                   ridge: float = RIDGE, reference: torch.Tensor | None = None) -> float:  # fmt: skip
    """Accuracy on ``test`` of the ridge least-squares fit to one-hot labels on ``train``, answering only over
    ``classes``; both are scaled so that the ``reference`` rows (default ``train``; the analytic head's: task
    0's) have unit mean squared norm."""
    reference = train if reference is None else reference
    scale = reference.pow(2).sum(1).mean().clamp(min=1e-12).rsqrt()  # as the analytic head scales its rows
    train, test = train * scale, test * scale
    targets = F.one_hot(train_labels, len(classes)).double()
    gram = train.t() @ train + ridge * torch.eye(train.shape[1], dtype=train.dtype, device=train.device)
    weight = torch.linalg.solve(gram, train.t() @ targets)
    logits = (test @ weight).masked_fill(~classes, float("-inf"))
    return (logits.argmax(1) == test_labels).double().mean().item()


def class_means(representation: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    sums = torch.zeros(n_classes, representation.shape[1], dtype=representation.dtype, device=representation.device)
    sums.index_add_(0, labels, representation)
    counts = torch.bincount(labels, minlength=n_classes).clamp(min=1).to(sums)
    return sums / counts[:, None]


@torch.no_grad()
def representation_report(model, data: ContinualData, task: int, saved_means: dict[str, torch.Tensor]) -> dict:
    """After ``task``, for each of ``LAYERS``: ``linear_probe_acc`` and, per earlier task trained before,
    ``class_mean_drift``; keeps the class means in ``saved_means[f"{layer}/{task}"]`` ((classes, width), the
    checkpointed state). A joint run trains every task in one experience: it has no earlier task to drift from."""
    train_rows, test_rows = torch.cat(data.rows["train"][: task + 1]), torch.cat(data.rows["test"][: task + 1])
    seen = data.task_masks[: task + 1].any(0)
    train_labels, test_labels = data.labels[train_rows], data.labels[test_rows]
    report = {}
    train_all, test_all = layer_representations(model, data, train_rows), layer_representations(model, data, test_rows)
    for layer in (name for name in train_all if name != "fusion_weights"):
        train, test = train_all[layer], test_all[layer]
        means = class_means(train, train_labels, data.n_classes)
        drift = []
        for earlier in (t for t in range(task) if f"{layer}/{t}" in saved_means):
            classes = torch.tensor(data.task_classes[earlier], device=means.device)
            then = saved_means[f"{layer}/{earlier}"].to(means)[classes]
            spiking = then.norm(dim=1) > 1e-6  # a class mean of a silent layer has no direction to drift from
            moved = (means[classes] - then).norm(dim=1)[spiking] / then.norm(dim=1)[spiking]
            drift.append(round(moved.mean().item(), 4) if len(moved) else None)
        saved_means[f"{layer}/{task}"] = means.float().cpu()
        first = train[: len(data.rows["train"][0])]  # task 0's rows come first: the head's scale
        probe = ridge_accuracy(train, train_labels, test, test_labels, seen, reference=first)
        report[layer] = {"linear_probe_acc": round(probe, 4), "class_mean_drift": drift}
    if "fusion_weights" in train_all:  # each seen task's mean fusion weight per modality, now
        task_of = data.row_task[train_rows]
        weights = train_all["fusion_weights"]
        report["fusion_weights"] = [
            [round(w, 4) for w in weights[task_of == t].mean(0).tolist()] for t in range(task + 1)
        ]
    return report


def format_representations(reports: list[dict]) -> list[str]:
    """One line per task and layer: the fresh least-squares head's accuracy and each earlier task's drift."""
    lines = []
    for task, report in enumerate(reports):
        for layer, entry in report.items():
            if layer == "fusion_weights":
                lines.append(f"  after task {task}, fusion weights of each task's rows: {entry}")
                continue
            drift = ", ".join("n/a (silent)" if d is None else f"{d:.3f}" for d in entry["class_mean_drift"]) or "-"
            lines.append(f"  after task {task}, {layer}: linear probe {entry['linear_probe_acc'] * 100:.1f}%  "
                         f"drift {drift}")  # fmt: skip
    return lines
