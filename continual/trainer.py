"""The continual loop: the spiking MLP learns the tasks one after another.

For each experience of the method's data stream (each task in turn; for joint training, all at
once): the method prepares (HLOP adds lateral rows), a fresh optimizer trains the network for
``epochs`` epochs (after task 0 only weight matrices learn; thresholds stay, as in the
reference), the method closes the task (HLOP merges its subspace), and the test accuracy on
every task seen so far fills the task's row of the accuracy matrix. A checkpoint after every
epoch lets ``-resume`` continue a killed run to the same matrix (``continual.progress``).

Under torchrun each process trains on its share of every batch; DDP sums the gradients and the
methods sum their statistics over processes, so all processes keep identical networks. Only
rank 0 writes files.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from common.batching import batch_rows
from common.distributed import current as distributed
from common.divergence import check_diverged
from common.epoch import CheckpointClock, EpochPosition, epoch_batches
from common.errors import UserError
from common.meter import ProgressMeter
from common.paths import shown
from common.rundir import RunDir
from common.runlog import RunLog
from common.seeding import seed_everything
from continual.config import SCENARIOS, ContinualConfig
from continual.data import ContinualData, masked_logits, scenario_mask
from continual.energy import E_MAC, ENCODER_COST_ROWS, encoder_costs, inference_cost, spike_counts
from continual.methods.base import Method, TaskContext
from continual.methods.compose import compose
from continual.metrics import average_incremental_accuracy, empty_matrix, format_matrix, format_summary
from continual.optim import make_optimizer, make_scheduler
from continual.outputs import (
    cost_results,
    forward_transfer_results,
    probe_results,
    results_record,
    write_results,
)
from continual.progress import LAST, Progress, TaskTraining
from continual.stream import Experience, experiences
from models.end_to_end import EndToEndNet
from models.probes import Probe
from models.spiking_mlp import SpikingMLP

SUMMARY = ("train_loss", "train_acc", "val_acc")


def run_continual(
    data: ContinualData,
    methods: Method | list[Method],
    config: ContinualConfig,
    run: RunDir,
    device: torch.device,
    info: dict,
) -> dict:
    """Train every task in order, fill the accuracy matrix, write the outputs; returns results.json's record."""
    if config.scenario not in SCENARIOS:
        raise UserError(f"-scenario {config.scenario}: expected one of {', '.join(SCENARIOS)}")
    method = compose(methods)
    settings = {**config.to_dict(), **info, "method": method.name}
    log = RunLog(
        run, settings, free=("checkpoint_every",), defaults=ContinualConfig().to_dict() | {"encoders": "frozen"}
    )
    finished = log.finished("results.json", lambda results: results["config"])
    if finished is not None:
        return _report_finished(log, finished)
    seed_everything(config.seed)
    model = build_model(data, config, device)
    method.prepare(model)
    shuffle = torch.Generator().manual_seed(config.seed)
    stream = experiences(data, method.stream)
    progress = _resume(log, model, method, shuffle, stream, config) or Progress(
        matrix=empty_matrix(data.n_tasks), probe_matrices={p.name: empty_matrix(data.n_tasks) for p in data.probes}
    )
    if config.scenario == "task" and not progress.acc_at_init and method.stream == "sequential":
        # forward transfer needs every task's accuracy before it is learned, starting from the untrained network
        progress.acc_at_init = [accuracy(model, data, rows, config) for rows in data.rows["test"]]
        progress.acc_before_training = [progress.acc_at_init[0]]
    clock = CheckpointClock(config.checkpoint_every)

    def save_last() -> None:
        progress.save(log, LAST, model, method, shuffle)

    for experience in (e for e in stream if e.task >= progress.task):
        started = time.time()
        training = progress.training = progress.training or start_task(model, method, experience, config)
        for epoch in range(training.epochs_done + 1, config.epochs + 1):
            loss, train_acc = train_epoch(training, method, data, epoch, config, shuffle, clock, save_last)
            where = f"task {experience.task} epoch {epoch}"
            check_diverged(where, loss, data.n_classes, model, method, keep=_kept(log, progress))
            training.scheduler.step()
            val_acc = accuracy(model, data, training.val_rows, config)
            training.epochs_done, training.summary = epoch, (loss, train_acc, val_acc)
            log.scalars(f"task{experience.task}", dict(zip(SUMMARY, training.summary, strict=True)), epoch)
            save_last()
        protection = method.protection_macs(model, experience.task)  # with the task's subspace sizes
        method.after_task(TaskContext(model, experience.task, data, data.rows["train"][experience.task], config))
        _end_task(progress, model, data, experience, config, log, started, protection)
        for name in (LAST, f"checkpoints/task{experience.task}.pt"):  # the latest state, and each task's end
            progress.save(log, name, model, method, shuffle)
    return _finish(log, progress, model, method, data, config)


