"""LIFParams: validated once, numbers of any kind, errors that name the field."""

import math

import numpy as np
import pytest

from batsnn import LIFParams


def test_defaults_and_derived():
    p = LIFParams(tau_s=0.13, theta=0.2, max_spikes=30)
    assert p.delta_theta == 0.2 and p.t_max == math.inf and p.dt == 0.0
    assert p.tau == pytest.approx(0.26) and not p.on_grid
    q = p.replace(dt=1e-3)
    assert q.on_grid and q.dt == 1e-3 and p.dt == 0.0
    assert LIFParams(tau_s=1, theta=1, max_spikes=1, dt=None).dt == 0.0
    with pytest.raises(AttributeError):
        p.theta = 1.0  # frozen


def test_numpy_scalars_are_plain_numbers():
    p = LIFParams(tau_s=np.float32(0.25), theta=np.float64(0.5), max_spikes=np.int64(3),
                  delta_theta=np.float32(0.25), t_max=np.float64(1.0), dt=np.float64(1e-3))
    for name in ("tau_s", "theta", "delta_theta", "t_max", "dt"):
        assert type(getattr(p, name)) is float, name
    assert type(p.max_spikes) is int and p.max_spikes == 3
    assert p == LIFParams(tau_s=0.25, theta=0.5, max_spikes=3, delta_theta=0.25, t_max=1.0,
                          dt=float(np.float64(1e-3)))


@pytest.mark.parametrize("field, value, exc", [
    ("tau_s", 0.0, ValueError), ("tau_s", -1.0, ValueError), ("tau_s", math.inf, ValueError),
    ("tau_s", math.nan, ValueError), ("tau_s", "0.1", TypeError), ("tau_s", None, TypeError),
    ("theta", 0.0, ValueError), ("theta", True, TypeError),
    ("delta_theta", -0.1, ValueError), ("delta_theta", math.nan, ValueError),
    ("max_spikes", 0, ValueError), ("max_spikes", 2.0, TypeError),
    ("max_spikes", np.float64(2), TypeError), ("max_spikes", False, TypeError),
    ("t_max", 0.0, ValueError), ("t_max", -1.0, ValueError),
    ("dt", -1e-3, ValueError), ("dt", math.inf, ValueError), ("dt", [1e-3], TypeError),
], ids=lambda v: repr(v) if not isinstance(v, type) else v.__name__)
def test_bad_field_named(field, value, exc):
    kw = dict(tau_s=0.1, theta=0.2, max_spikes=2)
    kw[field] = value
    with pytest.raises(exc, match=field):
        LIFParams(**kw)


def test_zero_reset_allowed():
    assert LIFParams(tau_s=0.1, theta=0.2, max_spikes=2, delta_theta=0.0).delta_theta == 0.0


def test_dt_range_keeps_every_supported_grid_index_exact():
    from batsnn.params import DT_RANGE, DT_RATIO_RANGE, GRID_INDEX_MAX, TAU_S_RANGE, TIME_RATIO_MAX
    from batsnn.ops.lif.grid import floor_index_scalar

    # the longest supported time over the shortest step stays an exact integer
    assert TIME_RATIO_MAX / DT_RATIO_RANGE[0] < GRID_INDEX_MAX
    for tau_s in (1e-9, 0.13, 1e6):
        p = LIFParams(tau_s=tau_s, theta=1, max_spikes=1, dt=DT_RATIO_RANGE[0] * tau_s)
        assert p.max_time == TIME_RATIO_MAX * tau_s
        k = floor_index_scalar(p.max_time, p.dt)
        assert k < GRID_INDEX_MAX and k == math.floor(k) and (k + 1) * p.dt > p.max_time
        assert LIFParams(tau_s=tau_s, theta=1, max_spikes=1,
                         dt=DT_RATIO_RANGE[1] * tau_s).dt == DT_RATIO_RANGE[1] * tau_s
    assert DT_RANGE == (DT_RATIO_RANGE[0] * TAU_S_RANGE[0], DT_RATIO_RANGE[1] * TAU_S_RANGE[1])
    for dt in (1e-320, 1e-11, 1e7):
        with pytest.raises(ValueError, match=rf"dt={dt!r} is outside the range .* tau_s=1\.0"):
            LIFParams(tau_s=1.0, theta=1, max_spikes=1, dt=dt)
    assert LIFParams(tau_s=1.0, theta=1, max_spikes=1, dt=0).dt == 0.0
