"""The grid's last edge: a decimal ``t_max`` that is a multiple of ``dt`` keeps its last grid
point (:func:`batsnn.ops.lif.grid.last_index`), in every backend, float32 and float64.

The Triton kernels run the same checks in the interpreter (``parity.TRITON_EXTRAS``:
``last_grid_point``, ``input_at_horizon``; :mod:`tests.ops.lif.test_parity`).
"""

import math

import pytest
import torch

from batsnn.ops.lif import events as ref_events
from batsnn.ops.lif.grid import floor_index, floor_index_scalar, last_index, stop_time
from batsnn.params import LIFParams
from tests.ops.lif import parity

#: decimal steps as a user types them: ``(mantissa, exponent)`` of ``dt = a * 10**-e``
STEPS = [(1, 4), (3, 4), (7, 4), (1, 3), (4, 3), (1, 1), (3, 1)]


def _decimal(a: int, e: int) -> float:
    """The float a user gets by typing ``a * 10**-e`` as a decimal literal."""
    return float(f"{a}e-{e}")


@pytest.mark.parametrize("a, e", STEPS, ids=[f"{a}e-{e}" for a, e in STEPS])
def test_last_index_of_a_decimal_multiple_is_the_integer_index(a, e):
    """``t_max = k * dt`` written as a decimal: ``k`` by plain integer arithmetic, whatever
    ``k * dt`` gives in floating point; half-way horizons give the index below."""
    dt = _decimal(a, e)
    lost = 0
    for k in range(1, 401):
        t_max = _decimal(k * a, e)
        assert last_index(t_max, dt) == k, (dt, t_max, k)
        assert last_index(_decimal(10 * k * a + 5 * a, e + 1), dt) == k, (dt, k)
        lost += floor_index_scalar(t_max, dt) < k
    if (a, e) not in ((3, 4), (7, 4), (3, 1)):  # these lose no point below k = 400
        assert lost > 0, "the floating-point rule would lose no point: a vacuous step"


def test_last_index_edges():
    """``inf`` stays ``inf``; the brief's examples; never below the floating-point rule;
    a horizon an ulp below a multiple loses the point."""
    assert last_index(math.inf, 0.1) == math.inf
    assert last_index(0.3, 0.1) == 3 and floor_index_scalar(0.3, 0.1) == 2
    assert last_index(0.21, 0.7e-3) == 300
    assert last_index(0.3 * (1 - 1e-12), 0.1) == 2
    for t in (0.05, 0.1, 0.30000000000000004, 1.0, 2.5):
        assert last_index(t, 0.1) >= floor_index_scalar(t, 0.1)
    # an exact binary multiple (dt a power of two) is exact either way
    assert last_index(3 * 2.0 ** -10, 2.0 ** -10) == 3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_stop_time_is_the_first_time_of_index_k_t(dtype):
    """An input stored in ``dtype`` is at or after :func:`stop_time` iff its grid index is at
    least ``k_T``: the backends' stop is the reference's index test."""
    for dt_s, k in parity.EDGE_GRIDS:
        dt, t_max = parity.edge_horizon(dt_s, k)
        t_stop = torch.tensor([stop_time(t_max, dt, dtype)], dtype=dtype)
        below = torch.nextafter(t_stop, torch.zeros_like(t_stop))
        assert floor_index(t_stop, dt, dtype).item() == k, (dt_s, k)
        assert floor_index(below, dt, dtype).item() == k - 1, (dt_s, k)
    assert stop_time(0.3, 0.0) == 0.3 and stop_time(math.inf, 0.1) == math.inf


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_event_lists_bound_the_last_window_by_k_t(dtype):
    """``kup`` of a sample's last event is ``k_T`` in the reference event lists and the CPU
    backend's."""
    from batsnn.ops.lif import cpu

    for dt_s, k in parity.EDGE_GRIDS:
        dt, t_max = parity.edge_horizon(dt_s, k)
        p = LIFParams(tau_s=0.05, theta=1.0, max_spikes=1, dt=dt, t_max=t_max)
        x = torch.tensor([[[0.0]], [[dt]]], dtype=dtype).reshape(1, 2, 1)
        for ev in (ref_events.sort_events(x, p), cpu.sort_events(x, p)):
            assert ev.kup[0, 1].item() == k, (dt_s, k)


@pytest.mark.parametrize("backend", ["naive", "cpu"])
def test_last_grid_point_is_emitted(backend):
    """A spike whose crossing lies in the last cell is emitted at ``G(k_T)``, and with resets
    on the grid the forced spikes run up to ``G(k_T)``, for every step of
    :data:`parity.EDGE_GRIDS`, float32 and float64 (against the plain integer index)."""
    n = parity.check_last_grid_point(backend)
    assert n == sum(2 * (1 + k) for _, k in parity.EDGE_GRIDS)


@pytest.mark.parametrize("backend", ["naive", "cpu"])
def test_input_at_the_horizon_opens_the_last_window(backend):
    assert parity.check_input_at_horizon(backend) == 1


@pytest.mark.parametrize("backend", ["naive", "cpu"])
def test_a_tangent_crossing_passes_no_gradient(backend):
    """``D = 0`` (the potential touches theta): the spike is emitted, its gradient is zero,
    never inf or NaN (such a weight stopped a Randman run at dt = 5 ms with NaN weights)."""
    assert parity.check_tangent_crossing(backend) == 10


@pytest.mark.cuda
def test_cuda_last_grid_point():
    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    assert parity.check_last_grid_point("cuda", "cuda") > 0
    assert parity.check_input_at_horizon("cuda", "cuda") == 1
    assert parity.check_tangent_crossing("cuda", "cuda") == 10


@pytest.mark.parametrize("synapse", list(parity.SYNAPSES))
@pytest.mark.parametrize("neuron", parity.EDGE_NEURONS)
def test_edge_parity_cases_spike_at_the_last_grid_point(synapse, neuron):
    """The harness's edge cases are not vacuous: the reference emits spikes at ``G(k_T)``,
    the grid point the floating-point rule would drop."""
    name = f"{synapse}-{neuron}-layer-f64"
    case = parity.make_case(name)
    k_t = last_index(case.p.t_max, case.p.dt)
    assert floor_index_scalar(case.p.t_max, case.p.dt) == k_t - 1
    times = parity.reference(name).times
    assert (times == k_t * case.p.dt).sum() >= 3, name
