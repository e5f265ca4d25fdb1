"""Memory replay, as the reference's ``-replay`` flags intend, and compressed latent replay.

After each task, ``memory_size`` training samples per class are stored; from task 1 on, a replay
phase follows the task: ``epochs`` epochs in which every step sums the mean losses of a batch of
``batch_per_task`` stored samples from each task seen so far (a fresh optimizer with learning
rate ``lr`` and, for CosALR, period ``t_max``; no projection, as the reference).

Compressed latent replay (Dequino et al., "Spiking Compressed Continual Learning", ISVLSI 2024)
stores the first hidden layer's spike trains instead of inputs, keeping every ``compress``-th
timestep as packed bits; replayed, each kept step is repeated ``compress`` times and drives fc2
and the classifier. fc1 stays fixed after task 0 so that stored spike trains stay valid.

Replay composes with another method (``-method hlop -replay``: HLOP projects while tasks are
learned, replay follows each task; see ``continual.methods.compose``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from common import spec
from common.errors import UserError
from common.spec import POSITIVE, POSITIVE_INT, setting
from continual.data import masked_logits
from continual.memory import RowMemory, class_balanced_rows, memory_size
from continual.methods.base import Context, Method
from continual.modes import EncoderMode
from continual.optim import make_optimizer, make_scheduler
from models.neurons import lif_spikes, weighted_rate
from models.spiking_mlp import SpikingMLP


@dataclass(frozen=True)
class ReplayConfig:
    memory_size: int = memory_size()  # stored samples per class
    epochs: int = setting(1, "-replay_epochs", kind=POSITIVE_INT, help="epochs of the replay phase after each task")
    batch_per_task: int = setting(50, "-replay_b", kind=POSITIVE_INT,
                                  help="batch size per task in the replay phase")  # fmt: skip
    lr: float = setting(0.01, "-replay_lr", kind=POSITIVE, help="learning rate of the replay phase")
    t_max: int = setting(20, "-replay_T_max", kind=POSITIVE_INT, help="CosALR period of the replay phase")
    latent: bool = False
    compress: int = setting(2, "-replay_compress", kind=POSITIVE_INT,
                            help="latent replay: keep every n-th timestep of the stored spike trains")  # fmt: skip

    def __post_init__(self):
        spec.check(self)

    def to_dict(self) -> dict:
        return asdict(self)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """(..., n) bool -> (..., ceil(n / 8)) uint8."""
    n = bits.shape[-1]
    padded = F.pad(bits.to(torch.uint8), (0, (-n) % 8))
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=bits.device)
    return (padded.view(*bits.shape[:-1], -1, 8) * weights).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of ``pack_bits``."""
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) & weights) != 0
    return bits.flatten(-2)[..., :n]


