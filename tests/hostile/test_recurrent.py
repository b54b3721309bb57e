"""Hostile inputs to the recurrent layer (functional.lif_recurrent, nn.LIFRecurrent): each
call works or raises a ValueError/TypeError naming the argument and the value."""

import math

import numpy as np
import torch

from batsnn.functional import lif_recurrent
from batsnn.nn import LIFRecurrent
from tests.hostile.harness import LibCase, check_lib

INF, NAN = math.inf, math.nan
KW = dict(tau_s=0.05, theta=0.01, max_spikes=3)


def _x(b=2, n=3, dtype=torch.float64):
    return torch.arange(b * n, dtype=dtype).reshape(b, n, 1) * 0.01


def _w(o=4, n=3, dtype=torch.float64):
    return torch.linspace(0.1, 0.3, o * n, dtype=dtype).reshape(o, n)


def _r(o=4, dtype=torch.float64, **at):
    r = torch.full((o, o), 0.1, dtype=dtype)
    for (i, j), v in at.get("values", {}).items():
        r[i, j] = v
    return r


def _rec(x=None, w=None, r=None, **kw):
    return lambda: lif_recurrent(_x() if x is None else x, _w() if w is None else w,
                                 _r() if r is None else r, **{**KW, **kw})


def _ok(result):
    assert result.times.shape == (2, 4, 3) and result.counts.shape == (2, 4)


CASES = [
    # the happy path and its variants
    LibCase("plain", _rec(), errors=(), after=_ok),
    LibCase("float32", _rec(x=_x(dtype=torch.float32), w=_w(dtype=torch.float32),
                            r=_r(dtype=torch.float32)), errors=()),
    LibCase("dt-zero", _rec(dt=0), errors=(), after=_ok),
    # recurrent_weight: type
    LibCase("r-list", _rec(r=[[0.1] * 4] * 4), words=("recurrent_weight", "list")),
    LibCase("r-numpy", _rec(r=np.zeros((4, 4))), words=("recurrent_weight", "ndarray")),
    LibCase("r-none", lambda: lif_recurrent(_x(), _w(), None, **KW),
            words=("recurrent_weight", "NoneType")),
    # dtype
    LibCase("r-float32", _rec(r=_r(dtype=torch.float32)),
            words=("recurrent_weight", "float32", "float64")),
    LibCase("r-int", _rec(r=torch.zeros(4, 4, dtype=torch.int64)),
            words=("recurrent_weight", "int64")),
    LibCase("r-meta-device", _rec(r=torch.zeros(4, 4, dtype=torch.float64, device="meta")),
            words=("recurrent_weight", "meta")),
    # shape
    LibCase("r-rect", _rec(r=torch.zeros(4, 3, dtype=torch.float64)),
            words=("recurrent_weight", "(4, 4)", "(4, 3)")),
    LibCase("r-small", _rec(r=torch.zeros(3, 3, dtype=torch.float64)),
            words=("recurrent_weight", "(3, 3)")),
    LibCase("r-1d", _rec(r=torch.zeros(16, dtype=torch.float64)),
            words=("recurrent_weight", "(16,)")),
    LibCase("r-3d", _rec(r=torch.zeros(1, 4, 4, dtype=torch.float64)),
            words=("recurrent_weight", "(1, 4, 4)")),
    # values
    LibCase("r-nan", _rec(r=_r(values={(1, 2): NAN})), words=("recurrent_weight", "NaN")),
    LibCase("r-inf", _rec(r=_r(values={(0, 0): INF})), words=("recurrent_weight", "infinite")),
    LibCase("r-neg-inf", _rec(r=_r(values={(3, 1): -INF})),
            words=("recurrent_weight", "infinite")),
    LibCase("r-huge", _rec(r=_r(values={(2, 2): 1e30})), words=("recurrent_weight", "1e+30")),
    # the input weight and times keep lif_linear's checks
    LibCase("w-nan", _rec(w=torch.full((4, 3), NAN, dtype=torch.float64)),
            words=("weight", "NaN")),
    LibCase("w-shape", _rec(w=torch.zeros(4, 2, dtype=torch.float64)), words=("weight", "(4, 2)")),
    LibCase("x-nan", _rec(x=torch.full((2, 3, 1), NAN, dtype=torch.float64)),
            words=("input_times", "NaN")),
    LibCase("x-negative", _rec(x=-_x() - 1), words=("input_times",)),
    # parameters
    LibCase("dt-grid", _rec(dt=0.001), errors=(), after=_ok),
    LibCase("dt-grid-emitted", _rec(dt=0.001, reset_at="emitted"), errors=(), after=_ok),
    LibCase("dt-negative", _rec(dt=-0.001), words=("dt", "-0.001")),
    LibCase("dt-nan", _rec(dt=NAN), words=("dt", "nan")),
    LibCase("reset-at-bad", _rec(dt=0.001, reset_at="later"), words=("reset_at", "later")),
    LibCase("tau-negative", _rec(tau_s=-1.0), words=("tau_s",)),
    LibCase("k-zero", _rec(max_spikes=0), words=("max_spikes",)),
    # the module
    LibCase("nn-plain", lambda: LIFRecurrent(3, 4, dtype=torch.float64, **KW)(_x()), errors=(),
            after=_ok),
    LibCase("nn-self-connections-str",
            lambda: LIFRecurrent(3, 4, self_connections="no", **KW),
            words=("self_connections", "'no'")),
    LibCase("nn-recurrent-init-nan", lambda: LIFRecurrent(3, 4, recurrent_init=(NAN, 1), **KW),
            words=("init", "nan")),
    LibCase("nn-recurrent-init-order", lambda: LIFRecurrent(3, 4, recurrent_init=(1, 0), **KW),
            words=("init", "low <= high")),
    LibCase("nn-recurrent-init-scalar", lambda: LIFRecurrent(3, 4, recurrent_init=0.5, **KW),
            words=("init", "0.5")),
    LibCase("nn-out-zero", lambda: LIFRecurrent(3, 0, **KW), words=("out_features", "0")),
    LibCase("nn-dt-negative", lambda: LIFRecurrent(3, 4, dt=-0.01, **KW), words=("dt", "-0.01")),
    LibCase("nn-wrong-input", lambda: LIFRecurrent(3, 4, dtype=torch.float64, **KW)(_x(n=5)),
            words=("weight", "N_in=5")),
]


def test_recurrent_hostile_inputs():
    check_lib(CASES)
