"""The pretraining loop: encoders + fusion + heads trained on the training split.

Model selection uses the validation split; the test split is evaluated once, with the best
weights, at the end. Each epoch writes ``last.pt`` (everything -resume needs) and, when the
fused validation accuracy improves, ``best.pt``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from common import atomic
from common.batching import autocast, batch_rows
from common.checkpoint import load_checkpoint, load_weights
from common.distributed import current as distributed
from common.divergence import check_diverged
from common.epoch import CheckpointClock, EpochPosition, epoch_batches
from common.errors import UserError
from common.meter import ProgressMeter
from common.paths import shown
from common.rundir import RunDir
from common.runlog import RunLog
from common.seeding import seed_everything
from dataloader.dataset import PreparedData, mfcc_statistics, standardize
from dataloader.table import SPLIT_NAMES
from models.fusion import modality_dropout_mask
from models.multimodal import EncoderConfig, MultimodalNet
from models.probes import corrupt_views
from pretrain.config import PRETRAIN_CLASSES, PretrainConfig


@dataclass
class DeviceData:
    """Everything the loop reads: standardised MFCC, labels and split rows on the device; uint8 images on
    the device when they fit (``images_on``), else memory-mapped on the host and moved a batch at a time."""

    images: torch.Tensor | None
    mfcc: torch.Tensor
    labels: torch.Tensor  # index into ``classes``; -1 for rows of classes not pretrained on
    rows: dict[str, torch.Tensor]
    classes: list[str]
    mfcc_mean: list[float]
    mfcc_std: list[float]

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        images = None
        if self.images is not None:
            here = self.images.device == rows.device
            images = self.images[rows] if here else self.images[rows.cpu()].to(rows.device, non_blocking=True)
        return images, self.mfcc[rows], self.labels[rows]


def images_on(device: torch.device, images: torch.Tensor, share: float = 0.25) -> torch.Tensor:
    """The uint8 image array on ``device`` if it takes at most ``share`` of the device's free memory, else as is.

    On the CPU the array stays the memory-mapped cache (no copy); a GPU gets the whole array when it
    fits, which makes batches free, and otherwise each batch is copied over as uint8.
    """
    if device.type != "cuda":
        return images
    free, _ = torch.cuda.mem_get_info(device)
    return images.to(device) if images.numel() <= share * free else images


def to_device(data: PreparedData, config: PretrainConfig, encoder: EncoderConfig, device: torch.device) -> DeviceData:
    if config.pretrain_classes not in PRETRAIN_CLASSES:
        raise UserError(f"-pretrain_classes {config.pretrain_classes}: expected one of {', '.join(PRETRAIN_CLASSES)}")
    class_ids = data.task_labels()[0] if config.pretrain_classes == "first-task" else list(range(len(data.class_names)))
    label_map = torch.full((len(data.class_names),), -1, dtype=torch.long)
    label_map[class_ids] = torch.arange(len(class_ids))
    rows = {name: torch.from_numpy(data.rows(name, class_ids)).to(device) for name in SPLIT_NAMES}
    mean, std = mfcc_statistics(data.table.mfcc, data.rows("train", class_ids))
    images = None
    if "image" in encoder.modalities:
        images = images_on(device, torch.from_numpy(data.images(config.image_size, config.image_fit)))
    return DeviceData(
        images=images,
        mfcc=torch.from_numpy(standardize(data.table.mfcc, mean, std)).to(device),
        labels=label_map[torch.from_numpy(data.labels)].to(device),
        rows=rows,
        classes=[data.class_names[i] for i in class_ids],
        mfcc_mean=mean.tolist(),
        mfcc_std=std.tolist(),
    )


def pretraining_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, aux_weight: float, batch: int | None = None,
                     failed: torch.Tensor | None = None):  # fmt: skip
    """Cross-entropy of the fused head plus ``aux_weight`` times that of each modality's own head (not on rows
    whose input of that modality is a corrupted training view, ``failed`` (B, 2: image, audio)).

    Summed over ``labels`` and divided by ``batch`` (default: their number): under data
    parallelism each process passes the global batch size and contributes its share of the mean.
    """
    batch = batch or len(labels)
    loss = F.cross_entropy(out["fused"].float(), labels, reduction="sum")
    for index, name in enumerate(("image", "audio")):
        if name in out and out[name] is not out["fused"]:
            losses = F.cross_entropy(out[name].float(), labels, reduction="none")
            loss = loss + aux_weight * (losses if failed is None else losses * ~failed[:, index]).sum()
    return loss / batch


@torch.no_grad()
def evaluate(model: MultimodalNet, tensors: DeviceData, rows: torch.Tensor, batch_size: int = 512) -> dict:
    """Accuracy of the fused head and of each modality's head on ``rows`` (fractions), and mean fusion weights."""
    model.eval()
    device = tensors.mfcc.device
    correct: dict[str, torch.Tensor] = {}
    weights = []
    for batch in batch_rows(rows, batch_size):
        images, mfcc, labels = tensors.batch(batch)
        with autocast(device):
            out = model(images, mfcc)
        for name in ("fused", "image", "audio"):
            if name in out:
                correct[name] = correct.get(name, 0) + (out[name].argmax(1) == labels).sum()
        if "weights" in out:
            weights.append(out["weights"].float().sum(0))
    result = {name: round(count.item() / len(rows), 6) for name, count in correct.items()}
    if weights:
        result["weights"] = (torch.stack(weights).sum(0) / len(rows)).tolist()
    return result


