"""The continual loop: the spiking MLP learns the tasks one after another.

For each task: the method prepares (HLOP adds lateral rows), a fresh optimizer trains the
network for ``epochs`` epochs on the task's training rows (after task 0 only weight matrices
learn; thresholds stay, as in the reference), the method closes the task (HLOP merges its
subspace), and the test accuracy on every task seen so far fills row ``task`` of the accuracy
matrix. A checkpoint after each task lets ``-resume`` continue from the last finished task and
end with the same matrix.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import atomic
from common.batching import autocast, batch_rows
from common.checkpoint import load_checkpoint, load_weights
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


def build_model(data: ContinualData, config: ContinualConfig, device: torch.device) -> SpikingMLP:
    return SpikingMLP(data.features.shape[1], data.n_classes, config.hidden, config.neuron).to(device)


@torch.no_grad()
def accuracy(
    model: SpikingMLP, data: ContinualData, rows: torch.Tensor, config: ContinualConfig, batch_size: int = 1024
) -> float:
    model.eval()
    device = data.features.device
    correct = torch.zeros((), dtype=torch.long, device=device)
    for batch in batch_rows(rows, batch_size):
        with autocast(device):
            logits = model(data.features[batch]).logits
        predicted = masked_logits(logits.float(), scenario_mask(data, batch, config)).argmax(1)
        correct += (predicted == data.labels[batch]).sum()
    return correct.item() / max(len(rows), 1)


def train_epoch(
    model, method: Method, data: ContinualData, task: int, epoch: int, optimizer, config, shuffle, rows=None
):
    """One pass over ``rows`` (default: ``task``'s training rows); returns (mean loss, train accuracy)."""
    device = data.features.device
    rows = data.rows["train"][task] if rows is None else rows
    projector = method.projector(task)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for batch in batch_rows(rows, config.batch_size, shuffle):
        labels = data.labels[batch]
        with autocast(device):
            output = model(data.features[batch], projector, keep_spikes=method.needs_spikes)
        logits = masked_logits(output.logits.float(), scenario_mask(data, batch, config))
        loss = F.cross_entropy(logits, labels)
        penalty = method.penalty(model)
        optimizer.zero_grad(set_to_none=True)
        (loss if penalty is None else loss + penalty).backward()
        optimizer.step()
        method.after_step(output, task, epoch)
        loss_sum += loss.detach() * len(batch)
        correct += (logits.argmax(1) == labels).sum()
    return (loss_sum / len(rows)).item(), correct.item() / len(rows)


def start_task(model, method: Method, task: int, config: ContinualConfig):
    """Prepare the method and a fresh optimizer for ``task``; returns (optimizer, scheduler)."""
    method.before_task(task, model)
    if task > 0:  # after the first task only the weight matrices learn (thresholds stay), as the reference
        for neuron in model.neurons:
            neuron.vth.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad and (task == 0 or p.dim() > 1)]
    optimizer = make_optimizer(params, config)
    return optimizer, make_scheduler(optimizer, config)


def train_task(model, method: Method, data: ContinualData, task: int, config: ContinualConfig, shuffle, writer=None):
    """Train ``task`` for ``config.epochs`` epochs; returns the last epoch's (loss, train acc, val acc).

    A joint method learns every task's training rows in this one stage instead.
    """
    optimizer, scheduler = start_task(model, method, task, config)
    rows = data.all_train_rows() if method.joint else data.rows["train"][task]
    val_rows = torch.cat(data.rows["val"]) if method.joint else data.rows["val"][task]
    progress = tqdm(range(1, config.epochs + 1), desc=f"task {task}", leave=False, disable=None)
    summary = (0.0, 0.0, 0.0)
    for epoch in progress:
        loss, train_acc = train_epoch(model, method, data, task, epoch, optimizer, config, shuffle, rows)
        scheduler.step()
        val_acc = accuracy(model, data, val_rows, config)
        summary = (loss, train_acc, val_acc)
        progress.set_postfix(loss=f"{loss:.3f}", train=f"{train_acc:.3f}", val=f"{val_acc:.3f}")
        if writer is not None:
            writer.add_scalar(f"task{task}/train_loss", loss, epoch)
            writer.add_scalar(f"task{task}/train_acc", train_acc, epoch)
            writer.add_scalar(f"task{task}/val_acc", val_acc, epoch)
    method.after_task(task_context(model, data, task, config))
    return summary


