"""The convergence experiment's data: the two samples and each cell's initial weights."""

from __future__ import annotations

import hashlib

import torch

from batsnn.encoding import discretize
from batsnn.experiments.convergence.config import INPUT_TIMES, LABELS

__all__ = ["cell_generator", "experiment_data", "initial_weights"]


def experiment_data(dt: float | None = None, dtype=torch.float64, device="cpu"):
    """The two samples: ``(inputs (2, 4, 1) spike times in s, labels (2,) int64)``; with
    ``dt`` the times are moved to the grid by :func:`batsnn.discretize`."""
    x = torch.tensor(INPUT_TIMES, dtype=torch.float64).unsqueeze(-1)
    x = discretize(x, dt).to(dtype=dtype, device=device)
    return x, torch.tensor(LABELS, dtype=torch.int64, device=device)


def cell_generator(seed: int, variant: str, mean: float, std: float) -> torch.Generator:
    """A CPU generator seeded from ``(seed, variant, mean, std)`` only, so a cell's weights do
    not depend on the grid, the chunking or the order of work."""
    key = f"batsnn-convergence:{int(seed)}:{variant}:{float(mean):.10g}:{float(std):.10g}"
    digest = hashlib.sha256(key.encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def initial_weights(seed: int, variant: str, mean: float, std: float, repeats: int,
                    dtype=torch.float64) -> torch.Tensor:
    """``(repeats, 2, 4)`` initial weights of a cell, drawn from ``N(mean, std)``."""
    g = cell_generator(seed, variant, mean, std)
    z = torch.randn((repeats, 2, len(INPUT_TIMES[0])), generator=g, dtype=torch.float64)
    return (mean + std * z).to(dtype)