@torch.no_grad()
def embeddings(model: MultimodalNet, tensors: DeviceData, rows: torch.Tensor, batch_size: int = 512) -> list:
    """Each modality's clean embeddings of ``rows`` (rows, dim), in the encoders' order."""
    model.eval()
    parts = []
    for batch in batch_rows(rows, batch_size):
        images, mfcc, _ = tensors.batch(batch)
        with autocast(tensors.mfcc.device):
            parts.append([h.float() for h in model.embed(images, mfcc).values()])
    return [torch.cat(column) for column in zip(*parts, strict=True)]


def pretrain(
    data: PreparedData,
    encoder_options: dict,
    config: PretrainConfig,
    run: RunDir,
    device: torch.device,
    flags: dict,
    compile_model: bool = False,
) -> dict:
    """Train, select on validation, test once, and write best.pt, last.pt and meta.json; returns meta.

    ``config`` comes resolved (``PretrainConfig.resolved``), so that meta.json records every value used."""
    if not config.is_resolved:
        raise UserError("the pretraining settings are not resolved: pass them through PretrainConfig.resolved first")
    dist = distributed()
    encoder = EncoderConfig(n_classes=0, n_mfcc=data.table.mfcc.shape[1], **encoder_options)
    # a folder written before -mfcc_noise existed was trained without the noise
    defaults = asdict(PretrainConfig()) | {"mfcc_noise": 0.0} | EncoderConfig(n_classes=0, n_mfcc=0).to_dict()
    free = ("epochs", "n_classes", "checkpoint_every")
    log = RunLog(run, {**asdict(config), **encoder.to_dict()}, free=free, defaults=defaults)
    meta = log.finished("meta.json", lambda meta: {**meta["train"], **meta["encoder"]})
    if meta is not None:
        print(f"{shown(run.path)}: pretraining already finished; nothing to resume")
        print(format_test_accuracy(meta))
        return meta
    seed_everything(config.seed)
    tensors = dist.main_first(lambda: to_device(data, config, encoder, device))  # rank 0 fills the image cache
    encoder = EncoderConfig(**(encoder.to_dict() | {"n_classes": len(tensors.classes)}))
    model = MultimodalNet(encoder).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    shuffle = torch.Generator().manual_seed(config.seed)
    state = _restore(log, model, optimizer, scheduler, shuffle)
    network = DistributedDataParallel(model) if dist.enabled else model
    if compile_model:
        network = torch.compile(network)
    started = time.time() - state["seconds"]
    clock = CheckpointClock(config.checkpoint_every)

    def save_last() -> None:
        state["seconds"] = time.time() - started
        log.save(
            "last.pt", {**_state_dicts(model, optimizer, scheduler), "shuffle": shuffle.get_state(), "state": state}
        )

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        desc = f"epoch {epoch}/{config.epochs}"
        loss, acc = _train_epoch(network, model, tensors, optimizer, config, shuffle, desc, state, clock, save_last)
        check_diverged(f"pretraining epoch {epoch}", loss, len(tensors.classes), model, keep=_kept(log, state))
        scheduler.step()
        _end_epoch(log, model, encoder, tensors, state, {"epoch": epoch, "train_loss": loss, "train_acc": acc}, config)
        save_last()
    return _test_and_write(log, model, data, tensors, config, encoder, state, flags, time.time() - started, device)


def _restore(log: RunLog, model, optimizer, scheduler, shuffle) -> dict:
    """The loop's state: fresh, or that of ``last.pt`` when resuming (model, optimizer and generator loaded)."""
    state = {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "history": [], "seconds": 0.0, "position": None}
    checkpoint = log.restore("last.pt", "pretraining checkpoint")
    if checkpoint is None:
        return state
    load_weights(model, checkpoint["model"], log.folder / "last.pt")
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    shuffle.set_state(checkpoint["shuffle"])
    state = {"position": None, **checkpoint["state"]}
    inside = state["position"] and f", batch {state['position']['batches_done']} of epoch {state['epoch'] + 1}"
    print(f"resuming {shown(log.run.path)} after epoch {state['epoch']}{inside or ''}")
    return state


