"""Frozen fused features of every row, computed once and cached on disk.

The continual loop never runs the encoders: it reads these features. The cache key covers the
weights file, meta.json (MFCC statistics, image size), the CSV and the image files, so
retraining the encoders or editing the data extracts again. With ``image_gate`` a row's image is
left out of the fusion where it is atypical, with ``audio_gate`` its audio where it is not continuous in time
(``models.sensor_gate``).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from common.batching import autocast
from common.cache import read_checked, write_checked
from common.errors import UserError
from dataloader.dataset import PreparedData, standardize
from dataloader.images import image_fingerprint
from models.probes import Probe, corrupted, keep_mask, swap_partners
from models.sensor_gate import AudioGate, SensorGate
from pretrain.artifacts import check_same_data, load_encoder


def feature_cache_path(
    pretrained_dir: str | Path,
    meta: dict,
    data: PreparedData,
    probe: Probe | None = None,
    image_gate: float = 0.0,
    audio_gate: float = 0.0,
) -> Path:
    pretrained_dir = Path(pretrained_dir)
    digest = hashlib.sha256()
    for name in ("best.pt", "meta.json"):
        path = pretrained_dir / name
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    digest.update(data.table.csv_sha256.encode())
    if meta["modality"] != "audio":
        digest.update(image_fingerprint(data.table, meta["image_size"], meta.get("image_fit", "squash")).encode())
    if probe is not None:  # a test-time variant: its name, modality mask and noise
        digest.update(repr(probe).encode())
    if image_gate:
        digest.update(f"image_gate={image_gate!r}".encode())
    if audio_gate:
        digest.update(f"audio_gate={audio_gate!r}".encode())
    return Path(data.spec.cache_dir) / "features" / f"{data.table.name}-{digest.hexdigest()[:24]}.pt"


def raw_inputs(meta: dict, data: PreparedData) -> dict[str, torch.Tensor]:
    """What the encoders read for every row, on the CPU: standardised MFCC (``audio``) and uint8 images
    (``image``, unless the encoders are audio-only), as the pretraining run prepared them."""
    inputs = {"audio": standardized_mfcc(meta, data)}
    if meta["modality"] != "audio":
        inputs["image"] = torch.from_numpy(np.asarray(data.images(meta["image_size"], meta.get("image_fit", "squash"))))
    return inputs


def standardized_mfcc(meta: dict, data: PreparedData) -> torch.Tensor:
    """Every row's MFCC standardised with the pretraining run's training statistics, on the CPU."""
    mean, std = (np.asarray(meta[key], np.float32) for key in ("mfcc_mean", "mfcc_std"))
    return torch.from_numpy(standardize(data.table.mfcc, mean, std))


FEATURE_BATCH = 512  # rows the frozen encoders read at once (a swap probe swaps within these batches)


def extraction_swap_partners(n_rows: int) -> torch.Tensor:
    """The swap probe's partner of every row, as ``extract`` pairs them (within each batch of FEATURE_BATCH rows)."""
    return torch.cat([swap_partners(torch.arange(start, min(start + FEATURE_BATCH, n_rows)))
                      for start in range(0, n_rows, FEATURE_BATCH)])  # fmt: skip


def fused_features(
    pretrained_dir: str | Path,
    meta: dict,
    data: PreparedData,
    device: torch.device,
    batch_size: int = FEATURE_BATCH,
    probe: Probe | None = None,
    image_gate: float = 0.0,
    audio_gate: float = 0.0,
) -> torch.Tensor:
    """(rows, feature_dim) float32 features of every row of ``data`` (through a test-time ``probe``), on the CPU."""
    check_same_data(meta, data.table, pretrained_dir)
    path = feature_cache_path(pretrained_dir, meta, data, probe, image_gate, audio_gate)
    cached = read_checked(path)
    if cached is not None:
        features = torch.load(io.BytesIO(cached), map_location="cpu", weights_only=True)["features"]
        if tuple(features.shape) == (len(data.table), meta["feature_dim"]):
            return features
    features = extract(pretrained_dir, meta, data, device, batch_size, probe, image_gate, audio_gate)
    write_checked(path, lambda handle: torch.save({"features": features}, handle))
    return features


@torch.no_grad()
def converted_features(
    pretrained_dir: str | Path,
    meta: dict,
    data: PreparedData,
    device: torch.device,
    timesteps: int,
    batch_size: int = 256,
) -> tuple[torch.Tensor, dict]:
    """Fused features of every row with the encoders converted to IF networks (``models.conversion``), run for
    ``timesteps`` steps, thresholds from 512 training rows; and their cost per sample (SynOps of the encoders,
    MACs of their input layers on the constant input and of the fusion, which stays an ANN)."""
    from hlop.layers import protectable_layers
    from models.conversion import ConvertedEncoder

    check_same_data(meta, data.table, pretrained_dir)
    model = load_encoder(pretrained_dir, meta, torch.device("cpu"))
    inputs = raw_inputs(meta, data)
    calibration = torch.from_numpy(data.splits["train"][:512])
    converted = {name: ConvertedEncoder(encoder, inputs[name][calibration]) for name, encoder in model.encoders.items()}
    chunks, synops = [], 0.0
    for start in range(0, len(data.table), batch_size):
        window = slice(start, start + batch_size)
        embeddings = {name: c.run(inputs[name][window], [timesteps])[timesteps] for name, c in converted.items()}
        synops += sum(c.synops for c in converted.values()) * len(inputs["audio"][window])
        chunks.append(model.fuse(embeddings)[0].float())
    fusion = protectable_layers(model.fusion) if model.fusion is not None else []
    cost = {
        "timesteps": timesteps,
        "synops": synops / len(data.table),
        "input_macs": sum(c.input_macs for c in converted.values()),
        "fusion_macs": sum(layer.in_features * layer.out_features for layer in fusion),
    }
    return torch.cat(chunks), cost


