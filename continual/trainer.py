"""The continual loop: the spiking MLP learns the tasks one after another.

For each task: the method prepares (HLOP adds lateral rows), a fresh optimizer trains the
network for ``epochs`` epochs on the task's training rows (after task 0 only weight matrices
learn; thresholds stay, as in the reference), the method closes the task (HLOP merges its
subspace), and the test accuracy on every task seen so far fills row ``task`` of the accuracy
matrix.

After every epoch a progress checkpoint holds everything needed to go on (model, method state
with the Hebbian weights and their momentum, optimizer, scheduler, RNG states), so ``-resume``
continues a killed run from its last finished epoch and ends with the same matrix.

Under torchrun each process trains on its share of every batch; DDP sums the gradients and the
methods sum their statistics over processes, so all processes keep identical networks. Only
rank 0 writes files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from common import atomic
from common.batching import batch_rows
from common.checkpoint import load_checkpoint, load_weights
from common.distributed import current as distributed
from common.errors import UserError
from common.paths import shown
from common.rng import rng_state, set_rng_state
from common.rundir import RunDir
from common.seeding import seed_everything
from continual.config import SCENARIOS, ContinualConfig
from continual.data import ContinualData, masked_logits, scenario_mask
from continual.methods.base import Method, TaskContext
from continual.metrics import empty_matrix, format_matrix, format_summary
from continual.optim import make_optimizer, make_scheduler
from continual.outputs import results_record, write_results
from models.spiking_mlp import SpikingMLP

LAST = "last.pt"


def build_model(data: ContinualData, config: ContinualConfig, device: torch.device) -> SpikingMLP:
    return SpikingMLP(
        data.features.shape[1], data.n_classes, config.hidden, config.neuron, config.dsr_backward, config.feedback
    ).to(device)


@torch.no_grad()
def accuracy(
    model: SpikingMLP, data: ContinualData, rows: torch.Tensor, config: ContinualConfig, batch_size: int = 1024
) -> float:
    model.eval()
    device = data.features.device
    correct = torch.zeros((), dtype=torch.long, device=device)
    for batch in batch_rows(rows, batch_size):
        logits = model(data.features[batch]).logits
        predicted = masked_logits(logits.float(), scenario_mask(data, batch, config)).argmax(1)
        correct += (predicted == data.labels[batch]).sum()
    return correct.item() / max(len(rows), 1)


@torch.no_grad()
def firing_rates(model: SpikingMLP, data: ContinualData, rows: torch.Tensor, batch_size: int = 1024) -> list[float]:
    """Each LIF layer's share of (timestep, neuron) pairs that spike on ``rows`` (the reference's -rate_stat)."""
    model.eval()
    spiked = torch.zeros(len(model.neurons), dtype=torch.float64)
    for batch in batch_rows(rows, batch_size):
        trains = model(data.features[batch], keep_spikes=True).layer_spikes
        spiked += torch.stack([(spikes > 0).sum().double().cpu() for spikes in trains])
    counts = [len(rows) * config.timesteps * layer.out_features for config, layer in _neuron_layers(model)]
    return [round(float(s) / max(c, 1), 6) for s, c in zip(spiked, counts, strict=True)]


def _neuron_layers(model: SpikingMLP):
    """Each LIF layer's config with the linear layer that drives it."""
    return [(model.sn1.config, model.fc1), (model.sn2.config, model.fc2)]


@dataclass
class TaskTraining:
    """A task being learned: its optimizer, schedule, the (possibly DDP-wrapped) network and rows."""

    task: int
    optimizer: torch.optim.Optimizer
    scheduler: object
    network: torch.nn.Module  # the model, or DDP around it
    rows: torch.Tensor
    val_rows: torch.Tensor
    epochs_done: int = 0
    summary: tuple = (0.0, 0.0, 0.0)


def freeze(model: SpikingMLP, method: Method, task: int) -> None:
    """What stays fixed while ``task`` is learned: after task 0 the thresholds (as the reference), and what the method says."""
    if task > 0:
        for neuron in model.neurons:
            neuron.vth.requires_grad_(False)
    method.freeze(model, task)


def start_task(model, method: Method, task: int, data: ContinualData, config: ContinualConfig, prepare: bool = True):
    """A fresh optimizer for ``task`` (a joint method: for all tasks at once), after the method prepares it.

    ``prepare=False`` when resuming inside the task: the restored method state already includes it.
    """
    if prepare:
        method.before_task(task, model)
    freeze(model, method, task)
    params = [p for p in model.parameters() if p.requires_grad and (task == 0 or p.dim() > 1)]
    optimizer = make_optimizer(params, config)
    network = DistributedDataParallel(model) if distributed().enabled else model
    rows = data.all_train_rows() if method.joint else data.rows["train"][task]
    val_rows = torch.cat(data.rows["val"]) if method.joint else data.rows["val"][task]
    return TaskTraining(task, optimizer, make_scheduler(optimizer, config), network, rows, val_rows)


