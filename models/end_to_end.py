"""The whole multimodal spiking network, trained task after task (``-encoder_mode continual``).

Image encoder + audio encoder + fusion (the pretraining network without its heads) produce the
fused feature, scaled by the run's input scale, which drives the spiking MLP as in the frozen
mode. The spiking MLP's layers are protected as before (``projected_layers``); the encoders' and
the fusion's convolution and linear layers are the ``encoder_layers`` that methods protect through
their weight gradients (``hlop.layers``). Normalisation layers learn on task 0 only and keep their
running statistics afterwards (``fix_norm``), as the reference's ``fix_bn``.
"""

from __future__ import annotations

import torch
from torch import nn

from hlop.layers import InputRecorder, protectable_layers
from models.fusion import modality_dropout_mask
from models.multimodal import MultimodalNet
from models.spiking_encoders import LIFBlock
from models.spiking_mlp import SpikingMLP, SpikingOutput

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
MODALITY_COLUMNS = ("image", "audio")  # the columns of a test probe's keep mask (models.probes)


class EndToEndNet(nn.Module):
    def __init__(
        self,
        encoder: MultimodalNet,
        snn: SpikingMLP,
        input_scale: float,
        modality_dropout: float = 0.0,
        max_rows: int = 1024,
    ):
        super().__init__()
        # in training, as in pretraining: a row may see one modality only (None: a config not yet resolved, none)
        self.modality_dropout = modality_dropout or 0.0
        self.encoder, self.snn = encoder, snn
        self.encoder.head = nn.Identity()  # the spiking MLP classifies; the pretraining heads are unused
        if encoder.fusion is None or not encoder.fusion.uses_heads:  # a reliability fusion reads each modality's head
            self.encoder.aux_heads = nn.ModuleDict()
        else:
            self.encoder.aux_heads.requires_grad_(False)  # it reads them; the spiking MLP does not train them
            self.encoder.fusion.forget_calibration()  # its embedding statistics go stale as the encoders learn
        self.register_buffer("input_scale", torch.tensor(float(input_scale)))
        parts = [self.encoder.encoders] + ([self.encoder.fusion] if self.encoder.fusion is not None else [])
        self.encoder_layers = protectable_layers(*parts)
        for block in self.encoder.modules():
            if isinstance(block, LIFBlock):  # spiking encoders: their layers' recorded inputs are every step's spikes
                block.reads_spikes = True
        self.recorder = InputRecorder(self.encoder_layers, max_rows)
        self.norm_fixed = False

    # what the methods and the loop read, as on the spiking MLP
    @property
    def projected_layers(self) -> list[nn.Linear]:
        return self.snn.projected_layers

    @property
    def neurons(self):
        return self.snn.neurons

    @property
    def fc1(self) -> nn.Linear:
        return self.snn.fc1

    @property
    def protected_layers(self) -> list[nn.Module]:
        return [*self.projected_layers, *self.encoder_layers]

    @property
    def protected_names(self) -> list[str]:
        """fc1, fc2, classifier, then each encoder layer by its place in the encoders (``image.body.0``)."""
        names = {id(module): name for name, module in self.encoder.named_modules()}
        return [
            *self.snn.protected_names,
            *(names[id(layer)].removeprefix("encoders.") for layer in self.encoder_layers),
        ]

    @property
    def encoder_input_layers(self) -> list[bool]:
        """Per encoder layer, whether it is a modality encoder's first (the one that reads the image or the MFCC)."""
        firsts = {id(layers[0]) for layers in map(protectable_layers, self.encoder.encoders.values()) if layers}
        return [id(layer) in firsts for layer in self.encoder_layers]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def record_encoder_inputs(self, on: bool) -> None:
        """Whether forward passes keep each encoder layer's input rows (for Hebbian updates and GPM)."""
        self.recorder.active = on

    def fix_norm(self) -> None:
        """Keep the normalisation layers' running statistics from now on (after task 0)."""
        self.norm_fixed = True
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.norm_fixed:
            for module in self.modules():
                if isinstance(module, NORM_TYPES):
                    module.eval()
        return self

    def features(self, inputs) -> torch.Tensor:
        """Fused features of (images, mfcc) or (images, mfcc, keep): a test probe's modality mask."""
        return self._encoded(inputs)[0]

    def _encoded(self, inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The fused feature (scaled), and each modality's embedding and features (``models.encoders``)."""
        images, mfcc, *probe_keep = inputs
        embeddings, features = self.encoder.encode(images, mfcc)
        keep = probe_keep[0] if probe_keep else None
        if self.training and self.modality_dropout > 0 and len(embeddings) > 1:
            rows = next(iter(embeddings.values())).shape[0]
            keep = modality_dropout_mask(rows, len(embeddings), self.modality_dropout, self.input_scale.device)
        return self.encoder.fuse(embeddings, keep)[0].float() * self.input_scale, embeddings, features

    def forward(self, inputs, projector=None, keep_spikes: bool = False) -> SpikingOutput:
        fused, embeddings, features = self._encoded(inputs)
        output = self.snn(fused, projector, keep_spikes)
        output.encoder_inputs = self.recorder.take()
        probe_keep = inputs[2] if len(inputs) > 2 else None
        output.embeddings = _for_head(embeddings, probe_keep)
        output.encoder_features = _for_head(features, probe_keep)
        return output

    @property
    def embedding_width(self) -> int:
        """The width of ``SpikingOutput.embeddings``: every modality encoder's embedding, concatenated."""
        return self.encoder.config.feature_dim * len(self.encoder.encoders)

    @property
    def feature_width(self) -> int:
        """The width of ``SpikingOutput.encoder_features``: every modality encoder's features, concatenated."""
        return self.encoder.feature_width


def _for_head(per_modality: dict[str, torch.Tensor], keep: torch.Tensor | None) -> torch.Tensor:
    """Each modality's tensor, detached and concatenated, for a head to read; a test probe's missing modality
    (``keep`` (B, 2): image, audio) is zero there too, as it is in the fusion."""
    parts = []
    for name, value in per_modality.items():
        value = value.detach().float()
        if keep is not None:
            value = value * keep[:, MODALITY_COLUMNS.index(name), None]
        parts.append(value)
    return torch.cat(parts, 1)