def build_model(data: ContinualData, config: ContinualConfig, device: torch.device) -> SpikingMLP | EndToEndNet:
    """The spiking MLP; with continual encoders, the whole network around it (the encoders copied)."""
    snn = SpikingMLP(
        data.feature_dim, data.n_classes, config.hidden, config.neuron, config.dsr_backward, config.feedback
    )
    if not data.continual_encoders:
        return snn.to(device)
    return EndToEndNet(copy.deepcopy(data.encoder), snn, data.input_scale, config.modality_dropout).to(device)


def start_task(model, method: Method, experience: Experience, config: ContinualConfig, prepare: bool = True):
    """A fresh optimizer for ``experience``, after the method prepares its task.

    ``prepare=False`` when resuming inside the task: the restored method state already includes it.
    """
    if prepare:
        method.before_task(experience.task, model)
    freeze(model, method, experience.task)
    if experience.task > 0 and config.later_opt is not None:  # e.g. Adam learns task 0, SGD keeps projections exact
        lr = config.later_lr or config.lr
        config = replace(config, opt=config.later_opt, lr=lr, encoder_lr=config.later_lr or config.encoder_lr)
    learns = [p for p in model.parameters() if p.requires_grad and (experience.task == 0 or p.dim() > 1)]
    if isinstance(model, EndToEndNet):  # the encoders learn at their own rate
        in_encoder = {id(p) for p in model.encoder.parameters()}
        params = [
            {"params": [p for p in learns if id(p) not in in_encoder]},
            {"params": [p for p in learns if id(p) in in_encoder], "lr": config.encoder_lr, **encoder_extra(config)},
        ]
    else:
        params = learns
    optimizer = make_optimizer(params, config)
    network = DistributedDataParallel(model) if distributed().enabled else model
    return TaskTraining(
        experience.task,
        optimizer,
        make_scheduler(optimizer, config),
        network,
        experience.train_rows,
        experience.val_rows,
    )


def encoder_extra(config: ContinualConfig) -> dict:
    """The encoders' own optimizer settings: SGD's momentum (a sum of projected gradients stays projected)."""
    return {"momentum": config.encoder_momentum} if config.opt == "SGD" else {}


def freeze(model: SpikingMLP, method: Method, task: int) -> None:
    """What stays fixed while ``task`` is learned: after task 0 the thresholds (as the reference), and what the method says."""
    if task > 0:
        for neuron in model.neurons:
            neuron.vth.requires_grad_(False)
        if isinstance(model, EndToEndNet):
            model.fix_norm()
    method.freeze(model, task)