@torch.no_grad()
def extract(
    pretrained_dir: str | Path,
    meta: dict,
    data: PreparedData,
    device: torch.device,
    batch_size: int = FEATURE_BATCH,
    probe: Probe | None = None,
    image_gate: float = 0.0,
    audio_gate: float = 0.0,
) -> torch.Tensor:
    """Run the frozen encoders once over every row (through a test-time ``probe``: a modality removed or noisy);
    ``image_gate`` > 0: an atypical image is left out of its row's fusion, ``audio_gate`` > 0: audio that is not
    continuous in time (``models.sensor_gate``)."""
    model = load_encoder(pretrained_dir, meta, device)
    inputs = raw_inputs(meta, data)
    mfcc, images = inputs["audio"], inputs.get("image")
    microphone = audio_gate_of(meta, data, audio_gate, mfcc)
    factors = {"image_gate": image_gate, "audio_gate": audio_gate}
    for name, why in gates_that_cannot_judge(meta, data, image_gate, audio_gate, microphone).items():
        raise UserError(f"-{name} {factors[name]:g}: {why}; run with -{name} 0")
    gate = image_gate_of(model, inputs, pretrained_dir, meta, data, device, image_gate)
    chunks = []
    for start in range(0, len(mfcc), batch_size):
        window = slice(start, start + batch_size)
        batch_images = images[window].to(device) if images is not None else None
        batch_mfcc = mfcc[window].to(device)
        keep = None
        if probe is not None:
            rows = torch.arange(start, min(start + batch_size, len(mfcc)))
            batch_images, batch_mfcc = corrupted(batch_images, batch_mfcc, probe, rows)
            keep = keep_mask(probe, len(rows), device)
        with autocast(device):
            embeddings = model.embed(batch_images, batch_mfcc)
            if gate is not None:
                keep = gate.keep(embeddings, keep)
            if microphone is not None:
                keep = microphone.keep(batch_mfcc, keep)
            chunks.append(model.fuse(embeddings, keep)[0].float().cpu())
    return torch.cat(chunks)


_GATES: dict[tuple, SensorGate] = {}  # fitted gates by the features they judge and the device: one fit a process


def image_gate_of(model, inputs: dict, pretrained_dir, meta: dict, data: PreparedData, device: torch.device,
                  factor: float) -> SensorGate | None:  # fmt: skip
    """The image gate of the training rows of the classes the encoders were trained on (all, or task 0's), fitted
    once a process for these weights, data and ``factor`` (each probe's extraction reuses it); None where nothing
    is judged (``factor`` 0, encoders of one modality)."""
    if not factor or len(model.encoders) != 2:
        return None
    key = (feature_cache_path(pretrained_dir, meta, data, image_gate=factor), str(device))
    if key not in _GATES:
        trained = set(meta.get("trained_classes") or data.class_names)
        rows = torch.from_numpy(data.rows("train", [i for i, c in enumerate(data.class_names) if c in trained]))
        _GATES[key] = SensorGate.fit(torch.cat([_image_embeddings(model, inputs, batch, device)
                                                for batch in rows.split(FEATURE_BATCH)]), factor)  # fmt: skip
    return _GATES[key]


FIRST_TASK_GATES = (
    "the encoders were pretrained on task 0's classes only, so a later class's clean input lies outside the rows "
    "the gate is fitted on"
)


def gates_that_cannot_judge(
    meta: dict, data: PreparedData, image_gate: float, audio_gate: float, microphone: AudioGate | None = None
) -> dict[str, str]:
    """The gates asked for (``image_gate``, ``audio_gate`` > 0) that cannot tell a failed sensor on these encoders
    and data, each with why: encoders pretrained on task 0's classes only (either gate), MFCC that are not frames
    of a recording (the audio gate, ``AudioGate.judges_recordings``; ``microphone``: the gate already fitted)."""
    asked = {name: factor for name, factor in (("image_gate", image_gate), ("audio_gate", audio_gate)) if factor}
    if meta["pretrain_classes"] != "all":
        return dict.fromkeys(asked, FIRST_TASK_GATES)
    microphone = microphone or audio_gate_of(meta, data, audio_gate)
    if microphone is not None and not microphone.judges_recordings:
        return {"audio_gate": microphone.why_not()}
    return {}


def audio_gate_of(meta: dict, data: PreparedData, factor: float, mfcc: torch.Tensor | None = None) -> AudioGate | None:
    """The audio gate of the training rows' standardised MFCC (``mfcc``, default read here; of the classes the
    encoders were trained on); None where nothing is judged (``factor`` 0, encoders of one modality). Cheap: no
    encoder runs."""
    if not factor or meta["modality"] != "both":
        return None
    mfcc = standardized_mfcc(meta, data) if mfcc is None else mfcc
    trained = set(meta.get("trained_classes") or data.class_names)
    rows = torch.from_numpy(data.rows("train", [i for i, c in enumerate(data.class_names) if c in trained]))
    return AudioGate.fit(mfcc[rows], factor)


def _image_embeddings(model, inputs: dict, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    with autocast(device):  # the image encoder alone: the gate judges nothing else
        return model.encoders["image"].encode(inputs["image"][rows].to(device))[0]
