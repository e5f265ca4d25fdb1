"""The continual loop: the network learns the tasks one after another.

For each experience of the method's data stream (each task in turn; for joint training, all at
once): the method prepares (HLOP adds lateral rows), a fresh optimizer trains the network for
``epochs`` epochs (after task 0 only weight matrices learn; thresholds stay, as in the
reference), the method closes the task (HLOP merges its subspace), and the test accuracy on
every task seen so far fills the task's row of the accuracy matrix (``continual.evaluation``).
A checkpoint after every epoch lets ``-resume`` continue a killed run to the same matrix
(``continual.progress``). The methods act through the hooks of ``continual.methods.base``.

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

from common.distributed import current as distributed
from common.divergence import check_diverged, check_task_end
from common.epoch import CheckpointClock, EpochPosition, epoch_batches
from common.meter import ProgressMeter
from common.paths import shown
from common.rundir import RunDir
from common.runlog import RunLog
from common.seeding import seed_everything
from continual.config import ContinualConfig
from continual.data import ContinualData, masked_logits, scenario_mask
from continual.evaluation import accuracy, evaluate_task, finish_run, report_finished
from continual.methods.base import Context, Method
from continual.methods.compose import compose
from continual.metrics import empty_matrix
from continual.modes import EncoderMode
from continual.optim import make_optimizer, make_scheduler
from continual.progress import LAST, Progress, TaskTraining
from continual.resolve import require_resolved
from continual.stream import Experience, experiences
from models.end_to_end import EndToEndNet
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
    method = compose(methods)
    require_resolved(data.encoder_mode, config, method)
    settings = {**config.to_dict(), **info, "method": method.name}
    log = RunLog(
        run,
        settings,
        free=("checkpoint_every", "command", "preset"),
        defaults=ContinualConfig().to_dict() | {"encoders": "frozen"},
    )
    finished = log.finished("results.json", lambda results: results["config"])
    if finished is not None:
        return report_finished(log, finished)
    seed_everything(config.seed)
    model = build_model(data, config, device)
    method.hook("before_run", Context(model, data, config))
    shuffle = torch.Generator().manual_seed(config.seed)
    stream = experiences(data, method.stream)
    progress = _resume(log, model, method, shuffle, stream, data, config) or Progress(
        matrix=empty_matrix(data.n_tasks),
        probe_matrices={p.name: empty_matrix(data.n_tasks) for p in data.probes},
        val_matrix=empty_matrix(data.n_tasks) if all(len(rows) for rows in data.rows["val"]) else None,
    )
    if config.scenario == "task" and not progress.acc_at_init and method.stream == "sequential":
        # forward transfer needs every task's accuracy before it is learned, starting from the untrained network
        progress.acc_at_init = [accuracy(model, data, rows, config, method) for rows in data.rows["test"]]
        progress.acc_before_training = [progress.acc_at_init[0]]
    clock = CheckpointClock(config.checkpoint_every)

    def save_last() -> None:
        progress.save(log, LAST, model, method, shuffle)

    for experience in (e for e in stream if e.task >= progress.task):
        started = time.time()
        training = progress.training = progress.training or start_task(model, method, experience, data, config)
        for epoch in range(training.epochs_done + 1, config.epochs_of(experience.task) + 1):
            loss, train_acc = train_epoch(training, method, data, epoch, config, shuffle, clock, save_last)
            check_diverged(f"task {experience.task} epoch {epoch}", loss, data.n_classes, model, method,
                           keep=_kept(log, progress))  # fmt: skip
            training.scheduler.step()
            val_acc = accuracy(model, data, training.val_rows, config)  # the trained classifier's
            training.epochs_done, training.summary = epoch, (loss, train_acc, val_acc)
            log.scalars(f"task{experience.task}", dict(zip(SUMMARY, training.summary, strict=True)), epoch)
            save_last()
        ended = _end_task(model, method, data, config, experience, keep=_kept(log, progress))
        protection = method.protection_macs(ended)
        evaluate_task(progress, model, method, data, experience, config, log, started, protection)
        for name in (LAST, f"checkpoints/task{experience.task}.pt"):  # the latest state, and each task's end
            progress.save(log, name, model, method, shuffle)
    return finish_run(log, progress, model, method, data, config)


def build_model(data: ContinualData, config: ContinualConfig, device: torch.device) -> SpikingMLP | EndToEndNet:
    """The spiking MLP; with continual encoders, the whole network around it (the encoders copied)."""
    snn = SpikingMLP(
        data.feature_dim, data.n_classes, config.hidden, config.neuron, config.dsr_backward, config.feedback
    )
    if data.encoder_mode == EncoderMode.FROZEN:
        return snn.to(device)
    return EndToEndNet(copy.deepcopy(data.encoder), snn, data.input_scale, config.modality_dropout).to(device)


def start_task(model, method: Method, experience: Experience, data, config: ContinualConfig, prepare: bool = True):
    """A fresh optimizer for ``experience``, after the method prepares its task.

    ``prepare=False`` when resuming inside the task: the restored method state already includes it.
    """
    context = Context(model, data, config, experience.task, rows=experience.train_rows)
    if prepare:
        method.hook("before_task", context)
    freeze(model, method, context)
    if experience.task > 0:  # e.g. Adam learns task 0, SGD keeps projections exact
        config = config.for_later_tasks()
    learns = [p for p in model.parameters() if p.requires_grad and (experience.task == 0 or p.dim() > 1)]
    in_encoder = {id(p) for p in model.encoder_parameters()}
    params = learns
    if in_encoder:  # the encoders learn at their own rate
        params = [
            {"params": [p for p in learns if id(p) not in in_encoder]},
            {"params": [p for p in learns if id(p) in in_encoder], "lr": config.encoder_lr, **encoder_extra(config)},
        ]
    optimizer = make_optimizer(params, config)
    network = DistributedDataParallel(model) if distributed().enabled else model
    return TaskTraining(
        experience.task,
        optimizer,
        make_scheduler(optimizer, config),
        network,
        experience.train_rows,
        experience.val_rows,
        model=model,
    )


def encoder_extra(config: ContinualConfig) -> dict:
    """The encoders' own optimizer settings: SGD's momentum (a sum of projected gradients stays projected)."""
    return {"momentum": config.encoder_momentum} if config.opt == "SGD" else {}


def freeze(model, method: Method, context: Context) -> None:
    """What stays fixed while a task is learned: after task 0 the thresholds (as the reference) and the
    normalisation statistics, and what the method says."""
    if context.task > 0:
        for neuron in model.neurons:
            neuron.vth.requires_grad_(False)
        model.fix_norm()
    method.hook("before_optimizer", context)


def train_epoch(training: TaskTraining, method: Method, data: ContinualData, epoch: int, config, shuffle,
                clock: CheckpointClock | None = None, save_inside=None):  # fmt: skip
    """One pass over the task's training rows; returns (mean loss, train accuracy) over all processes.

    Every process draws the same global batches and trains on its share. An epoch that stopped
    inside (``training.position``) continues where it stopped; when ``clock`` says so,
    ``save_inside()`` checkpoints with ``training.position`` set.
    """
    model, task = training.model, training.task
    context = Context(model, data, config, task, epoch)
    context.projector = method.projector(context)
    training.network.train()
    model.record_encoder_inputs(method.needs_encoder_inputs)
    before, batches, done = epoch_batches(training.rows, config.batch_size, shuffle, training.position)
    sums = training.position.sums if training.position is not None else [0.0, 0.0]
    stats = torch.tensor(sums, dtype=torch.float32, device=data.device)  # summed loss, correct predictions
    rows_done = sum(len(b) for b in batches[:done])
    meter = ProgressMeter(len(training.rows), f"task {task} epoch {epoch}/{config.epochs}", done=rows_done)
    for index, batch in enumerate(batches[done:], done):
        stats += train_step(training, method, replace(context, rows=batch))
        rows_done += len(batch)
        meter.update(len(batch), loss=lambda s=stats, seen=rows_done: s[0].item() / seen)
        if clock is not None and save_inside is not None and index + 1 < len(batches) and clock.due():
            training.position = EpochPosition(before, index + 1, stats.tolist())
            save_inside()
    meter.close()
    model.record_encoder_inputs(False)
    training.position = None
    distributed().all_reduce(stats)
    return (stats[0] / len(training.rows)).item(), (stats[1] / len(training.rows)).item()


def train_step(training: TaskTraining, method: Method, context: Context) -> torch.Tensor:
    """One optimizer step on this process's share of ``context.rows``; returns (loss sum, correct) of the share.

    The loss is the process's share of the global batch's mean (times the number of processes,
    which DDP's averaging divides out); rows a method mixes in (``extend_batch``) count in the
    mean, not in the returned statistics, which are the task's own rows'.
    """
    dist, data, batch = distributed(), context.data, context.rows
    own = dist.shard(batch)
    local = method.extend_batch(context, own)
    labels = data.labels[local]
    inputs = data.training_inputs(local, context.config.modality_dropout)
    output = training.network(inputs, context.projector, keep_spikes=method.needs_spikes)
    class_mask = method.class_mask(context, local, scenario_mask(data, local, context.config))
    logits = masked_logits(output.logits.float(), class_mask)
    loss_sum = F.cross_entropy(logits, labels, reduction="sum")
    loss = loss_sum / (len(batch) * len(local) / len(own)) * dist.world
    context.output, context.batch_size = output, len(batch)
    penalty = method.penalty(context)
    training.optimizer.zero_grad(set_to_none=True)
    (loss if penalty is None else loss + penalty).backward()
    method.hook("after_backward", context)
    training.optimizer.step()
    method.hook("after_optimizer_step", context)
    if len(local) > len(own):
        n = len(own)
        loss_sum, logits, labels = F.cross_entropy(logits[:n], labels[:n], reduction="sum"), logits[:n], labels[:n]
    return torch.stack([loss_sum.detach(), (logits.argmax(1) == labels).sum().float()])


def _end_task(model, method: Method, data, config, experience: Experience, keep: str) -> Context:
    """The methods' task-end work, then a check that it left every state finite (before evaluation or a checkpoint)."""
    ended = Context(model, data, config, experience.task, rows=experience.train_rows)
    method.hook("after_task", ended)
    check_task_end(f"the end of task {experience.task}", model, list(getattr(method, "methods", [method])), keep)
    return ended


def _kept(log: RunLog, progress: Progress) -> str:
    """What the last checkpoint holds, for the divergence message."""
    t = progress.training
    if t.epochs_done:
        return f"{shown(log.folder / LAST)} holds the last good state (epoch {t.epochs_done} of task {t.task})"
    if progress.task > 0:
        return f"{shown(log.folder / LAST)} holds the last good state (the end of task {progress.task - 1})"
    return "nothing had been checkpointed yet"


def _resume(log: RunLog, model, method: Method, shuffle, stream: list[Experience], data, config) -> Progress | None:
    by_task = {e.task: e for e in stream}
    progress = Progress.restore(
        log, model, method, shuffle, lambda t: start_task(model, method, by_task[t], data, config, False)
    )
    if progress is not None:
        print(f"resuming {shown(log.run.path)} after {progress.where()}", flush=True)
    return progress
