"""Where a continual run's inputs come from, one builder per encoder mode.

- ``frozen_data``: the cached fused features of a pretrained folder's frozen encoders (the default);
- ``converted_data``: the features of those encoders converted to integrate-and-fire networks;
- ``learning_data``: the raw images and MFCC, with the encoders the run starts from (a pretrained
  folder's, or new ones), for ``-encoder_mode continual``.

Each returns a complete ``ContinualData``: inputs, test-time probes and the encoders' cost per
sample, with a line saying what the run learns from.
"""

from __future__ import annotations

import numpy as np
import torch

from common.distributed import current as distributed
from common.paths import shown
from common.seeding import seed_everything
from continual.data import ContinualData, continual_data, continual_encoder_data
from continual.energy import ENCODER_COST_ROWS, encoder_costs
from dataloader.dataset import PreparedData, mfcc_statistics
from models.multimodal import EncoderConfig, MultimodalNet
from models.probes import probes_for
from models.spiking_encoders import SPIKING_AUDIO_ENCODER, SPIKING_IMAGE_BACKBONE
from pretrain.config import PretrainConfig, image_size_for
from pretrain.features import extraction_swap_partners, raw_inputs
from pretrain.folder import PretrainedFolder


def frozen_data(folder: PretrainedFolder, data: PreparedData, device, e) -> tuple[ContinualData, str]:
    """The frozen encoders' cached features, their probes' features, and the encoders' MACs (and SynOps)."""
    features = distributed().main_first(lambda: folder.features(data, device, e.image_gate, e.audio_gate))
    cdata = continual_data(features, data, device, e.input_scale)
    cdata.probes = probes_for(folder.modalities, e.corruptions, e.noise)
    cdata.probe_features = {
        p.name: (folder.probe_features(data, device, p, e.image_gate, e.audio_gate) * cdata.input_scale).to(device)
        for p in cdata.probes
    }
    cdata.swap_partner = extraction_swap_partners(len(cdata.labels)).to(device)
    # a row whose image (audio) a gate left out was fused exactly as its audio-only (image-only) probe
    if e.image_gate and "audio_only" in cdata.probe_features:
        cdata.image_left_out = (cdata.features == cdata.probe_features["audio_only"]).all(1)
    if e.audio_gate and "image_only" in cdata.probe_features:
        cdata.audio_left_out = (cdata.features == cdata.probe_features["image_only"]).all(1)
    cdata.encoder_macs, cdata.encoder_synops = encoder_costs(
        folder.encoder(device), *frozen_encoder_inputs(folder, data, device)
    )
    what = f"features {tuple(features.shape)} from {shown(folder.path)}"
    test = torch.cat(cdata.rows["test"])
    for name, left_out in (("image", cdata.image_left_out), ("audio", cdata.audio_left_out)):
        if left_out is not None:
            what += (f"; -{name}_gate {getattr(e, name + '_gate'):g} left out {int(left_out[test].sum())} of "
                     f"{len(test)} clean test rows' {'images' if name == 'image' else name}")  # fmt: skip
    return cdata, what


def converted_data(folder: PretrainedFolder, data: PreparedData, device, e) -> tuple[ContinualData, str]:
    """Features of the encoders converted to IF networks, run ``e.convert_encoders`` steps; spikes inside them,
    MACs only where the input is analog and in the fusion. The probes would run the ANN encoders: none."""
    features, conversion = folder.converted_features(data, device, e.convert_encoders)
    cdata = continual_data(features, data, device, e.input_scale)
    cdata.encoder_macs = conversion["input_macs"] + conversion["fusion_macs"]
    cdata.encoder_synops = conversion["synops"]
    what = f"features of the encoders converted to IF networks ({e.convert_encoders} steps) from {shown(folder.path)}"
    return cdata, what


# encoders learning from random weights: the image embedding reads a 2 x 2 grid of the last block (leak-free
# class scenario, seeds 0-2: joint 96.9 ± 0.5 against 90.8 ± 4.2 with one value per channel; docs/protocols.md)
FROM_SCRATCH_GRID = 2
# spiking encoders from random weights: fused by the mean of their firing rates (no parameter, no activation:
# fc1 reads both encoders' spikes), so that spikes carry the answer from the input to the readout
FROM_SCRATCH_FUSION = {"ann": "attention", "spiking": "late"}


def learning_data(folder: PretrainedFolder | None, data: PreparedData, device, e) -> tuple[ContinualData, str]:
    """Raw inputs and starting encoders for ``-encoder_mode continual``: a pretrained folder's, or new ones.

    New encoders standardise the MFCC with task 0's training rows only, use 32-px squashed images, and their
    image embedding reads the CNN's last block pooled to a ``FROM_SCRATCH_GRID`` grid (``-image_grid``).
    Their costs are counted after each task, as they learn (``continual.evaluation``).
    """
    if folder is not None:
        # a folder's encoders load frozen (for cached features); here they are the starting point and learn
        meta, encoder = folder.meta, folder.encoder(device).requires_grad_(True)
        mean, std = (np.asarray(meta[key], np.float32) for key in ("mfcc_mean", "mfcc_std"))
        size, fit, modalities = meta["image_size"], meta.get("image_fit", "squash"), folder.modalities
    else:
        seed_everything(0)  # the starting encoders are the same for every training seed
        spiking = e.encoder_type == "spiking"
        config = EncoderConfig(n_classes=len(data.tasks[0]), n_mfcc=data.table.mfcc.shape[1],
                               modality=e.modality or "both", fusion=e.fusion or FROM_SCRATCH_FUSION[e.encoder_type],
                               image_grid=e.image_grid or FROM_SCRATCH_GRID,
                               image_backbone=SPIKING_IMAGE_BACKBONE if spiking else "cnn",
                               audio_encoder=SPIKING_AUDIO_ENCODER if spiking else "mlp")  # fmt: skip
        encoder = MultimodalNet(config)
        mean, std = mfcc_statistics(data.table.mfcc, data.rows("train", data.task_labels()[0]))
        size, fit, modalities = image_size_for(data.table), PretrainConfig().image_fit, config.modalities
    cdata = continual_encoder_data(data, encoder, size, fit, mean, std, device, e.input_scale)
    cdata.probes = probes_for(modalities, e.corruptions, e.noise)
    source = shown(folder.path) if folder else "random initialisation"
    seen = folder.meta["trained_classes"] if folder else []
    return cdata, f"encoders learning task after task from {source} (they saw {', '.join(seen) or 'nothing'})"


def frozen_encoder_inputs(folder: PretrainedFolder, data, device, rows: int = ENCODER_COST_ROWS):
    """Inputs on which frozen encoders' costs are counted: up to ``rows`` test rows for spiking encoders
    (their SynOps follow the spikes), one zero sample for ANN ones (their MACs do not depend on it, and
    their images need not be decoded)."""
    meta = folder.meta
    if not folder.spiking:
        size = meta["image_size"]
        images = torch.zeros(1, size, size, 3, dtype=torch.uint8, device=device)
        return images, torch.zeros(1, data.table.mfcc.shape[1], device=device)
    chosen = torch.from_numpy(data.rows("test")[:rows])
    inputs = raw_inputs(meta, data)
    return (inputs["image"][chosen].to(device) if "image" in inputs else None), inputs["audio"][chosen].to(device)