def _kept(log: RunLog, state: dict) -> str:
    """What the last checkpoint holds, for the divergence message."""
    if not state["epoch"]:
        return "nothing had been checkpointed yet"
    return f"{shown(log.folder / 'last.pt')} holds the last good state (epoch {state['epoch']})"


def _end_epoch(log: RunLog, model, encoder: EncoderConfig, tensors, state: dict, record: dict, config) -> None:
    """Validate, log and print the epoch; keep the weights as best.pt when the fused validation accuracy improves."""
    epoch = record["epoch"]
    record["val"] = val = evaluate(model, tensors, tensors.rows["val"])
    state["history"].append(record)
    print(_epoch_line(record, config.epochs), flush=True)
    log.scalars("train", {"loss": record["train_loss"], "acc": record["train_acc"]}, epoch)
    log.scalars("val", {f"acc_{name}": value for name, value in val.items() if name != "weights"}, epoch)
    improved = val["fused"] > state["best_val"]
    if improved:
        state["best_val"], state["best_epoch"] = val["fused"], epoch
    state["epoch"] = epoch
    if improved and distributed().main:
        best = {"model": model.state_dict(), "encoder": encoder.to_dict(), "epoch": epoch}
        atomic.save_torch(log.folder / "best.pt", best)


def _test_and_write(log: RunLog, model, data, tensors, config, encoder, state, flags, seconds, device) -> dict:
    """Test the best weights once and write meta.json; returns it."""
    dist = distributed()
    dist.barrier()  # best.pt is complete before every process reads it
    best = load_checkpoint(log.folder / "best.pt", "pretrained weights")
    load_weights(model, best["model"], log.folder / "best.pt")
    val = None  # the best epoch's validation accuracy holds, unless the weights change after it
    if hasattr(model.fusion, "calibrate"):  # the reliability fusion measures its clean embeddings
        model.fusion.calibrate(embeddings(model, tensors, tensors.rows["train"]))
        val = evaluate(model, tensors, tensors.rows["val"])  # the calibration changes its answers
        if dist.main:
            atomic.save_torch(log.folder / "best.pt", {**best, "model": model.state_dict()})
    test = evaluate(model, tensors, tensors.rows["test"])
    meta = _meta(data, tensors, config, encoder, state, test, val, flags, seconds, device)
    meta["processes"] = dist.world
    if dist.main:
        atomic.write_json(log.folder / "meta.json", meta)
    log.finish()
    dist.barrier()
    print(format_test_accuracy(meta))
    return meta


def _train_epoch(
    network, model, tensors: DeviceData, optimizer, config: PretrainConfig, shuffle, desc: str, state, clock, save
):
    """One epoch; every process draws the same global batches and trains on its share of each.

    An epoch that stopped inside (``state["position"]``) continues where it stopped; when
    ``clock`` says so, ``save()`` checkpoints with the position in ``state``.
    """
    dist = distributed()
    network.train()
    device = tensors.mfcc.device
    position = EpochPosition.from_dict(state["position"])
    before, batches, done = epoch_batches(tensors.rows["train"], config.batch_size, shuffle, position)
    sums = position.sums if position is not None else [0.0, 0.0, 0.0]
    stats = torch.tensor(sums, dtype=torch.float32, device=device)  # summed loss, correct predictions, samples
    total = len(tensors.rows["train"])
    meter = ProgressMeter(total, desc, done=sum(len(b) for b in batches[:done]))
    for index, rows in enumerate(batches[done:], done):
        if len(rows) >= 2 * dist.world:  # batch norm needs two samples in every process
            stats += train_step(network, model, tensors, optimizer, config, rows)
        meter.update(len(rows), loss=lambda s=stats: (s[0] / s[2].clamp(min=1)).item())
        if index + 1 < len(batches) and clock.due():
            state["position"] = EpochPosition(before, index + 1, stats.tolist()).to_dict()
            save()
    meter.close()
    state["position"] = None
    dist.all_reduce(stats)
    return round((stats[0] / stats[2]).item(), 6), round((stats[1] / stats[2]).item(), 6)


def train_step(network, model, tensors: DeviceData, optimizer, config: PretrainConfig, rows) -> torch.Tensor:
    """One optimizer step on this process's share of ``rows``; returns (loss sum, correct, samples)."""
    dist = distributed()
    device = tensors.mfcc.device
    images, mfcc, labels = tensors.batch(dist.shard(rows))
    mfcc = noisy_mfcc(mfcc, config.mfcc_noise)
    images = augmented_images(images, config.image_shift, config.image_flip)
    keep = modality_dropout_mask(len(labels), len(model.encoders), config.modality_dropout, device)
    images, mfcc, failed = corrupt_views(images, mfcc, config.corrupt_views if len(model.encoders) > 1 else 0.0)
    with autocast(device):
        out = network(images, mfcc, keep)
    loss = pretraining_loss(out, labels, config.aux_weight, batch=len(rows), failed=failed)
    optimizer.zero_grad(set_to_none=True)
    (loss * dist.world).backward()  # DDP averages the processes' gradients: this makes it their sum
    optimizer.step()
    correct = (out["fused"].argmax(1) == labels).sum().float()
    return torch.stack([loss.detach() * len(rows), correct, torch.tensor(float(len(labels)), device=device)])


