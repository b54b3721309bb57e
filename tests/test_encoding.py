import math

import pytest
import torch

import batsnn
from batsnn.ops.lif.naive import grid


def test_discretize_is_first_grid_point_strictly_after():
    t = torch.tensor([0.0, 0.0004, 0.001, 0.0015, math.inf], dtype=torch.float64)
    d = batsnn.discretize(t, 1e-3)
    assert d[-1] == math.inf
    assert torch.all(d[:-1] > t[:-1])
    for a, b in zip(t.tolist(), d.tolist()):
        assert b == grid(a, 1e-3)  # same formula: t + dt - fmod(t, dt)
    assert abs(d[0].item() - 1e-3) < 1e-15 and abs(d[2].item() - 2e-3) < 1e-15
    assert batsnn.discretize(t, None) is t and batsnn.discretize(t, 0) is t


def test_discretize_errors():
    with pytest.raises(ValueError, match="dt"):
        batsnn.discretize(torch.zeros(2), -1.0)


def test_ttfs_encode():
    x = torch.tensor([[0.0, 0.5, 1.0], [0.25, 0.0, 0.0]])
    t = batsnn.ttfs_encode(x)
    assert t.shape == (2, 3, 1) and t.dtype == torch.float32
    assert math.isinf(t[0, 0, 0]) and math.isinf(t[1, 2, 0])
    assert t[0, 1, 0].item() == pytest.approx(0.05)
    assert t[0, 2, 0].item() == 0.0
    assert t[1, 0, 0].item() == pytest.approx(0.075)
    raw = batsnn.ttfs_encode(torch.tensor([[0, 255, 51]]), x_max=255, dtype=torch.float64)
    assert raw[0, 1, 0] == 0.0 and raw[0, 2, 0].item() == pytest.approx(0.08)
    d = batsnn.ttfs_encode(x, dt=0.01)
    assert d[0, 2, 0].item() == pytest.approx(0.01) and math.isinf(d[0, 0, 0])
    with pytest.raises(ValueError, match=r"x must lie in \[0, x_max=1.0\]"):
        batsnn.ttfs_encode(torch.tensor([[2.0]]))
