"""Class-incremental heads that store no rows (``-head analytic|ncm``; ``linear``, the trained classifier, is
the default): at test time they answer in place of the classifier, from class statistics of a representation
of the rows (``-head_input``):

- ``hidden``: the spiking MLP's last hidden representation (the classifier's input, the weighted rate ``r2``),
  the default on frozen features;
- ``features`` (learning encoders; their default): each modality encoder's features before its projection,
  concatenated (``models.encoders``: the image CNN's last block pooled to a 2 x 2 grid whatever its
  ``-image_grid``, the audio MLP's last hidden layer). In the leak-free class scenario the encoders, kept in place by HLOP or GPM, still tell every
  class apart there, where the fusion and the spiking MLP trained on two classes at a time do not
  (docs/protocols.md);
- ``embeddings`` (learning encoders): the modality encoders' embeddings, concatenated, before the fusion.

- ``AnalyticHead``: recursive least squares, as ACIL / GKEAL / DS-AL (Zhuang et al.): after each task,
  with the task's training rows' representations ``Phi`` (optionally through a fixed random ReLU
  expansion, as RanPAC) and one-hot labels ``Y``, ``R = (sum Phi^T Phi + gamma I)^-1`` and
  ``W = R sum Phi^T Y`` are updated by the Woodbury identity, so that after ``k`` tasks ``W`` equals
  the ridge least-squares fit on all ``k`` tasks' rows at once. ``Phi`` is scaled by one number fixed
  when task 0 ends (task 0's rows then have a mean squared norm of 1), so that ``gamma`` means the same
  whatever the representation's size and units. It stores ``R`` (D x D), ``W`` and the scale.
- ``NCMHead``: nearest class mean: each class's mean representation (sum and count); a row goes to
  the class whose mean is nearest, by cosine (``-ncm_metric cosine``, the default: row and means
  L2-normalised, as iCaRL's nearest-mean-of-exemplars classifier) or Euclidean distance (``euclidean``),
  which the channels of largest spread dominate.

Both learn only when a task ends (their statistics come from the network as it is then), compose
with every method (HLOP, GPM, ... keep the layers below protected), and answer only over the
classes seen so far. The validation accuracy printed during a task is the trained classifier's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from common import spec
from common.batching import batch_rows
from common.errors import UserError
from common.spec import Kind, setting
from continual.methods.base import Context, Method
from models.spiking_mlp import SpikingOutput

RIDGE = 0.1  # -head_ridge: chosen on the validation speaker of leakfree-class-hlop-analytic before the 2 x 2 image
# grid; on today's runs validation prefers 1 there (docs/protocols.md, "The ridge")
RIDGE_RANGE = (1e-8, 1e8)  # -head_ridge beyond: float64 inverts nothing, or float32 logits underflow to one class
MAX_EXPANSION = 16384  # -head_expansion: the head keeps an expansion x expansion float64 matrix (2 GiB here)
HEADS = ("linear", "analytic", "ncm")
HEAD_INPUTS = ("auto", "hidden", "features", "embeddings")
NCM_METRICS = ("cosine", "euclidean")
AUTO_INPUT = {"frozen": "hidden", "continual": "features"}  # -head_input auto, by -encoder_mode
ENCODER_INPUTS = ("features", "embeddings")  # what only learning encoders provide


@dataclass(frozen=True)
class HeadConfig:
    expansion: int = setting(0, "-head_expansion", kind=Kind(int, f"an integer from 0 to {MAX_EXPANSION} (the "
        f"head keeps an expansion x expansion float64 matrix, 2 GiB at {MAX_EXPANSION})", lambda v: 0 <= v <= MAX_EXPANSION),
        help="-head analytic: a fixed random ReLU expansion of the representation to this size (0: none)")  # fmt: skip
    ridge: float = setting(RIDGE, "-head_ridge", kind=Kind(float, f"a number between {RIDGE_RANGE[0]:g} and "
        f"{RIDGE_RANGE[1]:g} (rows are scaled to unit mean squared norm)", lambda v: RIDGE_RANGE[0] <= v <= RIDGE_RANGE[1]),
        help="-head analytic: the ridge regulariser, for representations scaled so that task 0's rows have "
        "unit mean squared norm")  # fmt: skip
    input: str = setting("auto", "-head_input", choices=HEAD_INPUTS,
        help="what the head reads: hidden (the spiking MLP's last hidden layer) or, with -encoder_mode "
        "continual, features (each modality encoder's features before its projection, the image CNN's last "
        "block pooled to a 2 x 2 grid) or embeddings (the encoders' embeddings, before the fusion); auto: "
        "hidden on frozen features, features with -encoder_mode continual")  # fmt: skip
    metric: str = setting("cosine", "-ncm_metric", choices=NCM_METRICS,
        help="-head ncm: cosine (row and class means L2-normalised, as iCaRL) or euclidean distance")  # fmt: skip

    def __post_init__(self):
        spec.check(self)

    def to_dict(self) -> dict:
        return asdict(self)


class _ClassStatisticsHead(Method):
    """What both heads share: representations of a task's training rows, and the classes seen so far."""

    is_head = True
    stage = 3

    def __init__(self, config: HeadConfig = HeadConfig()):
        super().__init__()
        self.config = config
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool))  # classes seen so far

    config_class = HeadConfig

    @classmethod
    def add_flags(cls, parser) -> None:
        """Declared once, for every head, by ``add_head_flags``."""

    def settle(self, encoder_mode: str) -> None:
        """``-head_input auto``: the encoder mode's input (results.json records what was read)."""
        if self.config.input == "auto":
            self.config = replace(self.config, input=AUTO_INPUT[encoder_mode])

    def is_settled(self) -> bool:
        return self.config.input != "auto"

    def check(self, encoder_mode: str, scenario: str) -> None:
        super().check(encoder_mode, scenario)
        if self.config.input in ENCODER_INPUTS and encoder_mode != "continual":
            raise UserError(f"-head_input {self.config.input}: reads the learning encoders; it needs "
                            "-encoder_mode continual (frozen features: -head_input hidden)")  # fmt: skip

    def before_run(self, context: Context) -> None:
        self.seen = torch.zeros(context.data.n_classes, dtype=torch.bool, device=context.data.device)

    def width(self, context: Context) -> int:
        """The size of the representation the head reads."""
        if self.config.input == "features":
            return context.model.feature_width
        if self.config.input == "embeddings":
            return context.model.embedding_width
        return context.model.snn.classifier.in_features

    def representation(self, output: SpikingOutput) -> torch.Tensor:
        """What the head reads of a forward pass (``-head_input``)."""
        if self.config.input == "features":
            return output.encoder_features
        if self.config.input == "embeddings":
            return output.embeddings
        return output.layer_inputs[2]

    @torch.no_grad()
    def representations(self, context: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's training rows' representations (float64) and labels, in eval mode."""
        model, data = context.model, context.data
        model.eval()
        chunks = [self.representation(model(data.inputs(rows))).double() for rows in batch_rows(context.rows, 256)]
        return torch.cat(chunks), data.labels[context.rows]

    def only_seen(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(~self.seen, float("-inf"))


class AnalyticHead(_ClassStatisticsHead):
    name = "analytic"

    def before_run(self, context: Context) -> None:
        super().before_run(context)
        width = self.width(context)
        dim = self.config.expansion or width
        device = context.data.device
        generator = torch.Generator().manual_seed(0)  # the same fixed expansion in every run
        expansion = torch.randn(width, self.config.expansion, generator=generator) / width**0.5
        self.register_buffer("expansion", expansion.double().to(device) if self.config.expansion else None)
        self.register_buffer("inverse", torch.eye(dim, dtype=torch.float64, device=device) / self.config.ridge)
        self.register_buffer("weight", torch.zeros(dim, context.data.n_classes, dtype=torch.float64, device=device))
        self.register_buffer("scale", torch.zeros((), dtype=torch.float64, device=device))  # set when task 0 ends

    def expanded(self, representation: torch.Tensor) -> torch.Tensor:
        representation = representation.double()
        return representation if self.expansion is None else F.relu(representation @ self.expansion)

    def features(self, representation: torch.Tensor) -> torch.Tensor:
        """``Phi``: the representation, expanded if asked, times the scale fixed at task 0's end."""
        return self.expanded(representation) * self.scale

    @torch.no_grad()
    def after_task(self, context: Context) -> None:
        """The Woodbury update: R <- R - R Phi^T (I + Phi R Phi^T)^-1 Phi R;  W <- W + R Phi^T (Y - Phi W)."""
        representation, labels = self.representations(context)
        phi = self.expanded(representation)
        if not self.scale:  # task 0's rows: unit mean squared norm, from now on
            self.scale.fill_(phi.pow(2).sum(1).mean().clamp(min=1e-12).rsqrt().item())
        phi = phi * self.scale
        targets = F.one_hot(labels, self.weight.shape[1]).double()
        gain = self.inverse @ phi.t()  # R Phi^T
        inner = torch.eye(len(phi), dtype=phi.dtype, device=phi.device) + phi @ gain
        self.inverse -= gain @ torch.linalg.solve(inner, gain.t())
        self.weight += self.inverse @ phi.t() @ (targets - phi @ self.weight)
        self.seen[labels.unique()] = True

    def predict(self, context: Context, output: SpikingOutput) -> torch.Tensor | None:
        if not self.seen.any():
            return None
        return self.only_seen((self.features(self.representation(output)) @ self.weight).float())


class NCMHead(_ClassStatisticsHead):
    name = "ncm"

    def before_run(self, context: Context) -> None:
        super().before_run(context)
        width, classes = self.width(context), context.data.n_classes
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
        representation = self.representation(output).double()
        if self.config.metric == "euclidean":
            return self.only_seen(-torch.cdist(representation, means).float())
        return self.only_seen((F.normalize(representation, dim=1) @ F.normalize(means, dim=1).t()).float())


HEAD_METHODS = {"analytic": AnalyticHead, "ncm": NCMHead}


def add_head_flags(group) -> None:
    group.flag("-head", default="linear", choices=HEADS,
               help="the head that answers at test time: linear (the trained classifier), analytic (recursive least "
               "squares on the last hidden representation, no stored rows) or ncm (nearest class mean)")  # fmt: skip
    spec.add_flags(group, HeadConfig)
