"""Accuracy of the pretrained network with its encoders converted to SNNs, against the timesteps.

``-convert`` (pretraining script): the best weights' image and audio encoders become
integrate-and-fire networks (``models.conversion``, thresholds from the training rows), their
time-averaged outputs go through the same fusion and heads, and the test accuracy (fused, image,
audio) is measured after 8, 16, ..., 256 timesteps, next to the ANN's. Written to
``conversion.json`` and ``conversion.png`` in the pretrained folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from common import atomic
from common.batching import batch_rows
from models.conversion import ConvertedEncoder
from models.multimodal import MultimodalNet
from pretrain.trainer import DeviceData, evaluate

TIMESTEPS = (8, 16, 32, 64, 128, 256)


@torch.no_grad()
def conversion_accuracy(
    model: MultimodalNet, tensors: DeviceData, timesteps=TIMESTEPS, calibration_rows: int = 512, batch: int = 256
) -> dict:
    """{"ann": {...}, "snn": {T: {"fused", "image", "audio"}}} test accuracies (fractions)."""
    model.eval()
    calibration = tensors.rows["train"][:calibration_rows]
    images, mfcc, _ = tensors.batch(calibration)
    inputs = {"image": images, "audio": mfcc}
    converted = {name: ConvertedEncoder(encoder, inputs[name]) for name, encoder in model.encoders.items()}
    test = tensors.rows["test"]
    correct = {t: dict.fromkeys(("fused", "image", "audio"), 0) for t in timesteps}
    for rows in batch_rows(test, batch):
        images, mfcc, labels = tensors.batch(rows)
        inputs = {"image": images, "audio": mfcc}
        per_encoder = {name: c.run(inputs[name], list(timesteps)) for name, c in converted.items()}
        for t in timesteps:
            embeddings = {name: found[t] for name, found in per_encoder.items()}
            fused, _ = model.fuse(embeddings)
            outputs = {"fused": model.head(fused)}
            for name, head in model.aux_heads.items():
                outputs[name] = head(embeddings[name])
            for name, logits in outputs.items():
                correct[t][name] += int((logits.argmax(1) == labels).sum())
    snn = {
        t: {k: v / len(test) for k, v in c.items() if k == "fused" or k in model.aux_heads} for t, c in correct.items()
    }
    ann = evaluate(model, tensors, test)
    return {
        "ann": {k: v for k, v in ann.items() if k != "weights"},
        "snn": snn,
        "thresholds": {name: c.thresholds for name, c in converted.items()},
    }


def smallest_t_within(result: dict, points: float = 0.01) -> int | None:
    """The fewest timesteps at which the converted fused accuracy is within ``points`` of the ANN's."""
    ann = result["ann"]["fused"]
    return next(
        (int(t) for t, acc in sorted(result["snn"].items(), key=lambda kv: int(kv[0])) if acc["fused"] >= ann - points),
        None,
    )


def format_conversion(result: dict) -> str:
    lines = [
        "timesteps  fused %  image %  audio %   (ANN: "
        + "  ".join(f"{k} {v * 100:.2f}%" for k, v in result["ann"].items())
        + ")"
    ]
    for t, acc in sorted(result["snn"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"{int(t):>9}  " + "  ".join(f"{acc.get(k, float('nan')) * 100:>7.2f}" for k in ("fused", "image", "audio"))
        )
    within = smallest_t_within(result)
    lines.append(
        f"converted within 1 point of the ANN (fused) from T = {within}"
        if within
        else "converted: never within 1 point of the ANN"
    )
    return "\n".join(lines)


def write_conversion(folder: Path, result: dict) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    atomic.write_json(Path(folder) / "conversion.json", result)
    steps = sorted(int(t) for t in result["snn"])
    figure, axes = plt.subplots(figsize=(6, 4))
    for name in ("fused", "image", "audio"):
        if name in result["ann"]:
            line = axes.plot(steps, [result["snn"][t][name] * 100 for t in steps], marker="o", label=f"SNN {name}")
            axes.axhline(result["ann"][name] * 100, color=line[0].get_color(), linestyle="--", label=f"ANN {name}")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("timesteps")
    axes.set_ylabel("test accuracy (%)")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic.write_bytes(Path(folder) / "conversion.png", buffer.getvalue())


def convert_pretrained(folder: Path, data, config, device: torch.device, meta: dict) -> dict:
    """Measure the conversion of ``folder``'s best encoders on ``data``'s test rows; write and return it."""
    from pretrain.artifacts import encoder_config, load_encoder
    from pretrain.trainer import to_device

    model = load_encoder(folder, meta, device)
    tensors = to_device(data, config, encoder_config(meta), device)
    result = conversion_accuracy(model, tensors)
    result["smallest_t_within_1_point"] = smallest_t_within(result)
    write_conversion(folder, result)
    return result
