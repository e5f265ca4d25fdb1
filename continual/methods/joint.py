"""Joint training: every task's training data at once, the upper bound every table needs.

Its data stream is one experience, the union of all tasks' training rows, evaluated on every
task after it; the accuracy matrix has its last row only, BWT is undefined.
"""

from __future__ import annotations

from continual.methods.base import Method


class Joint(Method):
    name = "joint"
    stream = "joint"

    def __init__(self):
        super().__init__()
        self.stored_bytes = 0

    def after_task(self, context) -> None:
        rows = context.data.all_train_rows()
        self.stored_bytes = rows.numel() * context.data.bytes_per_sample()

    def memory_bytes(self) -> int:
        """Joint training keeps every task's training data."""
        return self.stored_bytes
