"""The LIF time loop on a CPU as one compiled pass, with the same spikes as ``models.neurons``' PyTorch loop.

The PyTorch loop makes four passes over a layer's neurons per timestep, each its own kernel call, and on a CPU
that costs about an eighth of the spiking MLP's training step (docs/scale.md). This kernel runs every timestep
over a block of neurons while their membranes stay in cache, with the same float32 operations in the same
order (no fused multiply-add), so the spike trains are equal, bit for bit. PyTorch's C++ extension loader
builds it on first use, once per machine and PyTorch version (under a minute; PyTorch caches the build, in
``TORCH_EXTENSIONS_DIR`` if set). Where it cannot be built (no C++ compiler or ninja), or with
``MMHLOP_CPU_LIF=0``, the PyTorch loop runs instead: the same spikes, slower.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
import warnings
from pathlib import Path

import torch

SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>

// drive: (steps, m) or, constant over time, (m); float32, contiguous. Returns the spikes (steps, m), 0 or
// spike_size, and the final membrane (m). Per step: u = u * beta + drive; fired = u >= fire_at;
// u = u + fired * minus_vth (the PyTorch loop's mul_, add_, ge and addcmul_, in that order).
std::vector<torch::Tensor> lif(torch::Tensor drive, double beta, double fire_at, double minus_vth,
                               double spike_size, int64_t steps) {
  const bool constant = drive.dim() == 1;
  const int64_t m = constant ? drive.size(0) : drive.size(1);
  auto spikes = torch::empty({steps, m}, drive.options());
  auto membrane = torch::zeros({m}, drive.options());
  const float* __restrict__ d = drive.data_ptr<float>();
  float* __restrict__ s = spikes.data_ptr<float>();
  float* __restrict__ u = membrane.data_ptr<float>();
  const float b = beta, f = fire_at, mv = minus_vth, size = spike_size;
  const int64_t block = 1024;
  at::parallel_for(0, (m + block - 1) / block, 1, [&](int64_t first, int64_t last) {
    for (int64_t start = first * block; start < std::min(m, last * block); start += block) {
      const int64_t stop = std::min(m, start + block);
      for (int64_t t = 0; t < steps; ++t) {
        const float* __restrict__ dt = constant ? d : d + t * m;
        float* __restrict__ st = s + t * m;
        for (int64_t i = start; i < stop; ++i) {
          float x = u[i] * b + dt[i];
          const float fired = x >= f ? 1.0f : 0.0f;
          x = x + fired * mv;
          u[i] = x;
          st[i] = fired * size;
        }
      }
    }
  });
  return {spikes, membrane};
}
"""
# -march=native vectorises the loop (without it the build is slower than PyTorch's loop); the name holds the
# CPU's model, so a build is never loaded on another kind of CPU; no contraction into fused multiply-adds,
# which would round differently from the PyTorch loop
FLAGS = ["-O3", "-march=native", "-ffp-contract=off"]

_kernel = None
_tried = False


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def kernel():
    """The built kernel's module, or None where it cannot be built or ``MMHLOP_CPU_LIF=0`` turns it off."""
    global _kernel, _tried
    if _tried:
        return _kernel
    _tried = True
    if os.environ.get("MMHLOP_CPU_LIF", "1") == "0":
        return None
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # its note that CUDA is absent
    from torch.utils import cpp_extension

    key = hashlib.sha256(f"{_cpu_model()}|{torch.__version__}".encode()).hexdigest()[:12]
    try:
        _kernel = cpp_extension.load_inline(f"mmhlop_cpu_lif_{key}", cpp_sources=SOURCE, functions=["lif"],
                                            extra_cflags=FLAGS)  # fmt: skip
    except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as error:  # no compiler, a failed build
        warnings.warn(f"the CPU LIF kernel could not be built ({type(error).__name__}: {str(error)[:200]}); the "
                      "PyTorch loop runs instead (the same spikes, slower)", stacklevel=2)  # fmt: skip
    return _kernel


def simulate(drive: torch.Tensor, constant: bool, beta: float, fire_at: float, minus_vth: float, spike_size: float,
             steps: int) -> tuple[torch.Tensor, torch.Tensor] | None:  # fmt: skip
    """Spikes (steps, *neurons) and the final membrane (*neurons) of the float32 CPU ``drive`` ((steps, *neurons),
    or (*neurons) when ``constant``), or None where the kernel is not available."""
    module = kernel()
    if module is None:
        return None
    neurons = drive.shape if constant else drive.shape[1:]
    flat = drive.contiguous().reshape(-1) if constant else drive.contiguous().reshape(steps, -1)
    spikes, membrane = module.lif(flat, beta, fire_at, minus_vth, spike_size, steps)
    return spikes.reshape(steps, *neurons), membrane.reshape(neurons)
