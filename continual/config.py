"""The continual run's hyperparameters (the reference's defaults where it has them), checked where they are held.

``opt`` and ``lr`` default to the encoder mode's working setting (``for_mode``, which only
``continual.resolve`` calls): the reference's SGD at 0.1 on frozen features, Adam at 0.001 when the encoders learn through the spiking MLP (plain SGD
underfits there: joint training reaches 40% against 89% with Adam on the held-out speaker).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from common.errors import UserError
from common.validation import integer, non_negative, one_of, positive, share
from models.neurons import NeuronConfig

SCENARIOS = ("class", "task")
OPTIMIZERS = ("SGD", "Adam")
SCHEDULERS = ("StepLR", "CosALR")
MODE_DEFAULTS = {
    "frozen": ("SGD", 0.1, 0.0),
    "continual": ("Adam", 0.001, 0.5),
}  # -encoder_mode -> -opt, -lr, -modality_dropout


@dataclass(frozen=True)
class ContinualConfig:
    epochs: int = 20
    batch_size: int = 64
    opt: str | None = None  # None: the encoder mode's (MODE_DEFAULTS)
    later_opt: str | None = None  # tasks after the first: another optimizer (None: opt), e.g. Adam then SGD
    later_lr: float | None = None  # its learning rate, also the encoders' (None: lr and encoder_lr; 0: nothing learns)
    lr: float | None = None  # None: the encoder mode's
    encoder_lr: float = 0.001  # -encoder_mode continual: the encoders' and the fusion's learning rate
    encoder_momentum: float = 0.9  # -encoder_mode continual, with SGD: the encoders' momentum
    modality_dropout: float | None = None  # share of training rows that see one random modality; None: the mode's
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

    def __post_init__(self):
        for name in ("epochs", "batch_size", "T_max", "hidden"):
            integer(getattr(self, name), f"-{name}")
        integer(self.warmup, "-warmup", least=0)
        integer(self.seed, "-seed", least=-(2**63))
        if self.lr is not None:
            positive(self.lr, "-lr")
        if self.later_lr is not None:
            non_negative(self.later_lr, "-later_lr")
        for name in ("encoder_lr", "step_size", "gamma"):
            positive(getattr(self, name), f"-{name}")
        share(self.encoder_momentum, "-encoder_momentum")
        if self.modality_dropout is not None:
            share(self.modality_dropout, "-modality_dropout")
        non_negative(self.checkpoint_every, "-checkpoint_every")
        for name, choices in (("opt", OPTIMIZERS), ("later_opt", OPTIMIZERS)):
            if getattr(self, name) is not None:
                one_of(getattr(self, name), f"-{name}", choices)
        one_of(self.lr_scheduler, "-lr_scheduler", SCHEDULERS)
        one_of(self.scenario, "-scenario", SCENARIOS)
        one_of(self.dsr_backward, "-dsr_backward", ("reference", "exact"))
        one_of(
            self.feedback, "-sign_symmetric / -feedback_alignment", ("exact", "sign_symmetric", "feedback_alignment")
        )
        if not isinstance(self.neuron, NeuronConfig):
            raise UserError(f"neuron: expected a NeuronConfig, got {self.neuron!r}")

    def for_mode(self, encoder_mode: str) -> ContinualConfig:
        """``opt``, ``lr`` and ``modality_dropout`` where they are left to the mode: SGD 0.1 and none on frozen
        features (the reference), Adam 0.001 and 0.5 when the encoders learn (continual)."""
        opt, lr, dropout = MODE_DEFAULTS[encoder_mode]
        dropout = dropout if self.modality_dropout is None else self.modality_dropout
        return replace(self, opt=self.opt or opt, lr=self.lr or lr, modality_dropout=dropout)

    def to_dict(self) -> dict:
        return asdict(self)

    def for_later_tasks(self) -> ContinualConfig:
        """The settings of the tasks after the first: ``later_opt`` and ``later_lr`` where given.

        ``later_lr`` is the spiking MLP's rate and the encoders' (with ``-encoder_mode continual``).
        """
        if self.later_opt is None and self.later_lr is None:
            return self
        if not self.later_lr:  # None: the first task's rates; 0: no epoch is run (``epochs_of``)
            return replace(self, opt=self.later_opt or self.opt)
        return replace(self, opt=self.later_opt or self.opt, lr=self.later_lr, encoder_lr=self.later_lr)

    def epochs_of(self, task: int) -> int:
        """Epochs of ``task``: none after the first with ``later_lr`` 0, where the network stays as task 0 left it
        and only a closed-form head learns (the protocol of analytic class-incremental learning, ACIL)."""
        return 0 if task > 0 and self.later_lr == 0 else self.epochs
