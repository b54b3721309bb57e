"""Hostile input to per-synapse delays: ``lif_linear(..., delay=)`` and
``LIFLinear(delays=True, ...)`` name the argument and the bad value (shape, dtype, device,
non-finite and negative delays, delayed times past the supported range, bad bounds)."""

import math

import torch

from batsnn.functional import lif_linear
from batsnn.nn import LIFLinear
from tests.hostile.harness import LibCase, check_lib

KW = dict(tau_s=0.01, theta=0.3, max_spikes=3)
F64 = torch.float64


def _x(dtype=F64, device="cpu"):
    return torch.tensor([[[0.001, math.inf], [0.002, 0.004], [math.inf, math.inf]]],
                        dtype=dtype, device=device)


def _w(dtype=F64, device="cpu"):
    return torch.ones(2, 3, dtype=dtype, device=device)


def _d(*bad, shape=(2, 3), dtype=F64, device="cpu"):
    """Delays of 1 ms with ``bad = (n, i, value)`` put in."""
    d = torch.full(shape, 1e-3, dtype=dtype, device=device)
    if bad:
        n, i, v = bad
        d[n, i] = v
    return d


def _call(delay, x=None, w=None, **kw):
    return lambda: lif_linear(_x() if x is None else x, _w() if w is None else w,
                              **dict(KW, **kw), delay=delay)


def _layer(**kw):
    return lambda: LIFLinear(3, 2, **dict(KW, **kw), delays=True, dtype=F64)


CASES = [
    LibCase("delay-list", _call([[0.0] * 3] * 2), (TypeError,), ("delay", "list")),
    LibCase("delay-numpy", _call(_d().numpy()), (TypeError,), ("delay", "ndarray")),
    LibCase("delay-float32", _call(_d(dtype=torch.float32)), (TypeError,),
            ("delay", "float32", "float64")),
    LibCase("delay-int", _call(torch.zeros(2, 3, dtype=torch.int64)), (TypeError,),
            ("delay", "int64")),
    LibCase("delay-shape-transposed", _call(_d(shape=(3, 2))), (ValueError,),
            ("delay", "(2, 3)", "(3, 2)")),
    LibCase("delay-shape-1d", _call(_d(shape=(3,))), (ValueError,), ("delay", "(3,)")),
    LibCase("delay-shape-3d", _call(_d(shape=(2, 3, 1))), (ValueError,), ("delay", "(2, 3, 1)")),
    LibCase("delay-nan", _call(_d(1, 2, math.nan)), (ValueError,), ("delay[1, 2]", "nan")),
    LibCase("delay-inf", _call(_d(0, 1, math.inf)), (ValueError,), ("delay[0, 1]", "inf")),
    LibCase("delay-negative", _call(_d(1, 0, -1e-3)), (ValueError,), ("delay[1, 0]", "-0.001")),
    LibCase("delay-negative-tiny", _call(_d(0, 0, -1e-300)), (ValueError,),
            ("delay[0, 0]", "-1e-300")),
    LibCase("delay-device-meta", _call(_d(device="meta")), (ValueError,), ("delay", "meta")),
    LibCase("delay-past-max-time", _call(_d(1, 1, 1e5)), (ValueError,),
            ("delay[1, 1]", "max_time", "input 1")),
    LibCase("delay-zero-ok", _call(_d(0, 0, 0.0)), ()),
    LibCase("layer-delays-str", lambda: LIFLinear(3, 2, **KW, delays="yes"), (TypeError,),
            ("delays", "'yes'")),
    LibCase("layer-delay-init-negative", _layer(delay_init=(-1e-3, 0.0)), (ValueError,),
            ("delay_init", "-0.001")),
    LibCase("layer-delay-init-nan", _layer(delay_init=(0.0, math.nan)), (ValueError,),
            ("delay_init", "nan")),
    LibCase("layer-delay-init-scalar", _layer(delay_init=0.001), (TypeError,),
            ("delay_init", "0.001")),
    LibCase("layer-delay-init-reversed", _layer(delay_init=(0.002, 0.001)), (ValueError,),
            ("delay_init", "low <= high")),
    LibCase("layer-delay-init-above-max", _layer(delay_init=(0.0, 0.01), max_delay=0.005),
            (ValueError,), ("delay_init", "max_delay = 0.005")),
    LibCase("layer-max-delay-zero", _layer(max_delay=0.0), (ValueError,), ("max_delay", "0.0")),
    LibCase("layer-max-delay-nan", _layer(max_delay=math.nan), (ValueError,),
            ("max_delay", "nan")),
    LibCase("layer-max-delay-str", _layer(max_delay="1"), (ValueError,), ("max_delay", "'1'")),
    LibCase("layer-input-width", lambda: LIFLinear(3, 2, **KW, delays=True, dtype=F64)(
        torch.zeros(1, 4, 1, dtype=F64)), (ValueError,), ("weight", "N_in=4")),
]


def test_synaptic_delay_errors_name_the_argument():
    check_lib(CASES)
