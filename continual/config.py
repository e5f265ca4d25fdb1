"""The continual run's hyperparameters (the reference's defaults where it has them), checked where they are held.

``opt`` and ``lr`` default to the encoder mode's working setting (``for_mode``, which only
``continual.resolve`` calls): the reference's SGD at 0.1 on frozen features, Adam at 0.001 when the encoders learn through the spiking MLP (plain SGD
underfits there: joint training reaches 40% against 89% with Adam on the held-out speaker).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from common import spec
from common.errors import UserError
from common.spec import ANY_INT, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, SHARE, SWITCH, setting
from models.neurons import NeuronConfig
from models.spiking_mlp import FEEDBACKS

SCENARIOS = ("class", "task")
OPTIMIZERS = ("SGD", "Adam")
SCHEDULERS = ("StepLR", "CosALR")
MODE_DEFAULTS = {
    "frozen": ("SGD", 0.1, 0.0),
    "continual": ("Adam", 0.001, 0.5),
}  # -encoder_mode -> -opt, -lr, -modality_dropout


_MODES = ", ".join(f"{opt} {lr:g} with -encoder_mode {mode}" for mode, (opt, lr, _) in MODE_DEFAULTS.items())


@dataclass(frozen=True)
class ContinualConfig:
    epochs: int = setting(20, "-epochs", kind=POSITIVE_INT, help="epochs per task")
    batch_size: int = setting(64, "-batch_size", aliases=("-b",), kind=POSITIVE_INT, help="batch size")
    opt: str | None = setting(
        None, "-opt", choices=OPTIMIZERS, help=f"optimizer, a fresh one per task (default: {_MODES})"
    )
    later_opt: str | None = setting(None, "-later_opt", choices=OPTIMIZERS,
        help="optimizer of the tasks after the first (default: -opt); e.g. -opt Adam -later_opt SGD")  # fmt: skip
    later_lr: float | None = setting(None, "-later_lr", kind=NON_NEGATIVE, help=(
        "learning rate of the tasks after the first, for the spiking MLP and (-encoder_mode continual) the encoders "
        "(default: -lr and -encoder_lr; 0: the network stays as task 0 left it, no epochs are run, only a -head "
        "analytic or ncm learns)"))  # fmt: skip
    lr: float | None = setting(None, "-lr", kind=POSITIVE, help="learning rate (default: the -opt default's)")
    encoder_lr: float = setting(0.001, "-encoder_lr", kind=POSITIVE,
        help="-encoder_mode continual: learning rate of the encoders and the fusion")  # fmt: skip
    encoder_momentum: float = setting(0.9, "-encoder_momentum", kind=SHARE,
        help="-encoder_mode continual, with -opt SGD: momentum of the encoders and the fusion")  # fmt: skip
    modality_dropout: float | None = setting(None, "-modality_dropout", kind=SHARE, help=(
        "share of training rows that see one random modality only (frozen encoders: that modality's features "
        "alone, as the audio_only / image_only probes read them); default 0 on frozen features, 0.5 with "
        "-encoder_mode continual"))  # fmt: skip
    lr_scheduler: str = setting("StepLR", "-lr_scheduler", choices=SCHEDULERS,
                                help="StepLR or CosALR (cosine with warm-up), stepped per epoch")  # fmt: skip
    step_size: float = setting(100, "-step_size", kind=POSITIVE, help="StepLR step size in epochs")
    gamma: float = setting(0.1, "-gamma", kind=POSITIVE, help="StepLR decay factor")
    T_max: int = setting(200, "-T_max", kind=POSITIVE_INT, help="CosALR period in epochs")
    warmup: int = setting(0, "-warmup", kind=NON_NEGATIVE_INT, help="CosALR warm-up epochs")
    scenario: str = setting("class", "-scenario", choices=SCENARIOS,
        help="class: one head over all classes (the reference); task: predict among the task's classes")  # fmt: skip
    hidden: int = setting(800, "-hidden", kind=POSITIVE_INT, help="hidden neurons per layer")
    dsr_backward: str = setting("reference", "-dsr_backward", choices=("reference", "exact"), help=(
        "reference: the gradients of the reference's per-timestep DSR code; exact: the chain rule through the "
        "weighted rates (docs/reference.md)"))  # fmt: skip
    feedback: str = "exact"  # models.spiking_mlp.FEEDBACKS, from -sign_symmetric / -feedback_alignment
    rate_stat: bool = setting(False, "-rate_stat", kind=SWITCH,
        help="print and log each LIF layer's firing rate on the test rows after every task")  # fmt: skip
    seed: int = setting(0, "-seed", kind=ANY_INT, help="seed of Python, NumPy and torch")
    checkpoint_every: float = 600.0  # seconds between mid-epoch checkpoints (0: epoch ends only); may change on -resume
    neuron: NeuronConfig = field(default_factory=NeuronConfig)

    def __post_init__(self):
        spec.check(self)
        if not NON_NEGATIVE.accepts(self.checkpoint_every):
            raise UserError(f"-checkpoint_every {self.checkpoint_every!r}: expected {NON_NEGATIVE.expected}")
        if self.feedback not in FEEDBACKS:
            raise UserError(f"feedback {self.feedback!r}: expected one of {', '.join(FEEDBACKS)} (-sign_symmetric, "
                            "-feedback_alignment)")  # fmt: skip
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
