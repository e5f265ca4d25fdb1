"""Experience replay as the field means it: stored rows mixed into every training batch of later tasks.

``ER`` (e.g. Chaudhry et al. 2019; mammoth's ``er``) keeps a memory of training rows and, from task 1
on, appends stored rows to every training batch (``extend_batch``), so that the batch's loss is the
mean over new and stored rows. The memory is class-balanced (``memory_size`` rows of each class,
chosen when its task ends) or, with ``memory_budget``, a reservoir of that many rows over every
row seen in training (Vitter's algorithm R, as mammoth's buffer). ER's batches are class-balanced too
(``-er_share balanced``, its default): a batch of ``n`` new rows of ``c`` new classes carries ``n / c`` stored
rows for each earlier class, so that every class seen so far weighs the same in the loss. With mammoth's
half-and-half batches (``-er_share 0.5``) the two newest classes outweigh each of eight old ones four to one
by task 4, and the old classes are what is lost (docs/protocols.md).

``DERPP`` (DER++, Buzzega et al., NeurIPS 2020; mammoth's ``derpp``) also stores the network's logits
for each stored row and adds, per batch, ``alpha`` times the mean squared error between the
network's logits on a memory batch and the stored ones, plus ``beta`` times the cross-entropy on
another memory batch (both with the run's gradient projection, when a method projects).

``ERACE`` (ER-ACE, Caccia et al., ICLR 2022; mammoth's ``er_ace``) is ER with an asymmetric cross-entropy:
from task 1 on, the new rows' loss spans only the classes not seen in earlier tasks, so learning a new
task no longer pushes the old classes' logits down (the class scenario's bias towards the newest
classes); the stored rows' loss spans every class, as in ER. Its class-balanced memory takes each task's
rows when the task starts, not when it ends, so that stored rows of the task being learned meet the old
classes' in the memory batches (as ER-ACE's reservoir holds the incoming rows): without them nothing
pushes the old classes' logits down on the new classes' rows, and the newest task is never predicted.

The memory holds row indices into the run's inputs (features with frozen encoders, raw images
and MFCC with learning encoders) and is counted in bytes as the rows' inputs, labels and logits.
Both compose with any other method (``-method hlop -replay`` is the reference's post-task phase,
``continual.methods.replay``; these are the alternative).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from common import spec
from common.spec import NON_NEGATIVE, Kind, setting
from continual.data import masked_logits, scenario_mask
from continual.memory import MEMORY_FLAGS, RowMemory, class_balanced_rows, memory_budget, memory_size
from continual.methods.base import Context, Method

MAX_SHARE = 0.95  # -er_share: nearer 1, each batch carries so many stored rows that memory runs out
BALANCED = "balanced"  # -er_share: as many stored rows per earlier class as the batch has new rows per new class


@dataclass(frozen=True)
class ERConfig:
    memory_size: int = memory_size()
    memory_budget: int = memory_budget()
    # None: the method's default_share
    share: float | str | None = setting(None, "-er_share", words=(BALANCED,), kind=Kind(
        float, f"a share above 0 and at most {MAX_SHARE} (nearer 1, memory runs out)", lambda v: 0 < v <= MAX_SHARE),
        help="share of each training batch (from task 1 on) drawn from the memory, or balanced (as many stored rows "
        "of each earlier class as new rows of each new class; default: balanced for er, 0.5 for derpp and er_ace)")  # fmt: skip
    alpha: float = setting(0.1, "-derpp_alpha", kind=NON_NEGATIVE,
                           help="-method derpp: weight of the stored logits' mean squared error")  # fmt: skip
    beta: float = setting(0.5, "-derpp_beta", kind=NON_NEGATIVE,
                          help="-method derpp: weight of the stored labels' cross-entropy")  # fmt: skip

    def __post_init__(self):
        spec.check(self)

    def to_dict(self) -> dict:
        return asdict(self)


class ER(Method):
    name = "er"
    config_class = ERConfig
    stores_rows, stage = True, 1
    stores_logits = False
    default_share = BALANCED  # -er_share unless given: DER++ and ER-ACE keep their papers' half-and-half batches

    def __init__(self, config: ERConfig = ERConfig()):
        super().__init__()
        self.config = config if config.share is not None else replace(config, share=self.default_share)
        self.memory = RowMemory()  # the stored rows (continual.memory), with their logits for DER++
        self.sample_bytes = 0  # one row's input, in bytes
        self.generator = torch.Generator().manual_seed(0)  # memory batches and reservoir draws; checkpointed

    @classmethod
    def add_flags(cls, parser) -> None:
        """The memory's flags are declared once for every memory (``continual.cli``), ER's own here."""
        spec.add_flags(parser, ERConfig, [name for name, _, _ in spec.settings(ERConfig) if name not in MEMORY_FLAGS])

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state(), "sample_bytes": self.sample_bytes}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.sample_bytes = state["sample_bytes"]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "rows" in state_dict:  # a checkpoint written before the shared memory held its buffers
            for name in ("rows", "logits", "seen"):
                state_dict[f"{prefix}memory.{name}"] = state_dict.pop(prefix + name)
            state_dict[f"{prefix}memory.tasks"] = torch.zeros_like(state_dict[f"{prefix}memory.rows"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def rows(self) -> torch.Tensor:
        """The stored rows' indices."""
        return self.memory.rows

    def draw(self, count: int) -> torch.Tensor:
        """``count`` positions in the memory, uniformly with replacement."""
        return self.memory.draw(count, self.generator)

    def memory_rows_per_batch(self, context: Context, batch: int) -> int:
        """Stored rows to add to a batch of ``batch`` new rows: ``share`` of the whole, or (``balanced``) ``batch``
        times the earlier tasks' classes over the current task's."""
        if self.config.share == BALANCED:  # from the task split's class lists: no device read on a hot path
            classes = context.data.task_classes
            return max(1, round(batch * sum(map(len, classes[: context.task])) / len(classes[context.task])))
        return max(1, round(batch * self.config.share / (1 - self.config.share)))

    def extend_batch(self, context: Context, rows: torch.Tensor) -> torch.Tensor:
        if context.task == 0 or len(self.rows) == 0:
            return rows
        return torch.cat([rows, self.rows[self.draw(self.memory_rows_per_batch(context, len(rows)))]])

    def after_optimizer_step(self, context: Context) -> None:
        if self.config.memory_budget > 0:  # the batch's own rows are offered to the reservoir
            own = context.rows
            self._reservoir(context, own, context.output.logits[: len(own)].detach())

    def after_task(self, context: Context) -> None:
        self.sample_bytes = context.data.bytes_per_sample()
        if self.config.memory_budget == 0:
            self._store_per_class(context)

    @torch.no_grad()
    def _store_per_class(self, context: Context) -> None:
        """``memory_size`` of the task's training rows of each of its classes (``continual.memory``)."""
        data = context.data
        rows = class_balanced_rows(data.labels, context.rows, data.task_classes[context.task],
                                   self.config.memory_size, seed=context.task)  # fmt: skip
        self.memory.add(rows, context.task, self._logits_of(context, rows) if self.stores_logits else None)

    @torch.no_grad()
    def _logits_of(self, context: Context, rows: torch.Tensor) -> torch.Tensor:
        context.model.eval()
        return context.model(context.data.inputs(rows)).logits.float()

    def _reservoir(self, context: Context, rows: torch.Tensor, logits: torch.Tensor) -> None:
        logits = logits if self.stores_logits else logits.new_zeros(len(rows), 0)
        self.memory.offer(rows, context.task, logits, self.config.memory_budget, self.generator)

    def memory_bytes(self) -> int:
        """The stored rows' inputs, their labels (8 bytes each) and stored logits."""
        logits = self.memory.logits
        return len(self.rows) * (self.sample_bytes + 8) + logits.numel() * logits.element_size()


