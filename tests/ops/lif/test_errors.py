"""Bad input gets a clear error naming the argument and the value."""

import math

import pytest
import torch

import batsnn
from batsnn.nn import LIFLinear

X = torch.tensor([[[0.01, 0.02], [0.03, math.inf]]], dtype=torch.float64)
W = torch.ones(3, 2, dtype=torch.float64)
KW = dict(tau_s=0.05, theta=0.2, max_spikes=2)


def _call(x=X, w=W, **over):
    return batsnn.lif_linear(x, w, **{**KW, **over})


@pytest.mark.parametrize("over, exc, words", [
    (dict(tau_s=0.0), ValueError, "tau_s"),
    (dict(tau_s=-1.0), ValueError, "tau_s"),
    (dict(tau_s=math.nan), ValueError, "tau_s"),
    (dict(theta=0.0), ValueError, "theta"),
    (dict(theta=-0.5), ValueError, "theta"),
    (dict(delta_theta=-0.1), ValueError, "delta_theta"),
    (dict(max_spikes=0), ValueError, "max_spikes"),
    (dict(max_spikes=2.5), TypeError, "max_spikes"),
    (dict(max_spikes=True), TypeError, "max_spikes"),
    (dict(dt=-1e-3), ValueError, "dt"),
    (dict(dt=math.inf), ValueError, "dt"),
    (dict(t_max=0.0), ValueError, "t_max"),
    (dict(theta="1"), TypeError, "theta"),
], ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={v[k]}" for k in v))
def test_bad_hyperparameters(over, exc, words):
    with pytest.raises(exc, match=words):
        _call(**over)


def test_bad_input_times():
    with pytest.raises(ValueError, match=r"input_times.*NaN.*\[0, 0, 1\]"):
        _call(x=torch.tensor([[[0.01, math.nan], [0.03, math.inf]]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"input_times.*negative.*-0.5"):
        _call(x=torch.tensor([[[-0.5, 0.02], [0.03, math.inf]]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"input_times.*ascending.*\[0, 0\]"):
        _call(x=torch.tensor([[[0.02, 0.01], [0.03, math.inf]]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"padded with \+inf.*\[0, 1\]"):
        _call(x=torch.tensor([[[0.01, 0.02], [math.inf, 0.03]]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"input_times.*shape.*\(2, 2\)"):
        _call(x=X[0])
    with pytest.raises(TypeError, match=r"input_times.*float32 or float64.*int64"):
        _call(x=torch.zeros(1, 2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"input_times.*float32 or float64.*float16"):
        _call(x=X.half(), w=W.half())
    with pytest.raises(TypeError, match="input_times must be a torch.Tensor"):
        _call(x=[[[0.1]]])


def test_bad_weight():
    with pytest.raises(ValueError, match=r"weight.*shape.*N_in=2.*\(3, 5\)"):
        _call(w=torch.ones(3, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="weight dtype torch.float32 does not match"):
        _call(w=W.float())
    with pytest.raises(ValueError, match="weight contains NaN"):
        _call(w=torch.tensor([[1.0, math.nan]] * 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        _call(w=[[1.0, 1.0]])


def test_same_errors_from_the_module():
    with pytest.raises(ValueError, match="theta"):
        LIFLinear(2, 3, tau_s=0.05, theta=-1.0, max_spikes=2)
    with pytest.raises(ValueError, match="in_features"):
        LIFLinear(0, 3, tau_s=0.05, theta=1.0, max_spikes=2)
    layer = LIFLinear(2, 3, tau_s=0.05, theta=1.0, max_spikes=2)
    with pytest.raises(ValueError, match="input_times.*negative"):
        layer(torch.tensor([[[-1.0], [0.1]]]))


def test_modified_outputs_are_checked_again():
    """Outputs of batsnn skip the data checks only while they are unmodified."""
    x = batsnn.ttfs_encode(torch.tensor([[0.5, 1.0]]), dtype=torch.float64)
    out = _call(x=x, w=torch.full((3, 2), 30.0, dtype=torch.float64))
    assert out.counts.sum() > 0
    out.times.mul_(-1)  # in place: the version counter moves on
    with pytest.raises(ValueError, match="negative"):
        _call(x=out.times, w=torch.ones(3, 3, dtype=torch.float64))
    x.fill_(math.nan)
    with pytest.raises(ValueError, match="NaN"):
        _call(x=x)
