"""The continual run's hyperparameters (the reference's defaults where it has them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from models.neurons import NeuronConfig

SCENARIOS = ("class", "task")
OPTIMIZERS = ("SGD", "Adam")
SCHEDULERS = ("StepLR", "CosALR")


@dataclass(frozen=True)
class ContinualConfig:
    epochs: int = 20
    batch_size: int = 64
    opt: str = "SGD"
    later_opt: str | None = None  # tasks after the first: another optimizer (None: opt), e.g. Adam then SGD
    later_lr: float | None = None  # its learning rate, also the encoders' (None: lr and encoder_lr)
    lr: float = 0.1
    encoder_lr: float = 0.001  # -encoder_mode continual: the encoders' and the fusion's learning rate
    encoder_momentum: float = 0.9  # -encoder_mode continual, with SGD: the encoders' momentum
    modality_dropout: float = 0.5  # -encoder_mode continual: share of training rows that see one random modality
    lr_scheduler: str = "StepLR"
    step_size: float = 100
    gamma: float = 0.1
    T_max: int = 200
    warmup: int = 0
    scenario: str = "class"
    hidden: int = 800
    dsr_backward: str = "reference"  # models.spiking_mlp.DSR_BACKWARDS
    feedback: str = "exact"  # models.spiking_mlp.FEEDBACKS
    rate_stat: bool = False  # record each LIF layer's firing rate on the test rows after every task
    seed: int = 0
    checkpoint_every: float = 600.0  # seconds between mid-epoch checkpoints (0: epoch ends only); may change on -resume
    neuron: NeuronConfig = field(default_factory=NeuronConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def for_later_tasks(self) -> ContinualConfig:
        """The settings of the tasks after the first: ``later_opt`` and ``later_lr`` where given.

        ``later_lr`` is the spiking MLP's rate and the encoders' (with ``-encoder_mode continual``).
        """
        if self.later_opt is None and self.later_lr is None:
            return self
        lr = self.later_lr or self.lr
        return replace(self, opt=self.later_opt or self.opt, lr=lr, encoder_lr=self.later_lr or self.encoder_lr)
