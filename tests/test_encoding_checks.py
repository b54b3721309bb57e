"""ttfs_encode's arguments are validated, invalid values are never marked as checked, and an
empty batch works."""

import math

import numpy as np
import pytest
import torch

import batsnn
from batsnn.spikes import marked_valid as _marked_valid


@pytest.mark.parametrize("name", ["t_window", "x_max"])
@pytest.mark.parametrize("value, exc", [
    (math.inf, ValueError), (math.nan, ValueError), (0.0, ValueError), (-1.0, ValueError),
    ("1", TypeError), (True, TypeError), (None, TypeError),
], ids=["inf", "nan", "zero", "negative", "str", "bool", "none"])
def test_window_and_scale_must_be_finite_positive_numbers(name, value, exc):
    with pytest.raises(exc, match=name):
        batsnn.ttfs_encode(torch.tensor([[0.5, 1.0]]), **{name: value})


def test_dt_is_checked_too():
    for dt in (-1e-3, math.inf, math.nan):
        with pytest.raises(ValueError, match="dt must be a finite number >= 0"):
            batsnn.ttfs_encode(torch.tensor([[0.5]]), dt=dt)
    with pytest.raises(TypeError, match="dt must be a real number"):
        batsnn.discretize(torch.zeros(2), "0.001")


def test_numpy_scalars_work_like_floats():
    x = torch.tensor([[0.0, 0.3, 1.0]])
    ref = batsnn.ttfs_encode(x, t_window=0.1, x_max=1.0, dt=0.01)
    got = batsnn.ttfs_encode(x, t_window=np.float64(0.1), x_max=np.float32(1.0),
                             dt=np.float64(0.01))
    assert torch.equal(ref, got)


def test_empty_batches():
    for shape in [(0, 784), (0, 28, 28), (0,)]:
        t = batsnn.ttfs_encode(torch.zeros(shape))
        n = math.prod(shape[1:])
        assert t.shape == (0, n, 1) and t.dtype == torch.float32
        out = batsnn.lif_linear(t, torch.ones(3, n), tau_s=0.1, theta=1.0, max_spikes=2)
        assert out.times.shape == (0, 3, 2)


def test_only_times_known_valid_are_marked_as_checked():
    good = torch.tensor([[0.5, 1.0]])
    assert _marked_valid(batsnn.ttfs_encode(good))  # checked
    assert not _marked_valid(batsnn.ttfs_encode(good, validate=False))  # unchecked floats
    bad = torch.tensor([[2.0, 0.5]])
    t = batsnn.ttfs_encode(bad, validate=False)  # x > x_max: a negative time
    assert not _marked_valid(t) and bool((t < 0).any())
    with pytest.raises(ValueError, match="input_times contains a negative time"):
        batsnn.lif_linear(t, torch.ones(1, 2), tau_s=0.1, theta=1.0, max_spikes=1)
    # uint8 with x_max >= 255 (and bool with x_max >= 1) are in range by type
    img = torch.tensor([[0, 128, 255]], dtype=torch.uint8)
    assert _marked_valid(batsnn.ttfs_encode(img, x_max=255, validate=False))
    assert not _marked_valid(batsnn.ttfs_encode(img, x_max=100, validate=False))
    assert _marked_valid(batsnn.ttfs_encode(torch.tensor([[True, False]]), validate=False))
    # an infinite window used to give NaN times, marked as checked
    with pytest.raises(ValueError, match="t_window"):
        batsnn.ttfs_encode(good, t_window=math.inf)
