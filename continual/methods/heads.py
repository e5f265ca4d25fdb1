"""Class-incremental heads that store no rows (``-head analytic|ncm``; ``linear``, the trained classifier, is
the default): at test time they answer in place of the classifier, from class statistics of the
spiking MLP's last hidden representation (the classifier's input, the weighted rate ``r2``).

- ``AnalyticHead``: recursive least squares, as ACIL / GKEAL / DS-AL (Zhuang et al.): after each task,
  with the task's training rows' representations ``Phi`` (optionally through a fixed random ReLU
  expansion, as RanPAC) and one-hot labels ``Y``, ``R = (sum Phi^T Phi + gamma I)^-1`` and
  ``W = R sum Phi^T Y`` are updated by the Woodbury identity, so that after ``k`` tasks ``W`` equals
  the ridge least-squares fit on all ``k`` tasks' rows at once. It stores ``R`` (D x D) and ``W``.
- ``NCMHead``: nearest class mean: each class's mean representation (sum and count); a row goes to
  the class whose mean is nearest (Euclidean).

Both learn only when a task ends (their statistics come from the network as it is then), compose
with every method (HLOP, GPM, ... keep the layers below protected), and answer only over the
classes seen so far. The validation accuracy printed during a task is the trained classifier's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from common.batching import batch_rows
from common.cli import non_negative_int, positive_float
from continual.methods.base import Context, Method
from models.spiking_mlp import SpikingOutput

HEADS = ("linear", "analytic", "ncm")


@dataclass(frozen=True)
class HeadConfig:
    expansion: int = 0  # analytic: a fixed random ReLU expansion of the representation to this size (0: none)
    ridge: float = 1.0  # analytic: gamma, the ridge regulariser

    def to_dict(self) -> dict:
        return asdict(self)


class _ClassStatisticsHead(Method):
    """What both heads share: representations of a task's training rows, and the classes seen so far."""

    is_head = True

    def __init__(self, config: HeadConfig = HeadConfig()):
        super().__init__()
        self.config = config
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool))  # classes seen so far

    @classmethod
    def add_flags(cls, parser) -> None:
        """Declared once, for every head, by ``add_head_flags``."""

    @classmethod
    def from_args(cls, args) -> Method:
        return cls(HeadConfig(expansion=args.head_expansion, ridge=args.head_ridge))

    def before_run(self, context: Context) -> None:
        self.seen = torch.zeros(context.data.n_classes, dtype=torch.bool, device=context.data.device)

    @torch.no_grad()
    def representations(self, context: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's training rows' last hidden representations (float64) and labels, in eval mode."""
        model, data = context.model, context.data
        model.eval()
        chunks = [model(data.inputs(rows)).layer_inputs[2].double() for rows in batch_rows(context.rows, 256)]
        return torch.cat(chunks), data.labels[context.rows]

    def only_seen(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(~self.seen, float("-inf"))


class AnalyticHead(_ClassStatisticsHead):
    name = "analytic"

    def before_run(self, context: Context) -> None:
        super().before_run(context)
        width = context.model.snn.classifier.in_features
        dim = self.config.expansion or width
        device = context.data.device
        generator = torch.Generator().manual_seed(0)  # the same fixed expansion in every run
        expansion = torch.randn(width, self.config.expansion, generator=generator) / width**0.5
        self.register_buffer("expansion", expansion.double().to(device) if self.config.expansion else None)
        self.register_buffer("inverse", torch.eye(dim, dtype=torch.float64, device=device) / self.config.ridge)
        self.register_buffer("weight", torch.zeros(dim, context.data.n_classes, dtype=torch.float64, device=device))

    def features(self, representation: torch.Tensor) -> torch.Tensor:
        representation = representation.double()
        return representation if self.expansion is None else F.relu(representation @ self.expansion)

    @torch.no_grad()
    def after_task(self, context: Context) -> None:
        """The Woodbury update: R <- R - R Phi^T (I + Phi R Phi^T)^-1 Phi R;  W <- W + R Phi^T (Y - Phi W)."""
        representation, labels = self.representations(context)
        phi = self.features(representation)
        targets = F.one_hot(labels, self.weight.shape[1]).double()
        gain = self.inverse @ phi.t()  # R Phi^T
        inner = torch.eye(len(phi), dtype=phi.dtype, device=phi.device) + phi @ gain
        self.inverse -= gain @ torch.linalg.solve(inner, gain.t())
        self.weight += self.inverse @ phi.t() @ (targets - phi @ self.weight)
        self.seen[labels.unique()] = True

    def predict(self, context: Context, output: SpikingOutput) -> torch.Tensor | None:
        if not self.seen.any():
            return None
        return self.only_seen((self.features(output.layer_inputs[2]) @ self.weight).float())


class NCMHead(_ClassStatisticsHead):
    name = "ncm"

    def before_run(self, context: Context) -> None:
        super().before_run(context)
        width, classes = context.model.snn.classifier.in_features, context.data.n_classes
        self.register_buffer("sums", torch.zeros(classes, width, dtype=torch.float64, device=context.data.device))
        self.register_buffer("counts", torch.zeros(classes, dtype=torch.float64, device=context.data.device))

    @torch.no_grad()
    def after_task(self, context: Context) -> None:
        representation, labels = self.representations(context)
        self.sums.index_add_(0, labels, representation)
        self.counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))
        self.seen[labels.unique()] = True

    def predict(self, context: Context, output: SpikingOutput) -> torch.Tensor | None:
        if not self.seen.any():
            return None
        means = self.sums / self.counts.clamp(min=1)[:, None]
        return self.only_seen(-torch.cdist(output.layer_inputs[2].double(), means).float())


HEAD_METHODS = {"analytic": AnalyticHead, "ncm": NCMHead}


def add_head_flags(group) -> None:
    c = HeadConfig()
    group.flag("-head", default="linear", choices=HEADS,
               help="the head that answers at test time: linear (the trained classifier), analytic (recursive least "
               "squares on the last hidden representation, no stored rows) or ncm (nearest class mean)")  # fmt: skip
    group.flag("-head_expansion", type=non_negative_int, default=c.expansion,
               help="-head analytic: a fixed random ReLU expansion of the representation to this size (0: none)")  # fmt: skip
    group.flag("-head_ridge", type=positive_float, default=c.ridge, help="-head analytic: the ridge regulariser")