def train_epoch(network, method: Method, data: ContinualData, task: int, epoch: int, optimizer, config, shuffle, rows):
    """One pass over ``rows``; returns (mean loss, train accuracy) over all processes.

    Every process draws the same global batches and trains on its share; the loss is its share
    of the global batch's mean (times the number of processes, which DDP's averaging divides out).
    """
    dist = distributed()
    device = data.features.device
    projector = method.projector(task)
    model = getattr(network, "module", network)
    network.train()
    stats = torch.zeros(2, device=device)  # summed loss, correct predictions
    for batch in batch_rows(rows, config.batch_size, shuffle):
        local = dist.shard(batch)
        labels = data.labels[local]
        output = network(data.features[local], projector, keep_spikes=method.needs_spikes)
        logits = masked_logits(output.logits.float(), scenario_mask(data, local, config))
        loss_sum = F.cross_entropy(logits, labels, reduction="sum")
        loss = loss_sum / len(batch) * dist.world
        penalty = method.penalty(model)
        optimizer.zero_grad(set_to_none=True)
        (loss if penalty is None else loss + penalty).backward()
        optimizer.step()
        method.after_step(output, task, epoch, len(batch))
        stats += torch.stack([loss_sum.detach(), (logits.argmax(1) == labels).sum().float()])
    dist.all_reduce(stats)
    return (stats[0] / len(rows)).item(), (stats[1] / len(rows)).item()


def task_context(model, data: ContinualData, task: int, config: ContinualConfig) -> TaskContext:
    return TaskContext(model, task, data, data.rows["train"][task], config)


@dataclass
class RunState:
    """What a checkpoint restores besides the network and the method."""

    task: int = 0
    matrix: list = field(default_factory=list)
    task_seconds: list = field(default_factory=list)
    firing_rates: list = field(default_factory=list)  # per finished task: each LIF layer's rate (-rate_stat)
    training: TaskTraining | None = None  # the task in progress, if the run stopped inside one


def run_continual(
    data: ContinualData,
    method: Method,
    config: ContinualConfig,
    run: RunDir,
    device: torch.device,
    info: dict,
) -> dict:
    """Train every task in order, fill the accuracy matrix, write the outputs; returns results.json's record."""
    if config.scenario not in SCENARIOS:
        raise UserError(f"-scenario {config.scenario}: expected one of {', '.join(SCENARIOS)}")
    dist = distributed()
    if run.resuming and (run.work / "results.json").is_file():
        results = json.loads((run.work / "results.json").read_text())
        print(f"{shown(run.path)}: this run already finished; nothing to resume")
        print(format_matrix(results["acc_matrix"]) + "\n" + format_summary(results["acc_matrix"]))
        return results

    seed_everything(config.seed)
    model = build_model(data, config, device)
    method.prepare(model)
    shuffle = torch.Generator().manual_seed(config.seed)
    state = RunState(matrix=empty_matrix(data.n_tasks))
    if run.resuming:
        state = _restore(run.work, model, method, shuffle, data, config, info) or state
    if method.joint:  # one stage over all tasks' data, evaluated as the last row of the matrix
        state.task = max(state.task, data.n_tasks - 1)

    writer = None
    if dist.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.work / "tb"))
    for task in range(state.task, data.n_tasks):
        started = time.time()
        training = state.training or start_task(model, method, task, data, config)
        state.training = None
        progress = tqdm(
            range(training.epochs_done + 1, config.epochs + 1), desc=f"task {task}", leave=False, disable=None
        )
        for epoch in progress:
            loss, train_acc = train_epoch(
                training.network, method, data, task, epoch, training.optimizer, config, shuffle, training.rows
            )
            training.scheduler.step()
            val_acc = accuracy(model, data, training.val_rows, config)
            training.epochs_done, training.summary = epoch, (loss, train_acc, val_acc)
            progress.set_postfix(loss=f"{loss:.3f}", train=f"{train_acc:.3f}", val=f"{val_acc:.3f}")
            if writer is not None:
                for name, value in zip(("train_loss", "train_acc", "val_acc"), training.summary, strict=True):
                    writer.add_scalar(f"task{task}/{name}", value, epoch)
            _save(run.work / "checkpoints" / LAST, model, method, shuffle, state, training, config, info)
        method.after_task(task_context(model, data, task, config))
        for j in range(task + 1):
            state.matrix[task][j] = accuracy(model, data, data.rows["test"][j], config)
        state.task_seconds.append(round(time.time() - started, 3))
        loss, train_acc, val_acc = training.summary
        learned = "all tasks" if method.joint else "+".join(data.task_names[task])
        print(
            f"task {task} ({learned}): loss {loss:.4f}  train {train_acc:.4f}  val {val_acc:.4f}  "
            f"test {state.matrix[task][task]:.4f}  ({state.task_seconds[-1]:.1f}s)",
            flush=True,
        )
        if config.rate_stat:
            state.firing_rates.append(firing_rates(model, data, torch.cat(data.rows["test"][: task + 1])))
            shown_rates = "  ".join(f"sn{i + 1} {rate:.4f}" for i, rate in enumerate(state.firing_rates[-1]))
            print(f"firing rates after task {task} (test rows of tasks 0..{task}): {shown_rates}", flush=True)
        if writer is not None:
            writer.add_scalar("acc_matrix/ACC", sum(state.matrix[task][: task + 1]) / (task + 1), task)
            for i, rate in enumerate(state.firing_rates[-1] if config.rate_stat else []):
                writer.add_scalar(f"firing_rate/sn{i + 1}", rate, task)
        state.task = task + 1
        for name in (LAST, f"task{task}.pt"):  # the latest state, and a record of each task's end
            _save(run.work / "checkpoints" / name, model, method, shuffle, state, None, config, info)
    if writer is not None:
        writer.close()

    difference = _replica_difference(model, method)
    print(f"{method.name}: accuracy matrix (row: after training task i; column: test accuracy on task j)")
    print(format_matrix(state.matrix))
    print(format_summary(state.matrix), flush=True)
    results = results_record(
        method.name,
        data.task_names,
        state.matrix,
        config={**config.to_dict(), **info},
        seconds=sum(state.task_seconds),
        scenario=config.scenario,
        task_seconds=state.task_seconds,
        memory_bytes=method.memory_bytes(),
        processes=dist.world,
        **({"firing_rates": state.firing_rates} if config.rate_stat else {}),
    )
    if dist.enabled:
        results["replica_max_difference"] = difference
        print(
            f"replicas: {dist.world} processes hold the same network and method state (max difference {difference:g})"
        )
    if dist.main:
        write_results(run.work, results)
        run.finish()
    dist.barrier()
    return results


