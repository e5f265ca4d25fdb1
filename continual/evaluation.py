"""What the loop measures after each task, and the run's end: accuracy, probes, spikes, costs, results.

After task ``i`` the test rows of every task ``j <= i`` fill ``R[i][j]`` (and each probe's matrix:
one modality removed or corrupted); one spiking pass over them gives the firing rates and SynOps;
the encoders' and the method's costs complete the energy estimate (``continual.energy``). At the
end the matrix is printed and results.json, acc_matrix.csv and acc_matrix.png are written.
"""

from __future__ import annotations

import time

import torch

from common import meter
from common.batching import batch_rows
from common.distributed import current as distributed
from common.paths import shown
from common.provenance import provenance
from common.runlog import RunLog
from continual.config import ContinualConfig
from continual.data import ContinualData, masked_logits, scenario_mask
from continual.energy import E_MAC, ENCODER_COST_ROWS, encoder_costs, inference_cost, spike_counts
from continual.methods.base import Context, Method
from continual.metrics import average_incremental_accuracy, empty_matrix, format_matrix, format_summary
from continual.outputs import cost_results, forward_transfer_results, probe_results, results_record, write_results
from continual.progress import Progress
from continual.representation import format_representations, representation_report
from continual.stream import Experience
from hlop.diagnostics import LayerEnergy, layer_report
from hlop.layers import layer_input_batches
from models.probes import Probe

EVAL_BATCH = 1024  # test rows per forward pass (a swap probe swaps within these batches)


@torch.no_grad()
def accuracy(
    model,
    data: ContinualData,
    rows: torch.Tensor,
    config: ContinualConfig,
    method: Method | None = None,
    batch_size: int = EVAL_BATCH,
    probe: Probe | None = None,
) -> float:
    """Test accuracy on ``rows``, of the inputs as they are or through a ``probe`` (``models.probes``).

    A method that is a test-time head (``Method.predict``) answers in place of the classifier.
    """
    return share_correct(predictions(model, data, rows, config, method, batch_size, probe), data.labels[rows])


