"""Where pretrained weights live, their meta.json, and loading them back as a frozen encoder.

A pretraining run writes ``pre_weight/<dataset>[-spiking][-<modality>][-<fusion>][-first-task][-<split>]/`` with
``best.pt`` (best on validation), ``last.pt`` (last epoch, with optimizer state for -resume),
``meta.json`` and TensorBoard events under ``tb/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from common.checkpoint import load_checkpoint, load_weights
from common.errors import UserError
from common.paths import PRE_WEIGHT_DIR, shown
from models.fusion import DEFAULT_FUSION
from models.multimodal import EncoderConfig, MultimodalNet

MARKERS = ("meta.json", "best.pt", "last.pt")


def default_out_dir(
    dataset: str,
    modality: str = "both",
    fusion: str = DEFAULT_FUSION,
    pretrain_classes: str = "all",
    split: str = "auto",
    encoders: str = "ann",
) -> Path:
    """``pre_weight/<dataset>[-spiking][-<modality>|-<fusion>][-first-task][-<split>]``: one folder per protocol."""
    parts = [dataset] + (["spiking"] if encoders == "spiking" else [])
    if modality != "both":
        parts.append(modality)
    elif fusion != DEFAULT_FUSION:  # the default fusion has no suffix
        parts.append(fusion)
    if pretrain_classes != "all":
        parts.append(pretrain_classes)
    if split != "auto":
        parts.append(split)
    return PRE_WEIGHT_DIR / "-".join(parts)


def read_meta(pretrained_dir: str | Path) -> dict:
    path = Path(pretrained_dir) / "meta.json"
    if not path.is_file():
        raise UserError(
            f"{shown(path)}: not found; run python spiking_pretrain_multimodal.py first, or pass -pretrained DIR"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{shown(path)}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    _check_meta(path, meta)
    return meta


META_FIELDS = {  # what the continual script reads, and its JSON type
    "dataset": dict,
    "classes": list,
    "tasks": list,
    "pretrain_classes": str,
    "trained_classes": list,
    "feature_dim": int,
    "modality": str,
    "image_size": int,
    "mfcc_mean": list,
    "mfcc_std": list,
    "encoder": dict,
}
DATASET_FIELDS = {"name": str, "csv_sha256": str, "classes": list, "class_column": str, "split": dict}


def _check_meta(path: Path, meta) -> None:
    if not isinstance(meta, dict):
        raise UserError(
            f"{shown(path)}: expected a JSON object written by the pretraining script, got {type(meta).__name__}"
        )
    for fields, where, values in ((META_FIELDS, "", meta), (DATASET_FIELDS, "dataset.", meta.get("dataset", {}))):
        for name, kind in fields.items():
            if name not in values:
                problem = "is missing"
            elif not isinstance(values[name], kind) or isinstance(values[name], bool):
                problem = f"is {type(values[name]).__name__}, not {kind.__name__}"
            else:
                continue
            raise UserError(f"{shown(path)}: {where}{name} {problem}; pretrain again (this file was not written by it)")


def encoder_config(meta: dict) -> EncoderConfig:
    # the ImageNet weights are not needed to rebuild: the trained weights come from best.pt
    return EncoderConfig(**(meta["encoder"] | {"imagenet_weights": False}))


def load_encoder(pretrained_dir: str | Path, meta: dict, device: torch.device) -> MultimodalNet:
    """The best pretrained network of ``pretrained_dir`` (whose meta.json is ``meta``), frozen, in eval mode."""
    path = Path(pretrained_dir) / "best.pt"
    model = MultimodalNet(encoder_config(meta))
    load_weights(model, load_checkpoint(path, "pretrained weights").get("model", {}), path)
    model.requires_grad_(False)
    return model.to(device).eval()


def check_same_data(meta: dict, table, pretrained_dir: str | Path) -> None:
    """The pretrained weights must come from this very dataset (same CSV, same classes)."""
    trained = meta["dataset"]
    if trained["csv_sha256"] != table.csv_sha256 or trained["classes"] != table.class_names:
        raise UserError(
            f"-pretrained {shown(pretrained_dir)}: trained on dataset '{trained['name']}' "
            f"({len(trained['classes'])} classes), which is not {shown(table.csv_path)} "
            f"({len(table.class_names)} classes, or the CSV changed); pretrain on this dataset first"
        )