def task_context(model, data: ContinualData, task: int, config: ContinualConfig) -> TaskContext:
    return TaskContext(model, task, data, data.rows["train"][task], config)


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
    results_path = run.work / "results.json"
    if run.resuming and results_path.is_file():
        import json

        results = json.loads(results_path.read_text())
        print(f"{shown(run.path)}: this run already finished; nothing to resume")
        print(format_matrix(results["acc_matrix"]) + "\n" + format_summary(results["acc_matrix"]))
        return results

    seed_everything(config.seed)
    model = build_model(data, config, device)
    method.prepare(model)
    shuffle = torch.Generator().manual_seed(config.seed)
    matrix, task_seconds, first_task = empty_matrix(data.n_tasks), [], 0
    restored = _restore(run.work, model, method, shuffle, config, info) if run.resuming else None
    if restored is not None:
        first_task, matrix, task_seconds = restored

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run.work / "tb"))
    if method.joint:  # one stage over all tasks' data, evaluated as the last row of the matrix
        first_task = max(first_task, data.n_tasks - 1)
    for task in range(first_task, data.n_tasks):
        started = time.time()
        loss, train_acc, val_acc = train_task(model, method, data, task, config, shuffle, writer)
        for j in range(task + 1):
            matrix[task][j] = accuracy(model, data, data.rows["test"][j], config)
        task_seconds.append(round(time.time() - started, 3))
        learned = "all tasks" if method.joint else "+".join(data.task_names[task])
        print(
            f"task {task} ({learned}): loss {loss:.4f}  train {train_acc:.4f}  "
            f"val {val_acc:.4f}  test {matrix[task][task]:.4f}  ({task_seconds[-1]:.1f}s)",
            flush=True,
        )
        writer.add_scalar("acc_matrix/ACC", sum(matrix[task][: task + 1]) / (task + 1), task)
        _save_checkpoint(run.work, task, model, method, shuffle, matrix, task_seconds, config, info)
    writer.close()

    print(f"{method.name}: accuracy matrix (row: after training task i; column: test accuracy on task j)")
    print(format_matrix(matrix))
    print(format_summary(matrix), flush=True)
    results = results_record(
        method.name,
        data.task_names,
        matrix,
        config={**config.to_dict(), **info},
        seconds=sum(task_seconds),
        scenario=config.scenario,
        task_seconds=task_seconds,
        memory_bytes=method.memory_bytes(),
    )
    write_results(run.work, results)
    run.finish()
    return results


def _checkpoint_path(folder: Path, task: int) -> Path:
    return folder / "checkpoints" / f"task{task}.pt"


def _save_checkpoint(folder, task, model, method, shuffle, matrix, task_seconds, config, info) -> None:
    atomic.save_torch(
        _checkpoint_path(folder, task),
        {
            "task": task,
            "model": model.state_dict(),
            "method": method.state_dict(),
            "method_name": method.name,
            "acc_matrix": matrix,
            "task_seconds": task_seconds,
            "shuffle": shuffle.get_state(),
            "rng": rng_state(),
            "config": {**config.to_dict(), **info},
        },
    )


def _restore(folder: Path, model, method, shuffle, config: ContinualConfig, info: dict):
    """Load the last task checkpoint of ``folder``; None when no task had finished."""
    saved = sorted((folder / "checkpoints").glob("task*.pt"), key=lambda p: int(p.stem[4:]))
    if not saved:
        return None
    path = saved[-1]
    checkpoint = load_checkpoint(path, "continual checkpoint")
    expected = {**config.to_dict(), **info}
    differing = [k for k in expected if checkpoint["config"].get(k) != expected[k]]
    if checkpoint.get("method_name") != method.name or differing:
        what = "method" if checkpoint.get("method_name") != method.name else differing[0]
        was = checkpoint.get("method_name") if what == "method" else checkpoint["config"].get(what)
        raise UserError(f"-resume {shown(folder)}: the run used {what}={was!r}; pass the same flags to resume it")
    load_weights(model, checkpoint["model"], path)
    method.load_state_dict(checkpoint["method"])
    shuffle.set_state(checkpoint["shuffle"])
    set_rng_state(checkpoint["rng"])
    print(f"resuming {shown(folder)} after task {checkpoint['task']}", flush=True)
    return checkpoint["task"] + 1, checkpoint["acc_matrix"], checkpoint["task_seconds"]