def share_correct(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    return (predicted == labels).sum().item() / max(len(labels), 1)


def swap_either_share(predicted: torch.Tensor, data: ContinualData, rows: torch.Tensor, batch_size: int) -> float:
    """Under the swap probe, the share of ``rows`` answered (``predicted``, made in batches of ``batch_size``) with
    their own class or with the class of the row whose input they received: swapping the image and swapping the
    audio show the same mismatched pairs with opposite labels, so no fusion can be right on both; this share says
    whether it answers with either sensor's class."""
    own, other = data.labels[rows], data.labels[data.swap_partners(rows, batch_size)]
    return ((predicted == own) | (predicted == other)).sum().item() / max(len(rows), 1)


@torch.no_grad()
def predictions(model, data: ContinualData, rows: torch.Tensor, config: ContinualConfig, method: Method | None,
                batch_size: int = EVAL_BATCH, probe: Probe | None = None) -> torch.Tensor:  # fmt: skip
    """The predicted class of each of ``rows`` (through ``probe``; a test-time head answers where there is one)."""
    model.eval()
    context, answers = Context(model, data, config), []
    for batch in batch_rows(rows, batch_size):
        output = model(data.inputs(batch, probe))
        logits = method.predict(context, output) if method is not None else None
        logits = output.logits if logits is None else logits
        answers.append(masked_logits(logits.float(), scenario_mask(data, batch, config)).argmax(1))
    return torch.cat(answers) if answers else data.labels[:0]


@torch.no_grad()
def firing_rates(model, data: ContinualData, rows: torch.Tensor, batch_size: int = 1024) -> list[float]:
    """Each LIF layer's share of (timestep, neuron) pairs that spike on ``rows`` (the reference's -rate_stat)."""
    return rates_of(*spike_counts(model, data, rows, batch_size))


def rates_of(spiked: torch.Tensor, slots: torch.Tensor) -> list[float]:
    return [round(float(s / max(p, 1.0)), 6) for s, p in zip(spiked, slots, strict=True)]


def evaluate_task(progress: Progress, model, method: Method, data: ContinualData, experience: Experience,
                  config: ContinualConfig, log: RunLog, started: float, protection: float) -> None:  # fmt: skip
    """Fill the experience's row of the accuracy matrix (and probes, firing rates, costs), print and log it."""
    task, (loss, train_acc, val_acc) = experience.task, progress.training.summary
    for j in range(task + 1):
        progress.matrix[task][j] = accuracy(model, data, data.rows["test"][j], config, method)
        rows = data.rows["test"][j]
        for probe in data.probes:  # what each modality retains, and robustness
            predicted = predictions(model, data, rows, config, method, EVAL_BATCH, probe)
            progress.probe_matrices[probe.name][task][j] = share_correct(predicted, data.labels[rows])
            if probe.kind == "swap":  # which sensor's class the answer follows (either is defensible)
                either = progress.probe_matrices.setdefault(f"{probe.name}_either", empty_matrix(data.n_tasks))
                either[task][j] = swap_either_share(predicted, data, rows, EVAL_BATCH)
        if progress.val_matrix is not None:  # for choosing settings on the validation rows
            progress.val_matrix[task][j] = accuracy(model, data, data.rows["val"][j], config, method)
    progress.task_seconds.append(round(time.time() - started, 3))
    if progress.acc_at_init and task + 1 < data.n_tasks:  # the next task, before it is trained
        progress.acc_before_training.append(accuracy(model, data, data.rows["test"][task + 1], config, method))
    progress.task, progress.training = task + 1, None
    trained = (
        f"loss {loss:.4f}  train {train_acc * 100:.2f}%  val {val_acc * 100:.2f}%"
        if config.epochs_of(task)
        else "not trained (-later_lr 0)"
    )
    meter.diagnostic(f"task {task} ({experience.name}): {trained}  test {progress.matrix[task][task] * 100:.2f}%  "
                     f"({progress.task_seconds[-1]:.1f}s)")  # fmt: skip
    scores = {"ACC": sum(progress.matrix[task][: task + 1]) / (task + 1)}
    scores["avg_incremental_ACC"] = average_incremental_accuracy(progress.matrix[: task + 1])
    log.scalars("acc_matrix", scores, task)
    _spikes_and_costs(progress, model, data, experience, config, log, protection)
    progress.subspaces.append(subspace_reports(model, method, data, config, task))
    meter.diagnostic(*full_layer_warnings(progress.subspaces[-1], task, data.n_tasks))
    progress.representations.append(representation_report(model, data, task, progress.class_means))


def subspace_reports(model, method: Method, data: ContinualData, config: ContinualConfig, task: int) -> list[dict]:
    """For each layer a method protects, after ``task``: its directions and the share of the task's training-
    and test-row input energy outside them, beside an SVD's at as many directions (``hlop.diagnostics``)."""
    entries = method.subspaces_of(Context(model, data, config, task))
    if not entries:
        return []
    index = {name: i for i, name in enumerate(model.protected_names)}
    energies = {}
    for split in ("train", "test"):
        energies[split] = [LayerEnergy(e["basis"], e["quantize"]) for e in entries]
        batches = (data.inputs(rows) for rows in batch_rows(data.rows[split][task], 32))
        for inputs in layer_input_batches(model, batches):
            for entry, energy in zip(entries, energies[split], strict=True):
                energy.add(inputs[index[entry["layer"]]])
    return [
        layer_report(e["layer"], train, test, e["old_rows"])
        for e, train, test in zip(entries, energies["train"], energies["test"], strict=True)
    ]


def full_layer_warnings(reports: list[dict], task: int, n_tasks: int) -> list[str]:
    """A line for each protected layer whose subspace spans all its inputs after ``task``: every later task's
    update of that layer is projected to nothing, so those tasks learn without it (or not at all)."""
    if task + 1 >= n_tasks:
        return []
    mlp = "-hlop_threshold, -hlop_out_num_inc or -gpm_threshold"
    encoders = "-hlop_encoder_threshold, -hlop_encoder_sizes or -gpm_encoder_threshold"
    return [
        f"  warning: {r['layer']}'s protected subspace spans all {r['inputs']} of its inputs: tasks after {task} "
        f"cannot change this layer (keep fewer directions: {mlp if r['layer'] in MLP_LAYERS else encoders})"
        for r in reports
        if r["directions"] >= r["inputs"]
    ]


MLP_LAYERS = ("fc1", "fc2", "classifier")  # the spiking MLP's protected layers; the others are the encoders'


def format_subspaces(per_task: list[list[dict]]) -> list[str]:
    """One line per task: each protected layer's directions and the training energy outside (an SVD's)."""
    lines = []
    for task, reports in enumerate(per_task):
        if reports:
            layers = ", ".join(
                f"{r['layer']} {r['directions']}: {r['outside_train'] * 100:.2f}% ({r['outside_svd_train'] * 100:.2f}%)"
                for r in reports
            )
            lines.append(f"  after task {task}: {layers}")
    return lines


def _spikes_and_costs(progress: Progress, model, data: ContinualData, experience: Experience,
                      config: ContinualConfig, log: RunLog, protection: float) -> None:  # fmt: skip
    """Firing rates, SynOps and MACs per test sample after the task, and the protection's cost."""
    task = experience.task
    seen = torch.cat(data.rows["test"][: task + 1])
    spiked, slots = spike_counts(model, data, seen)  # one pass: firing rates and SynOps
    encoder_cost = data.encoder_macs, data.encoder_synops
    if model.encoder is not None:  # the encoders learn: counted as they are now (spiking ones' SynOps change)
        encoder_cost = encoder_costs(model.encoder, *data.inputs(seen[:ENCODER_COST_ROWS])[:2])
    cost = inference_cost(model, spiked, len(seen), encoder_cost[0], encoder_synops=encoder_cost[1])
    epochs = config.epochs_of(task)  # none after task 0 with -later_lr 0: nothing was protected, nothing is charged
    protection = protection if epochs else 0.0
    cost["protection_macs_per_training_sample"] = protection
    cost["protection_joules_per_training_sample"] = E_MAC * protection
    cost["protection_joules"] = E_MAC * protection * len(experience.train_rows) * epochs
    progress.costs.append(cost)
    per_sample = {"synops_per_sample": cost["synops"]["total"], "joules_per_sample": cost["energy_joules"]["total"]}
    log.scalars("energy", per_sample, task)
    rates = rates_of(spiked, slots)
    progress.firing_rates.append(rates)
    if config.rate_stat:
        shown_rates = "  ".join(f"sn{i + 1} {r:.4f}" for i, r in enumerate(rates))
        print(f"firing rates after task {task} (test rows of tasks 0..{task}): {shown_rates}", flush=True)
        log.scalars("firing_rate", {f"sn{i + 1}": r for i, r in enumerate(rates)}, task)


def finish_run(log: RunLog, progress: Progress, model, method: Method, data: ContinualData, config) -> dict:
    """Print the matrix, write results.json, acc_matrix.csv and .png; returns the results record."""
    dist = distributed()
    difference = _replica_difference(model, method)
    print(f"{method.name}: accuracy matrix (row: after training task i; column: test accuracy on task j)")
    print(format_matrix(progress.matrix))
    print(format_summary(progress.matrix), flush=True)
    for name, matrix in progress.probe_matrices.items():
        print(f"{name}: {format_summary(matrix)}", flush=True)
    if progress.val_matrix is not None:
        print(f"validation rows: {format_summary(progress.val_matrix)}", flush=True)
    if any(progress.subspaces):
        meter.diagnostic("protected subspaces: directions and the share of each task's training-row input energy "
                         "outside them (an SVD's at as many directions):", *format_subspaces(progress.subspaces))  # fmt: skip
    if progress.representations:
        meter.diagnostic("each layer's input: a fresh least-squares head's test accuracy on the tasks seen so far, "
                         "and each earlier task's class-mean drift (continual.representation):",
                         *format_representations(progress.representations))  # fmt: skip
    results = results_record(
        method.name,
        data.task_names,
        progress.matrix,
        config=log.settings,
        seconds=sum(progress.task_seconds),
        scenario=config.scenario,
        task_seconds=progress.task_seconds,
        memory_bytes=method.memory_bytes(),
        processes=dist.world,
        train_rows=sum(len(rows) for rows in data.rows["train"]),
        **probe_results(progress.probe_matrices),
        **probe_results({"val": progress.val_matrix} if progress.val_matrix is not None else {}),
        **cost_results(progress.costs),
        **forward_transfer_results(progress.acc_at_init, progress.acc_before_training),
        firing_rates=progress.firing_rates,
        subspaces=progress.subspaces,
        representation=progress.representations,
        provenance=provenance(str(data.device)),
    )
    if dist.enabled:
        results["replica_max_difference"] = difference
        print(f"replicas: {dist.world} processes hold the same network and method state (max difference "
              f"{difference:g})")  # fmt: skip
    if dist.main:
        write_results(log.folder, results)
    log.finish()
    if dist.main:
        folder = log.run.path
        print(f"results: {shown(folder / 'results.json')}  matrix: {shown(folder / 'acc_matrix.csv')}  plot: "
              f"{shown(folder / 'acc_matrix.png')}  curves: {shown(folder / 'tb')}", flush=True)  # fmt: skip
    dist.barrier()
    return results


def report_finished(log: RunLog, results: dict) -> dict:
    print(f"{shown(log.run.path)}: this run already finished; nothing to resume")
    print(format_matrix(results["acc_matrix"]) + "\n" + format_summary(results["acc_matrix"]))
    return results


def _replica_difference(model, method) -> float:
    from common.distributed import max_replica_difference

    return max_replica_difference([*model.state_dict().values(), *method.state_dict().values()])