def noisy_mfcc(mfcc: torch.Tensor, std: float) -> torch.Tensor:
    """Training rows' standardised MFCC plus Gaussian noise of ``std`` (``-mfcc_noise``).

    The noise keeps the audio encoder from fitting the training speakers' exact coefficients: on an
    unheard speaker its embeddings then stay ones the fusion can weigh, where without it the attention trusts
    an audio embedding that is wrong (docs/pipeline.md, "Pretraining the encoders").
    """
    return mfcc + std * torch.randn_like(mfcc) if std > 0 else mfcc


def augmented_images(images: torch.Tensor | None, shift: int, flip: bool) -> torch.Tensor | None:
    """Training images (B, H, W, C) moved by a random translation of up to ``shift`` pixels per axis (zeros fill
    what comes in from the edge; ``-image_shift``) and, with ``flip``, half of them mirrored (``-image_flip``), the
    usual augmentations of small photograph sets; off by default (docs/pipeline.md says what they did on avphotos)."""
    if images is None or (shift == 0 and not flip):
        return images
    batch, height, width, _ = images.shape
    if shift > 0:
        padded = F.pad(images, (0, 0, shift, shift, shift, shift))
        down, right = (torch.randint(0, 2 * shift + 1, (batch, 1), device=images.device) for _ in range(2))
        rows = (down + torch.arange(height, device=images.device))[:, :, None]
        cols = (right + torch.arange(width, device=images.device))[:, None, :]
        images = padded[torch.arange(batch, device=images.device)[:, None, None], rows, cols]
    if flip:
        mirrored = torch.rand(batch, device=images.device) < 0.5
        images = torch.where(mirrored[:, None, None, None], images.flip(2), images)
    return images


def _epoch_line(record: dict, epochs: int) -> str:
    val = record["val"]
    parts = [
        f"epoch {record['epoch']:>3}/{epochs}",
        f"loss {record['train_loss']:.4f}",
        f"train {record['train_acc'] * 100:.2f}%",
    ]
    parts.append(
        "val " + "  ".join(f"{name} {val[name] * 100:.2f}%" for name in ("fused", "image", "audio") if name in val)
    )
    if "weights" in val:
        parts.append("weights image/audio " + "/".join(f"{w:.2f}" for w in val["weights"]))
    return "  ".join(parts)


def format_test_accuracy(meta: dict) -> str:
    acc = meta["test_acc"]
    shown_acc = "  ".join(
        f"{name} {acc[name] * 100:.2f}%" for name in ("image", "audio", "fused") if acc.get(name) is not None
    )
    return f"test accuracy ({meta['dataset']['name']}, {meta['dataset']['rows']['test']} test rows): {shown_acc}"


def _state_dicts(model, optimizer, scheduler) -> dict:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


def _meta(data, tensors, config, encoder, state, test, val, flags, seconds, device) -> dict:
    """``val``: the validation accuracy of the weights written, where it differs from their epoch's (the reliability
    fusion, calibrated after training); else the best epoch's."""
    table = data.table
    best = state["history"][state["best_epoch"] - 1]["val"] if state["history"] else {}
    val = val or best
    return {
        "dataset": {
            "name": table.name,
            "data_dir": str(data.spec.data_dir),
            "csv_sha256": table.csv_sha256,
            "classes": table.class_names,
            "class_column": data.spec.class_column,
            "split": data.spec.split.to_dict(),
            "rows": {name: len(tensors.rows[name]) for name in SPLIT_NAMES},
        },
        "classes": table.class_names,
        "tasks": data.tasks,
        "pretrain_classes": config.pretrain_classes,
        "trained_classes": tensors.classes,
        "feature_dim": encoder.feature_dim,
        "modality": encoder.modality,
        "fusion": encoder.fusion if encoder.modality == "both" else None,
        "image_size": config.image_size,
        "image_fit": config.image_fit,
        "mfcc_mean": tensors.mfcc_mean,
        "mfcc_std": tensors.mfcc_std,
        "encoder": encoder.to_dict(),
        "train": asdict(config),
        "test_acc": {name: test.get(name) for name in ("image", "audio", "fused")},
        "val_acc": {name: val.get(name) for name in ("image", "audio", "fused")},
        "best_epoch": state["best_epoch"],
        "history": state["history"],
        "seconds": round(seconds, 2),
        "device": str(device),
        "flags": flags,
    }