class Replay(Method):
    name = "replay"  # latent replay's instances name their compression too
    config_class = ReplayConfig
    stores_rows, stage = True, 1

    def __init__(self, config: ReplayConfig = ReplayConfig()):
        super().__init__()
        self.config = config
        self.memory = RowMemory()  # the stored rows and their tasks (continual.memory)
        self.register_buffer("spikes", torch.zeros(0, 0, dtype=torch.uint8))  # latent: fc1's packed spike trains
        self.sample_bytes = 0  # one stored row's input, in bytes (plain replay)
        compressed = f"-c{config.compress}" if config.compress > 1 else ""
        self.name = f"latent-replay{compressed}" if config.latent else "replay"

    @classmethod
    def add_flags(cls, parser) -> None:
        parser.flag("-replay", action="store_true",
                    help="add memory replay after each task to the chosen method (with -baseline: replay only)")  # fmt: skip
        spec.add_flags(parser, ReplayConfig, ("epochs", "batch_per_task", "lr", "t_max", "compress"))

    @classmethod
    def from_args(cls, args) -> Replay:
        return cls(spec.from_args(ReplayConfig, args, latent=False, compress=1))

    def get_extra_state(self) -> dict:
        return {"sample_bytes": self.sample_bytes}

    def set_extra_state(self, state: dict) -> None:
        self.sample_bytes = state["sample_bytes"]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "memory.payload" in state_dict:
            raise UserError("this checkpoint's replay memory was written by an earlier mmhlop (it holds inputs, not "
                            "rows): run again with -overwrite")  # fmt: skip
        if prefix + "spikes" in state_dict:  # the memory grows: take the saved shape
            self.spikes = torch.empty_like(state_dict[prefix + "spikes"]).to(self.spikes.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def before_optimizer(self, context: Context) -> None:
        if self.config.latent and context.task > 0:
            context.model.fc1.weight.requires_grad_(False)  # stored spike trains of fc1's output stay valid

    def after_task(self, context: Context) -> None:
        self._store(context)
        if context.task >= 1:
            self._replay(context)

    def payload_bytes(self) -> int:
        """Bytes of what stands for the stored rows: their inputs (features, or raw images and MFCC), or spike bits."""
        return self.spikes.numel() if self.config.latent else len(self.memory) * self.sample_bytes

    def memory_bytes(self) -> int:
        """The payload, and each stored row's label and task (8 bytes each)."""
        return self.payload_bytes() + 2 * len(self.memory) * 8

    @torch.no_grad()
    def _store(self, context: Context) -> None:
        data, model = context.data, context.model
        rows = class_balanced_rows(data.labels, context.rows, data.task_classes[context.task],
                                   self.config.memory_size, seed=context.task)  # fmt: skip
        if self.config.latent:
            if data.encoder_mode == EncoderMode.CONTINUAL:
                raise UserError(
                    "latent replay stores fc1's spike trains, which drift when the encoders learn; "
                    "use -replay with -encoder_mode continual"
                )
            spikes = self._encode_latent(model, data.features[rows])
            self.spikes = spikes if len(self.memory) == 0 else torch.cat([self.spikes, spikes])
        self.sample_bytes = data.bytes_per_sample()
        self.memory.add(rows, context.task)

    def _encode_latent(self, model: SpikingMLP, features: torch.Tensor) -> torch.Tensor:
        neuron = model.sn1
        current = features @ model.fc1.weight.t()
        spikes, _ = lif_spikes(current, neuron.config, neuron.vth.detach())
        kept = spikes[:: self.config.compress] > 0  # (T_kept, M, H) bits
        return pack_bits(kept.permute(1, 0, 2).flatten(1))

    def _decode_latent(self, model: SpikingMLP, packed: torch.Tensor):
        neuron, hidden = model.sn1, model.fc2.in_features
        steps = neuron.config.timesteps
        kept_steps = math.ceil(steps / self.config.compress)
        bits = unpack_bits(packed, kept_steps * hidden).view(-1, kept_steps, hidden).permute(1, 0, 2)
        spikes = bits.repeat_interleave(self.config.compress, dim=0)[:steps].float()
        spikes = spikes * (neuron.vth.detach() / neuron.config.delta_t)
        return spikes, weighted_rate(spikes, neuron.weights)

    def _logits(self, model: SpikingMLP, positions: torch.Tensor, data) -> torch.Tensor:
        """The logits of the stored rows at ``positions``: from their spike trains (latent) or their inputs."""
        if self.config.latent:
            return model.from_hidden(*self._decode_latent(model, self.spikes[positions])).logits
        return model(data.inputs(self.memory.rows[positions])).logits

    def _replay(self, context: Context) -> None:
        model, data, config = context.model, context.data, context.config
        params = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
        optimizer = make_optimizer(params, config, lr=self.config.lr)
        scheduler = make_scheduler(optimizer, config, t_max=self.config.t_max)
        tasks = self.memory.tasks.unique().tolist()
        slots = [(self.memory.tasks == task).nonzero().flatten() for task in tasks]
        steps = math.ceil(max(len(s) for s in slots) / self.config.batch_per_task)
        model.train()
        for _ in range(self.config.epochs):
            orders = [s[torch.randperm(len(s)).to(s.device)] for s in slots]
            for step in range(steps):
                window = slice(step * self.config.batch_per_task, (step + 1) * self.config.batch_per_task)
                batch = torch.cat([order[window] for order in orders])
                labels, owner = data.labels[self.memory.rows[batch]], self.memory.tasks[batch]
                mask = data.task_masks[owner] if config.scenario == "task" else None
                logits = masked_logits(self._logits(model, batch, data).float(), mask)
                losses = F.cross_entropy(logits, labels, reduction="none")
                per_task = torch.bincount(owner, minlength=data.n_tasks).float()
                loss = (losses / per_task[owner]).sum()  # the sum over tasks of each task's mean loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            scheduler.step()


class LatentReplay(Replay):
    """Compressed latent replay: ``-method latent_replay``, with replay's flags and ``-replay_compress``.

    Its memory holds fc1's spike trains, which drift when the encoders learn: frozen encoders only.
    """

    encoder_modes = ("frozen",)

    def __init__(self, config: ReplayConfig = ReplayConfig()):
        super().__init__(replace(config, latent=True))

    @classmethod
    def add_flags(cls, parser) -> None:
        """Declared by ``Replay.add_flags``."""

    @classmethod
    def from_args(cls, args) -> LatentReplay:
        return cls(spec.from_args(ReplayConfig, args))