def _replica_difference(model, method) -> float:
    from common.distributed import max_replica_difference

    return max_replica_difference([*model.state_dict().values(), *method.state_dict().values()])


def _save(path: Path, model, method, shuffle, state: RunState, training: TaskTraining | None, config, info) -> None:
    """Everything ``-resume`` needs; ``training`` is the task in progress (None between tasks)."""
    if not distributed().main:
        return
    checkpoint = {
        "task": state.task,
        "model": model.state_dict(),
        "method": method.state_dict(),
        "method_name": method.name,
        "acc_matrix": state.matrix,
        "task_seconds": state.task_seconds,
        "firing_rates": state.firing_rates,
        "shuffle": shuffle.get_state(),
        "rng": rng_state(),
        "config": {**config.to_dict(), **info},
    }
    if training is not None:
        checkpoint["training"] = {
            "task": training.task,
            "epochs_done": training.epochs_done,
            "summary": list(training.summary),
            "optimizer": training.optimizer.state_dict(),
            "scheduler": training.scheduler.state_dict(),
        }
    atomic.save_torch(path, checkpoint)


def _restore(folder: Path, model, method, shuffle, data, config: ContinualConfig, info: dict) -> RunState | None:
    """Load the latest checkpoint of ``folder``; None when nothing had been saved."""
    path = folder / "checkpoints" / LAST
    if not path.is_file():
        return None
    checkpoint = load_checkpoint(path, "continual checkpoint")
    expected = {**config.to_dict(), **info}
    differing = [k for k in expected if checkpoint["config"].get(k) != expected[k]]
    if checkpoint.get("method_name") != method.name or differing:
        what = "method" if checkpoint.get("method_name") != method.name else differing[0]
        was = checkpoint.get("method_name") if what == "method" else checkpoint["config"].get(what)
        raise UserError(f"-resume {shown(folder)}: the run used {what}={was!r}; pass the same flags to resume it")
    load_weights(model, checkpoint["model"], path)
    method.load_state_dict(checkpoint["method"])
    state = RunState(
        checkpoint["task"], checkpoint["acc_matrix"], checkpoint["task_seconds"], checkpoint.get("firing_rates", [])
    )
    if "training" in checkpoint:  # stopped inside a task: rebuild its optimizer without preparing the task again
        saved = checkpoint["training"]
        training = start_task(model, method, saved["task"], data, config, prepare=False)
        training.optimizer.load_state_dict(saved["optimizer"])
        training.scheduler.load_state_dict(saved["scheduler"])
        training.epochs_done, training.summary = saved["epochs_done"], tuple(saved["summary"])
        state.training = training
    shuffle.set_state(checkpoint["shuffle"])
    set_rng_state(checkpoint["rng"])
    where = f"epoch {state.training.epochs_done} of task {state.task}" if state.training else f"task {state.task - 1}"
    print(f"resuming {shown(folder)} after {where}", flush=True)
    return state
