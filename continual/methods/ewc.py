"""Elastic weight consolidation (Kirkpatrick et al., PNAS 2017), in its online form.

After each task the diagonal empirical Fisher information of the weight matrices is estimated on
the task's training rows and added to a running sum; later tasks pay
``lambda / 2 * sum F (W - W*)^2`` for moving a weight away from its value W* after the last task.

Per-sample squared gradients come from one batched backward pass: with DSR a linear layer's
per-sample gradient is the outer product ``g_i a_i^T`` of its output gradient and what its weight
gradient reads (``SpikingOutput.weight_inputs``), so its square is ``g_i^2 (a_i^2)^T``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from common import spec
from common.batching import batch_rows
from common.distributed import current as distributed
from common.spec import NON_NEGATIVE, POSITIVE_INT, setting
from continual.data import masked_logits, scenario_mask
from continual.methods.base import Context, Method


@dataclass(frozen=True)
class EWCConfig:
    # 1e5 diverged on frozen features with SGD at 0.1 (docs/methods.md)
    lambda_: float = setting(1e4, "-ewc_lambda", kind=NON_NEGATIVE,
                             help="strength of the pull towards earlier tasks' weights")  # fmt: skip
    samples: int = setting(1024, "-ewc_samples", kind=POSITIVE_INT,
                           help="training rows per task for the Fisher information")  # fmt: skip
    encoder_samples: int = 256  # -encoder_mode continual: rows per task for the encoder layers' (one pass each)

    def __post_init__(self):
        spec.check(self)

    def to_dict(self) -> dict:
        return asdict(self)


class EWC(Method):
    name = "ewc"
    config_class = EWCConfig

    def __init__(self, config: EWCConfig = EWCConfig()):
        super().__init__()
        self.config = config

    def before_run(self, context: Context) -> None:
        for i, layer in enumerate(context.model.protected_layers):
            self.register_buffer(f"fisher{i}", torch.zeros_like(layer.weight))
            self.register_buffer(f"anchor{i}", layer.weight.detach().clone())
        self.register_buffer("tasks_seen", torch.zeros((), dtype=torch.long))

    def _pairs(self, model):
        """(weight, Fisher, anchor) of the spiking MLP's layers, then (learning encoders) the encoders' layers."""
        for i, layer in enumerate(model.protected_layers):
            yield layer.weight, self.get_buffer(f"fisher{i}"), self.get_buffer(f"anchor{i}")

    def penalty(self, context: Context) -> torch.Tensor | None:
        if int(self.tasks_seen) == 0:
            return None
        total = sum((fisher * (weight - anchor) ** 2).sum() for weight, fisher, anchor in self._pairs(context.model))
        return self.config.lambda_ / 2 * total

    def after_task(self, context: Context) -> None:
        model, data, dist = context.model, context.data, distributed()
        rows = context.rows[: self.config.samples]
        fishers = [torch.zeros_like(layer.weight) for layer in model.projected_layers]
        for batch in batch_rows(dist.shard(rows), 256):  # each process a share; summed below
            output = model(data.inputs(batch))
            logits = masked_logits(output.logits.float(), scenario_mask(data, batch, context.config))
            loss = F.cross_entropy(logits, data.labels[batch], reduction="sum")
            learning = [i for i, out in enumerate(output.layer_outputs) if out.requires_grad]  # a layer another
            grads = torch.autograd.grad(loss, [output.layer_outputs[i] for i in learning])  # method froze keeps 0
            for i, g in zip(learning, grads, strict=True):
                fishers[i] += g.float().pow(2).t() @ output.weight_inputs[i].float().pow(2)
        fishers += self._encoder_fisher(model, data, rows[: self.config.encoder_samples], context.config, len(rows))
        for (weight, fisher, anchor), new in zip(self._pairs(model), fishers, strict=True):
            fisher += dist.all_reduce(new) / len(rows)
            anchor.copy_(weight.detach())
        self.tasks_seen += 1

    def _encoder_fisher(self, model, data, rows, config, total: int) -> list[torch.Tensor]:
        """Per-sample squared gradients of the encoder layers' weights (one backward pass per row, in eval mode),
        summed and scaled to ``total`` rows, the spiking layers' count, so that both become means over rows."""
        layers = model.encoder_layers
        if not layers:
            return []
        fishers = [torch.zeros_like(layer.weight) for layer in layers]
        weights = [layer.weight for layer in layers]
        model.eval()
        for row in distributed().shard(rows).split(1):
            logits = masked_logits(model(data.inputs(row)).logits.float(), scenario_mask(data, row, config))
            grads = torch.autograd.grad(F.cross_entropy(logits, data.labels[row]), weights)
            for fisher, g in zip(fishers, grads, strict=True):
                fisher += g.pow(2)
        return [fisher * (total / max(len(rows), 1)) for fisher in fishers]