class DERPP(ER):
    name = "derpp"
    stores_logits = True
    default_share = 0.5

    @classmethod
    def add_flags(cls, parser) -> None:
        """Declared by ``ER.add_flags``."""

    def extend_batch(self, context: Context, rows: torch.Tensor) -> torch.Tensor:
        return rows  # DER++ replays through its own penalty terms

    def penalty(self, context: Context) -> torch.Tensor | None:
        """``alpha`` MSE to the stored logits on one memory batch, ``beta`` cross-entropy on another."""
        if context.task == 0 or len(self.rows) == 0:
            return None
        model, data, count = context.model, context.data, self.memory_rows_per_batch(context, len(context.rows))
        first = self.draw(count)
        logits = model(data.inputs(self.rows[first]), context.projector).logits.float()
        loss = self.config.alpha * F.mse_loss(logits, self.memory.logits[first])
        second = self.rows[self.draw(count)]
        logits = masked_logits(model(data.inputs(second), context.projector).logits.float(),
                               scenario_mask(data, second, context.config))  # fmt: skip
        return loss + self.config.beta * F.cross_entropy(logits, data.labels[second])


class ERACE(ER):
    name = "er_ace"
    default_share = 0.5

    def __init__(self, config: ERConfig = ERConfig()):
        super().__init__(config)
        self.incoming = 0  # rows of the current batch that are its own (before the stored ones)

    @classmethod
    def add_flags(cls, parser) -> None:
        """Declared by ``ER.add_flags``."""

    def before_task(self, context: Context) -> None:
        self.sample_bytes = context.data.bytes_per_sample()
        if self.config.memory_budget == 0:
            self._store_per_class(context)

    def after_task(self, context: Context) -> None:
        """The task's rows were stored when it started."""

    def extend_batch(self, context: Context, rows: torch.Tensor) -> torch.Tensor:
        self.incoming = len(rows)  # the batch's own rows come first; class_mask narrows only theirs
        if self.config.share != BALANCED or self.config.memory_budget > 0 or context.task == 0:
            return super().extend_batch(context, rows)
        return torch.cat([rows, self._balanced_draw(context, len(rows))])

    def _balanced_draw(self, context: Context, batch: int) -> torch.Tensor:
        """``batch`` over the current task's class count stored rows of every class seen so far: the memory holds
        the current task's rows too, so a uniform draw would give each earlier class fewer than a new class has."""
        classes = [c for task in context.data.task_classes[: context.task + 1] for c in task]
        if getattr(self, "_pools_of", None) != (context.task, len(self.rows)):  # the memory changed: regroup it
            labels = context.data.labels[self.rows]
            self._pools = [self.rows[labels == c] for c in classes]
            self._pools_of = (context.task, len(self.rows))
        per_class = max(1, round(batch / len(context.data.task_classes[context.task])))
        return torch.cat([
            pool[torch.randint(len(pool), (per_class,), generator=self.generator).to(pool.device)]
            for pool in self._pools if len(pool)
        ])  # fmt: skip

    def class_mask(self, context: Context, rows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        """The incoming rows' logits without the earlier tasks' classes; stored rows' (the task's own stored rows
        too) as the scenario gives them."""
        data = context.data
        if context.task == 0:
            return mask
        mask = torch.ones(len(rows), data.n_classes, dtype=torch.bool, device=rows.device) if mask is None else mask
        incoming = torch.arange(len(rows), device=rows.device) < self.incoming
        old_classes = data.task_masks[: context.task].any(0)
        return torch.where(incoming[:, None], mask & ~old_classes, mask)