def train_epoch(
    training: TaskTraining,
    method: Method,
    data: ContinualData,
    epoch: int,
    config,
    shuffle,
    clock: CheckpointClock | None = None,
    save_inside=None,
):
    """One pass over the task's training rows; returns (mean loss, train accuracy) over all processes.

    Every process draws the same global batches and trains on its share; the loss is its share
    of the global batch's mean (times the number of processes, which DDP's averaging divides out).
    An epoch that stopped inside (``training.position``) continues where it stopped; when
    ``clock`` says so, ``save_inside()`` checkpoints with ``training.position`` set.
    """
    dist = distributed()
    device = data.device
    network, optimizer, rows, task = training.network, training.optimizer, training.rows, training.task
    projector = method.projector(task)
    model = getattr(network, "module", network)
    network.train()
    if isinstance(model, EndToEndNet):
        model.record_encoder_inputs(method.needs_encoder_inputs)
    before, batches, done = epoch_batches(rows, config.batch_size, shuffle, training.position)
    sums = training.position.sums if training.position is not None else [0.0, 0.0]
    stats = torch.tensor(sums, dtype=torch.float32, device=device)  # summed loss, correct predictions
    rows_done = sum(len(b) for b in batches[:done])
    meter = ProgressMeter(len(rows), f"task {task} epoch {epoch}/{config.epochs}", done=rows_done)
    for index, batch in enumerate(batches[done:], done):
        local = dist.shard(batch)
        labels = data.labels[local]
        output = network(data.inputs(local), projector, keep_spikes=method.needs_spikes)
        logits = masked_logits(output.logits.float(), scenario_mask(data, local, config))
        loss_sum = F.cross_entropy(logits, labels, reduction="sum")
        loss = loss_sum / len(batch) * dist.world
        penalty = method.penalty(model)
        optimizer.zero_grad(set_to_none=True)
        (loss if penalty is None else loss + penalty).backward()
        method.before_step(model, task)
        optimizer.step()
        method.after_update(model, task)
        method.after_step(output, task, epoch, len(batch))
        stats += torch.stack([loss_sum.detach(), (logits.argmax(1) == labels).sum().float()])
        rows_done += len(batch)
        meter.update(len(batch), loss=lambda s=stats, seen=rows_done: s[0].item() / seen)
        if clock is not None and save_inside is not None and index + 1 < len(batches) and clock.due():
            training.position = EpochPosition(before, index + 1, stats.tolist())
            save_inside()
    meter.close()
    if isinstance(model, EndToEndNet):
        model.record_encoder_inputs(False)
    training.position = None
    dist.all_reduce(stats)
    return (stats[0] / len(rows)).item(), (stats[1] / len(rows)).item()


@torch.no_grad()
def accuracy(
    model: SpikingMLP,
    data: ContinualData,
    rows: torch.Tensor,
    config: ContinualConfig,
    batch_size: int = 1024,
    probe: Probe | None = None,
) -> float:
    """Test accuracy on ``rows``, of the inputs as they are or through a ``probe`` (``models.probes``)."""
    model.eval()
    device = data.device
    correct = torch.zeros((), dtype=torch.long, device=device)
    for batch in batch_rows(rows, batch_size):
        logits = model(data.inputs(batch, probe)).logits
        predicted = masked_logits(logits.float(), scenario_mask(data, batch, config)).argmax(1)
        correct += (predicted == data.labels[batch]).sum()
    return correct.item() / max(len(rows), 1)


@torch.no_grad()
def firing_rates(model: SpikingMLP, data: ContinualData, rows: torch.Tensor, batch_size: int = 1024) -> list[float]:
    """Each LIF layer's share of (timestep, neuron) pairs that spike on ``rows`` (the reference's -rate_stat)."""
    return rates_of(*spike_counts(model, data, rows, batch_size))


def rates_of(spiked: torch.Tensor, slots: torch.Tensor) -> list[float]:
    return [round(float(s / max(p, 1.0)), 6) for s, p in zip(spiked, slots, strict=True)]


def _kept(log: RunLog, progress: Progress) -> str:
    """What the last checkpoint holds, for the divergence message."""
    t = progress.training
    if t.epochs_done:
        return f"{shown(log.folder / LAST)} holds the last good state (epoch {t.epochs_done} of task {t.task})"
    if progress.task > 0:
        return f"{shown(log.folder / LAST)} holds the last good state (the end of task {progress.task - 1})"
    return "nothing had been checkpointed yet"


def _resume(log: RunLog, model, method: Method, shuffle, stream: list[Experience], config) -> Progress | None:
    by_task = {e.task: e for e in stream}
    progress = Progress.restore(
        log, model, method, shuffle, lambda t: start_task(model, method, by_task[t], config, False)
    )
    if progress is not None:
        print(f"resuming {shown(log.run.path)} after {progress.where()}", flush=True)
    return progress


