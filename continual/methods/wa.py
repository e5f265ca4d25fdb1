"""Weight aligning (WA; Zhao et al., CVPR 2020): a bias correction of the trained classifier for the class scenario.

A classifier trained on a few new classes at a time grows their weight vectors longer than the old
classes' (the newest classes win the argmax). After each task from task 1 on, ``WA`` rescales the
new classes' weight rows by ``gamma = mean |w_old| / mean |w_new|`` (over the classes of earlier tasks
and of this task), so that both groups have the same mean norm. It stores nothing and composes with
every method (``-method er_ace,wa``); it changes only the classifier's weights, at the task's end.
"""

from __future__ import annotations

import torch

from continual.methods.base import SCENARIOS, Context, Method


class WA(Method):
    name = "wa"
    stage = 2
    scenarios = tuple(s for s in SCENARIOS if s == "class")

    @torch.no_grad()
    def after_task(self, context: Context) -> None:
        if context.task == 0:
            return
        data, weight = context.data, context.model.snn.classifier.weight
        old = torch.tensor([c for task in data.task_classes[: context.task] for c in task], device=weight.device)
        new = torch.tensor(data.task_classes[context.task], device=weight.device)
        gamma = weight[old].norm(dim=1).mean() / weight[new].norm(dim=1).mean().clamp(min=1e-12)
        weight[new] *= gamma
