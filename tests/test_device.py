"""The compute device and the CPU memory the scripts keep for reuse."""

import sys

from common.device import keep_freed_memory


def test_freed_cpu_memory_is_kept_for_reuse_on_linux():
    """The scripts keep glibc from returning freed buffers to the system (common.device.keep_freed_memory)."""
    assert keep_freed_memory() is sys.platform.startswith("linux")