def _end_task(
    progress: Progress, model, data: ContinualData, experience: Experience, config, log: RunLog, started, protection
):
    """Fill the experience's row of the accuracy matrix (and probes, firing rates, costs), print and log it."""
    task, (loss, train_acc, val_acc) = experience.task, progress.training.summary
    for j in range(task + 1):
        progress.matrix[task][j] = accuracy(model, data, data.rows["test"][j], config)
        for probe in data.probes:  # what each modality retains, and robustness
            progress.probe_matrices[probe.name][task][j] = accuracy(
                model, data, data.rows["test"][j], config, probe=probe
            )
    progress.task_seconds.append(round(time.time() - started, 3))
    if progress.acc_at_init and task + 1 < data.n_tasks:  # the next task, before it is trained
        progress.acc_before_training.append(accuracy(model, data, data.rows["test"][task + 1], config))
    progress.task, progress.training = task + 1, None
    print(
        f"task {task} ({experience.name}): loss {loss:.4f}  train {train_acc:.4f}  val {val_acc:.4f}  "
        f"test {progress.matrix[task][task]:.4f}  ({progress.task_seconds[-1]:.1f}s)",
        flush=True,
    )
    so_far = progress.matrix[: task + 1]
    log.scalars(
        "acc_matrix",
        {
            "ACC": sum(progress.matrix[task][: task + 1]) / (task + 1),
            "avg_incremental_ACC": average_incremental_accuracy(so_far),
        },
        task,
    )
    seen = torch.cat(data.rows["test"][: task + 1])
    spiked, slots = spike_counts(model, data, seen)  # one pass: firing rates and SynOps
    encoder_cost = data.encoder_macs, data.encoder_synops
    if isinstance(model, EndToEndNet):  # the encoders learn: counted as they are now (spiking ones' SynOps change)
        encoder_cost = encoder_costs(model.encoder, *data.inputs(seen[:ENCODER_COST_ROWS])[:2])
    cost = inference_cost(model, spiked, len(seen), encoder_cost[0], encoder_synops=encoder_cost[1])
    cost |= {
        "protection_macs_per_training_sample": protection,
        "protection_joules_per_training_sample": E_MAC * protection,
    }
    cost["protection_joules"] = (
        cost["protection_joules_per_training_sample"] * len(experience.train_rows) * config.epochs
    )
    progress.costs.append(cost)
    log.scalars(
        "energy",
        {"synops_per_sample": cost["synops"]["total"], "joules_per_sample": cost["energy_joules"]["total"]},
        task,
    )
    rates = rates_of(spiked, slots)
    progress.firing_rates.append(rates)
    if config.rate_stat:
        print(
            f"firing rates after task {task} (test rows of tasks 0..{task}): "
            + "  ".join(f"sn{i + 1} {r:.4f}" for i, r in enumerate(rates)),
            flush=True,
        )
        log.scalars("firing_rate", {f"sn{i + 1}": r for i, r in enumerate(rates)}, task)


def _finish(log: RunLog, progress: Progress, model, method: Method, data: ContinualData, config) -> dict:
    """Print the matrix, write results.json, acc_matrix.csv and .png; returns the results record."""
    dist = distributed()
    difference = _replica_difference(model, method)
    print(f"{method.name}: accuracy matrix (row: after training task i; column: test accuracy on task j)")
    print(format_matrix(progress.matrix))
    print(format_summary(progress.matrix), flush=True)
    for name, matrix in progress.probe_matrices.items():
        print(f"{name}: {format_summary(matrix)}", flush=True)
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
        **cost_results(progress.costs),
        **forward_transfer_results(progress.acc_at_init, progress.acc_before_training),
        firing_rates=progress.firing_rates,
    )
    if dist.enabled:
        results["replica_max_difference"] = difference
        print(
            f"replicas: {dist.world} processes hold the same network and method state (max difference {difference:g})"
        )
    if dist.main:
        write_results(log.folder, results)
    log.finish()
    dist.barrier()
    return results


def _report_finished(log: RunLog, results: dict) -> dict:
    print(f"{shown(log.run.path)}: this run already finished; nothing to resume")
    print(format_matrix(results["acc_matrix"]) + "\n" + format_summary(results["acc_matrix"]))
    return results


def _replica_difference(model, method) -> float:
    from common.distributed import max_replica_difference

    return max_replica_difference([*model.state_dict().values(), *method.state_dict().values()])
