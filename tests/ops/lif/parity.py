"""One parity harness for the backends of the LIF op: naive, cpu, triton, cuda.

A case is named ``"<synapse>-<neuron>-<layout>-<dtype>"``: the synapse (how a neuron finds
its weights; :data:`SYNAPSES`), the neuron's settings (:data:`NEURONS`), the sizes of the
layer (:data:`LAYOUTS`) and the float dtype. :func:`run` runs one backend on a case:

- ``naive``: the plain reference (:mod:`batsnn.ops.lif.naive`), the ground truth;
- ``cpu``: the numba kernels through the backend contract (:mod:`batsnn.ops.lif`);
- ``triton``: the GPU backend's Triton kernels on CPU tensors, which only works in a process
  started with ``TRITON_INTERPRET=1`` (Triton's CPU interpreter): ``python -m
  tests.ops.lif.parity triton`` runs every case and :data:`TRITON_EXTRAS` there and prints
  one JSON line per check;
- ``cuda``: the GPU backend on a GPU.

:func:`check` holds a backend's result to the spike-train invariants (every backend,
naive included) and then to the naive reference (counts equal, times and both gradients
close). The event lists of the contract backends are checked against
:func:`batsnn.ops.lif.events.sort_events` on the way. Adding a synapse type is one more
entry in :data:`SYNAPSES` (its weight, reference and public function, the backends that
have kernels for it, and its own sizes of the layouts); a backend without kernels for a
synapse has no cases of it (:func:`case_ids`).
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, NamedTuple

import torch

from batsnn.ops.lif import events as ref_events
from batsnn.ops.lif.grid import floor_index, floor_index_scalar, grid_times, last_index
from batsnn.ops.lif.naive import (lif_conv2d_backward_naive, lif_conv2d_forward_naive,
                                  lif_linear_backward_naive, lif_linear_forward_naive)
from batsnn.ops.lif.synapse import DENSE, Conv2d
from batsnn.params import LIFParams
from tests.helpers import assert_close, random_times

TAU_S = 0.05


BACKENDS = ("naive", "cpu", "triton", "cuda")


@dataclass(frozen=True)
class Synapse:
    """What the harness needs to know about a synapse type."""

    #: ``(layout, generator) -> (float64 weight, synapse value)``: a layer of that layout,
    #: weights uniform in ``[-0.2, 0.8) * w_scale``; the value is what the backends receive
    make: Callable
    #: ``(x, w, value, **neuron) -> (times, counts, records)`` as
    #: :func:`lif_linear_forward_naive`, ``x`` ``(B, N_in, S)``
    naive_forward: Callable
    #: ``(grad, x, w, value, records, *, tau_s, delta_theta) -> (g_in, g_w)`` as
    #: :func:`lif_linear_backward_naive`
    naive_backward: Callable
    #: ``(x, w, value, p) -> (times (B, N_out, K), counts (B, N_out))`` through the public
    #: function of :mod:`batsnn`, ``x`` ``(B, N_in, S)`` (reshaped as that function takes it)
    public: Callable
    backends: tuple = BACKENDS  #: the backends with kernels for it
    #: per layout name, the synapse's own sizes (over :data:`LAYOUTS`)
    layouts: dict = field(default_factory=dict)


def _dense(lay, g):
    w = torch.rand(lay["n_out"], lay["n_in"], generator=g, dtype=torch.float64) - lay["w_shift"]
    return w * lay["w_scale"], DENSE


def _dense_public(x, w, value, p):
    import batsnn

    out = batsnn.lif_linear(x, w, params=p)
    return out.times, out.counts


def _conv(lay, g):
    syn = Conv2d(lay["in_shape"], lay["kernel"], lay["stride"], lay["padding"])
    w = torch.rand(lay["c_out"], syn.in_shape[0], *syn.kernel, generator=g,
                   dtype=torch.float64) - lay["w_shift"]
    return w * lay["w_scale"], syn


def _conv_public(x, w, value, p):
    import batsnn

    out = batsnn.lif_conv2d(x.reshape(x.shape[0], *value.in_shape, x.shape[-1]), w,
                            stride=value.stride, padding=value.padding, params=p)
    n_batch = x.shape[0]
    return out.times.reshape(n_batch, -1, p.max_spikes), out.counts.reshape(n_batch, -1)


def _conv_layout(in_shape, kernel, stride, padding, c_out, w_scale, w_shift=0.2):
    c, h, w = in_shape
    return dict(in_shape=in_shape, n_in=c * h * w, kernel=kernel, stride=stride,
                padding=padding, c_out=c_out, w_scale=w_scale, w_shift=w_shift)


SYNAPSES = {
    "dense": Synapse(
        _dense, lambda x, w, v, **kw: lif_linear_forward_naive(x, w, **kw),
        lambda g, x, w, v, rec, **kw: lif_linear_backward_naive(g, x, w, rec, **kw),
        _dense_public),
    # the reference is the dense layer of the unrolled weight matrix. Layouts: C_in > 1,
    # stride 1 and 2, padding 0 and 1, more channels than one lane block ("blocks"), several
    # reference-time segments ("segments")
    "conv": Synapse(
        _conv, lif_conv2d_forward_naive,
        lambda g, x, w, v, rec, **kw: lif_conv2d_backward_naive(g, x, w, v, rec, **kw),
        _conv_public,
        layouts={
            "small": _conv_layout((2, 5, 5), (3, 3), (1, 1), (0, 0), 3, 3.0),
            "empty": _conv_layout((2, 5, 5), (3, 3), (1, 1), (0, 0), 3, 3.0),
            "blocks": _conv_layout((2, 6, 6), (3, 3), (2, 2), (1, 1), 70, 2.0),
            "segments": _conv_layout((3, 6, 6), (3, 3), (1, 1), (1, 1), 4, 6.0),
            "layer": _conv_layout((4, 6, 6), (3, 2), (2, 1), (1, 0), 8, 3.0),
            "balanced": _conv_layout((2, 6, 6), (3, 3), (1, 1), (1, 1), 4, 30.0, 0.5),
        }),
}

NEURONS = {
    "plain": dict(theta=0.3, delta_theta=None, max_spikes=5, dt=0.0, t_max=math.inf),
    "partial_reset": dict(theta=0.3, delta_theta=0.12, max_spikes=5, dt=0.0, t_max=math.inf),
    "dt": dict(theta=0.3, delta_theta=None, max_spikes=5, dt=1e-3, t_max=math.inf),
    "dt_coarse": dict(theta=0.3, delta_theta=0.12, max_spikes=5, dt=4e-3, t_max=0.08),
    "dt4": dict(theta=0.3, delta_theta=0.12, max_spikes=5, dt=4e-3, t_max=0.096),
    "dt8": dict(theta=0.3, delta_theta=None, max_spikes=5, dt=8e-3, t_max=math.inf),
    # the consistent discrete model: resets at the emitted grid times; with a small reset
    # ("grid_forced") the potential often stays above theta through one, and the grid
    # forces the next spike
    "dt4_grid": dict(theta=0.3, delta_theta=0.12, max_spikes=5, dt=4e-3, t_max=0.096,
                     reset_at="emitted"),
    "dt8_grid": dict(theta=0.3, delta_theta=None, max_spikes=5, dt=8e-3, t_max=math.inf,
                     reset_at="emitted"),
    "grid_forced": dict(theta=0.3, delta_theta=0.03, max_spikes=6, dt=8e-3, t_max=0.12,
                        reset_at="emitted"),
    "cap_tmax": dict(theta=0.1, delta_theta=None, max_spikes=2, dt=0.0, t_max=0.06),
    # the grid's last edge: t_max = 0.072 s is 18 steps of 4 ms, though 18 * 0.004 > 0.072
    # in floating point (grid.last_index); resets at the crossing and at the emitted times
    "dt4_edge": dict(theta=0.3, delta_theta=0.12, max_spikes=5, dt=4e-3, t_max=0.072),
    "dt4_grid_edge": dict(theta=0.3, delta_theta=0.03, max_spikes=6, dt=4e-3, t_max=0.072,
                          reset_at="emitted"),
    "silent": dict(theta=50.0, delta_theta=None, max_spikes=3, dt=0.0, t_max=math.inf),
}

#: the grid cases at dt = 1, 4 and 8 ms (resets at the crossing)
GRID_NEURONS = ("dt", "dt4", "dt8")
#: the grid cases with resets at the emitted times
EMITTED_RESET_NEURONS = ("dt4_grid", "dt8_grid", "grid_forced")
#: the grid cases whose t_max is a decimal multiple of dt that floating point puts an ulp
#: below its last grid point
EDGE_NEURONS = ("dt4_edge", "dt4_grid_edge")

LAYOUTS = {
    "small": dict(batch=3, n_in=10, n_out=6, slots=3, span=0.1, w_scale=4.0),
    "empty": dict(batch=3, n_in=10, n_out=6, slots=3, span=0.1, w_scale=4.0, empty=True),
    # several neuron blocks (CPU lanes, GPU blocks) and event chunks
    "blocks": dict(batch=2, n_in=90, n_out=70, slots=2, span=0.1, w_scale=1.0),
    # inputs over 40 tau_s: several reference-time segments
    "segments": dict(batch=2, n_in=90, n_out=20, slots=2, span=2.0, w_scale=3.0),
    # a dense random layer on the grid: many crossings land on the next input's grid point
    "layer": dict(batch=3, n_in=60, n_out=40, slots=2, span=0.2, w_scale=1.5),
    # strong weights of both signs: with resets on the grid, potentials held above threshold
    # under a net inhibitory current (A <= 0)
    "balanced": dict(batch=2, n_in=30, n_out=12, slots=2, span=0.2, w_scale=40.0, w_shift=0.5),
}

#: (neuron, layout) pairs of the parity cases
PAIRS = [(n, "small") for n in NEURONS
         if n not in ("dt4", "dt8", "dt4_grid", "dt8_grid") + EDGE_NEURONS] + [
    ("plain", "empty"), ("partial_reset", "blocks"), ("plain", "segments"),
    ("dt", "segments")] + [
    (n, "layer") for n in GRID_NEURONS + EMITTED_RESET_NEURONS + EDGE_NEURONS] + [
    ("grid_forced", "balanced")]

DTYPES = {"f64": torch.float64, "f32": torch.float32}


#: Triton's CPU interpreter is slow on a convolution's many rows: there the conv cases run
#: in float64, and in float32 only on these layouts (on a GPU, every case runs).
INTERPRETER_CONV_F32 = ("layer",)


def case_ids(synapses=None, layouts=None, backend=None) -> list[str]:
    """Every case name, optionally only of some synapses / layouts, or only those a
    ``backend`` runs (its synapses; for ``triton``, see :data:`INTERPRETER_CONV_F32`)."""
    return [f"{s}-{n}-{lay}-{d}" for s in (synapses or SYNAPSES)
            if backend is None or backend in SYNAPSES[s].backends
            for n, lay in PAIRS if layouts is None or lay in layouts for d in DTYPES
            if not (backend == "triton" and s == "conv" and d == "f32"
                    and lay not in INTERPRETER_CONV_F32)]


class Case(NamedTuple):
    name: str
    synapse: Synapse
    value: object  #: the synapse value the backends receive
    p: LIFParams
    x: torch.Tensor  #: (B, N_in, S_in) input times
    w: torch.Tensor  #: weight in the synapse's layout
    grad: torch.Tensor  #: (B, N_out, K) upstream gradient of the output times


class Result(NamedTuple):
    times: torch.Tensor  #: (B, N_out, K) in the case's dtype
    counts: torch.Tensor  #: (B, N_out) int64
    g_in: torch.Tensor  #: (B, N_in * S_in) float64
    g_w: torch.Tensor  #: the weight's gradient, float64


def make_case(name: str, seed: int = 0) -> Case:
    """The inputs of case ``name``; with ``dt > 0`` the inputs lie on the grid."""
    syn, neuron, layout, dt_name = name.split("-")
    synapse, kw = SYNAPSES[syn], NEURONS[neuron]
    lay = {"w_shift": 0.2, **LAYOUTS[layout], **synapse.layouts.get(layout, {})}
    dtype = DTYPES[dt_name]
    g = torch.Generator().manual_seed(seed)
    x = random_times(lay["batch"], lay["n_in"], lay["slots"], gen=g, t_max=lay["span"])
    if lay.get("empty"):
        x = torch.full_like(x, math.inf)
    if kw["dt"]:
        x = grid_times(x, kw["dt"])
    w, value = synapse.make(lay, g)
    n_out = w.shape[0] * (value.positions if value is not DENSE else 1)
    grad = torch.randn(lay["batch"], n_out, kw["max_spikes"], generator=g, dtype=torch.float64)
    return Case(name, synapse, value, LIFParams(tau_s=TAU_S, **kw), x.to(dtype), w.to(dtype),
                grad.to(dtype))


def _module(backend: str):
    if backend == "cpu":
        from batsnn.ops.lif import cpu

        return cpu, "cpu"
    if backend in ("triton", "cuda"):
        from batsnn.ops.lif import cuda

        return cuda, "cpu" if backend == "triton" else "cuda"
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def run(backend: str, case: Case | str, *, public: bool = False) -> Result:
    """Forward and backward of ``backend`` on ``case``: through the backend contract, or
    with ``public`` through the public function (autograd) on the backend's device."""
    case = make_case(case) if isinstance(case, str) else case
    p, x, w, grad = case.p, case.x, case.w, case.grad
    if backend not in case.synapse.backends:
        raise ValueError(f"backend {backend!r} has no kernels for the synapse of {case.name}")
    if backend == "naive":
        t, c, rec = case.synapse.naive_forward(
            x, w, case.value, tau_s=p.tau_s, theta=p.theta, delta_theta=p.delta_theta,
            max_spikes=p.max_spikes, t_max=p.t_max, dt=p.dt, reset_at=p.reset_at)
        g_in, g_w = case.synapse.naive_backward(grad.double(), x, w, case.value, rec,
                                                tau_s=p.tau_s, delta_theta=p.delta_theta)
        return Result(t.to(x.dtype), c, g_in.reshape(x.shape[0], -1), g_w)
    mod, device = _module(backend)
    xd, wd, gd = x.to(device), w.to(device), grad.to(device)
    if public:
        xd.requires_grad_(True)
        wd.requires_grad_(True)
        times, counts = case.synapse.public(xd, wd, case.value, p)
        g_in, g_w = torch.autograd.grad(times, (xd, wd), gd * torch.isfinite(times))
        return Result(times.detach().cpu(), counts.cpu(),
                      g_in.cpu().double().reshape(x.shape[0], -1), g_w.cpu().double())
    if case.value is DENSE:
        ev = mod.sort_events(xd, p)
    else:
        ev = mod.sort_events(xd, p, synapse=case.value)
    if backend in ("triton", "cuda") and case.value is not DENSE:
        check_rf_rows(x, ev, case.value)  # the GPU's receptive-field rows
    else:
        check_events(ref_events.sort_events(x, p, dtype=x.dtype), ev)
    out = mod.forward(ev, wd, p, synapse=case.value, need_aux=True)
    g_sorted, g_w = mod.backward(gd, out[1:], ev, wd, p, synapse=case.value, need_input=True)
    g_in = torch.zeros(x.shape[0], x.shape[1] * x.shape[2], dtype=torch.float64)
    g_in.scatter_add_(1, ev.perm.cpu(), g_sorted.double().cpu())
    return Result(out[0].cpu().to(x.dtype), out[4].cpu(), g_in, g_w.cpu().double())


def check_events(ref, ev):
    """A backend's event lists against :func:`batsnn.ops.lif.events.sort_events` (torch ops):
    the same events in the same order, the same grid indices, and the same per-event values
    (the GPU works in the input's dtype, the CPU in float64)."""
    n = ref.nspk.cpu()
    assert torch.equal(ev.nspk.cpu().long(), n.long()), (ev.nspk, n)
    for b in range(len(n)):
        k = int(n[b])
        assert torch.equal(ev.perm.cpu()[b, :k], ref.perm[b, :k])
        assert torch.equal(ev.nid.cpu()[b, :k].long(), ref.nid[b, :k].long())
        for f in ("kin", "kup"):
            a, r = getattr(ev, f).cpu(), getattr(ref, f)
            assert a.shape[1] == 0 if r.shape[1] == 0 else torch.equal(a[b, :k], r[b, :k]), f
        for f in ("ts", "ref", "es", "ex", "xup"):
            a, r = getattr(ev, f).cpu()[b, :k].double(), getattr(ref, f)[b, :k].double()
            tol = 1e-12 if ref.es.dtype == torch.float64 else 1e-5
            assert torch.allclose(a, r, rtol=tol, atol=tol), f


def check_rf_rows(x, ev, conv: Conv2d):
    """The GPU backend's event rows of a convolution (:mod:`batsnn.ops.lif.cuda.conv`)
    against the definition of :class:`Conv2d`, with plain loops: row ``b * P + q``
    holds exactly the finite spikes of position ``q``'s receptive field in sample ``b``, in
    time order, ties in the order of the input's flat index; ``nid`` is the weight column
    ``(ci * kH + ky) * kW + kx`` and ``perm`` the spike's flat input position."""
    n_batch, _, s_in = x.shape
    c_in, h, w = conv.in_shape
    (kh, kw), (sy, sx), (py, px) = conv.kernel, conv.stride, conv.padding
    h_out, w_out = conv.out_hw
    n_pos = h_out * w_out
    ts, nid, nspk = ev.ts.cpu(), ev.nid.cpu().long(), ev.nspk.cpu().long()
    perm = ev.perm.cpu().reshape(n_batch, n_pos, -1)
    assert ts.shape[0] == n_batch * n_pos
    for b in range(n_batch):
        for oy in range(h_out):
            for ox in range(w_out):
                q = oy * w_out + ox
                want = []
                for ci in range(c_in):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * sy - py + ky, ox * sx - px + kx
                            if 0 <= iy < h and 0 <= ix < w:
                                i = (ci * h + iy) * w + ix
                                want += [(float(x[b, i, s]), i * s_in + s,
                                          (ci * kh + ky) * kw + kx)
                                         for s in range(s_in) if math.isfinite(x[b, i, s])]
                want.sort(key=lambda e: (e[0], e[1]))
                row, k = b * n_pos + q, int(nspk[b * n_pos + q])
                assert k == len(want), (b, q, k, len(want))
                got = list(zip(ts[row, :k].tolist(), perm[b, q, :k].tolist(),
                               nid[row, :k].tolist()))
                assert got == [(float(torch.tensor(t, dtype=x.dtype)), i, f)
                               for t, i, f in want], (b, q)


def check_invariants(case: Case, res: Result):
    """What any backend's output must satisfy on its own: valid spike trains (ascending,
    ``+inf`` past the count, at most K), no spike after ``t_max`` (with ``dt > 0``: past
    grid index ``k_T``, :func:`batsnn.ops.lif.grid.last_index`), every time on the grid,
    and zero, finite gradients where nothing spiked."""
    p, t, c = case.p, res.times, res.counts
    assert t.dtype == case.x.dtype and c.dtype == torch.int64
    assert ((c >= 0) & (c <= p.max_spikes)).all()
    slot = torch.arange(p.max_spikes)
    assert torch.equal(torch.isfinite(t), slot < c[..., None]), "counts vs +inf padding"
    fin = torch.isfinite(t)
    assert (t[..., 1:][fin[..., 1:]] > t[..., :-1][fin[..., 1:]]).all(), "not ascending"
    assert (t[fin] >= 0).all()
    if p.on_grid:  # no spike past t_max: decided on indices (G(k_T) may lie an ulp above it)
        k = floor_index(t[fin], p.dt, t.dtype)
        assert torch.equal((k * p.dt).to(t.dtype), t[fin]), "times off the grid"
        assert (k <= last_index(p.t_max, p.dt)).all(), "a spike past the last grid point"
    else:
        assert (t[fin] <= p.t_max).all(), "a spike after t_max"
    assert torch.isfinite(res.g_in).all() and torch.isfinite(res.g_w).all()
    if case.value is DENSE:
        assert (res.g_w[c.sum(0) == 0] == 0).all(), "grad of a silent neuron's weights"
    else:  # a channel silent at every position and in every sample
        per_channel = c.reshape(c.shape[0], res.g_w.shape[0], -1).sum((0, 2))
        assert (res.g_w[per_channel == 0] == 0).all(), "grad of a silent channel's weights"
    if int(c.sum()) == 0:
        assert (res.g_in == 0).all()


def compare(name: str, ref: Result, out: Result, dtype: torch.dtype, case: str | None = None):
    """Counts equal; times and both gradients close (float32 arithmetic on the GPU).

    float32: an entry beyond the base tolerance is accepted only within four times the
    change of the float64 reference itself when the case's inputs and weights move by
    float32 rounding (:func:`float32_sensitivity`): the precision a float32 computation can
    reach on that entry (a gradient through a spike whose crossing is nearly tangent moves
    by up to 1% under a relative change of 6e-8 of its inputs). ``name`` labels a failure;
    ``case``: the case's name when ``name`` is not it."""
    atol, rtol = (1e-12, 1e-10) if dtype == torch.float64 else (2e-6, 2e-4)
    assert torch.equal(ref.counts, out.counts), (
        f"{name}: counts differ ({int((ref.counts != out.counts).sum())} neurons)")
    pairs = (("times", ref.times, out.times, 1), ("grad input_times", ref.g_in, out.g_in, 10),
             ("grad weight", ref.g_w, out.g_w, 10))
    for label, r, o, scale in pairs:
        try:
            assert_close(f"{name} {label}", r, o, atol=atol * scale, rtol=rtol * scale)
        except AssertionError:
            if dtype == torch.float64:
                raise
            slack = getattr(float32_sensitivity(case or name), label.replace(" ", "_"))
            assert_close(f"{name} {label} (with float32 conditioning)", r, o,
                         atol=atol * scale, rtol=rtol * scale, slack=4 * slack)


#: The relative rounding of float32 (half an ulp).
F32_ROUNDING = 2.0 ** -24


class Sensitivity(NamedTuple):
    times: torch.Tensor
    grad_input_times: torch.Tensor
    grad_weight: torch.Tensor


@functools.lru_cache(maxsize=None)
def float32_sensitivity(name: str, draws: int = 6, seed: int = 1) -> Sensitivity:
    """Per entry, the largest change of case ``name``'s float64 reference (times and both
    gradients) over ``draws`` copies of the case whose input times and weights are scaled
    by ``1 + u * F32_ROUNDING``, ``u`` uniform in ``[-1, 1]``; copies in which some count
    changes are left out (those entries are not compared)."""
    case = make_case(name)
    ref = reference(name)
    g = torch.Generator().manual_seed(seed)
    sens = [torch.zeros_like(ref.times, dtype=torch.float64), torch.zeros_like(ref.g_in),
            torch.zeros_like(ref.g_w)]
    x, w = case.x.double(), case.w.double()
    for _ in range(draws):
        u = torch.rand(x.shape, generator=g, dtype=torch.float64) * 2 - 1
        xp = torch.where(torch.isfinite(x), x * (1 + u * F32_ROUNDING), x)
        wp = w * (1 + (torch.rand(w.shape, generator=g, dtype=torch.float64) * 2 - 1)
                  * F32_ROUNDING)
        res = run("naive", case._replace(x=xp, w=wp))
        if not torch.equal(res.counts, ref.counts):
            continue
        t_diff = (res.times.double() - ref.times.double()).nan_to_num(0.0, 0.0, 0.0).abs()
        for i, d in enumerate((t_diff, (res.g_in - ref.g_in).abs(), (res.g_w - ref.g_w).abs())):
            sens[i] = torch.maximum(sens[i], d)
    return Sensitivity(*sens)


def check(backend: str, name: str, *, public: bool = False) -> int:
    """Run ``backend`` on case ``name``, check the invariants and (except for ``naive``)
    parity with the naive reference; returns the number of spikes."""
    case = make_case(name)
    if backend == "naive" and not public:
        out = reference(name)  # computed once per process, shared with the other backends
    else:
        out = run(backend, case, public=public)
    check_invariants(case, out)
    if backend != "naive":
        compare(f"{backend} {name}", reference(name), out, case.x.dtype, case=name)
    return int(out.counts.sum())


@functools.lru_cache(maxsize=None)
def reference(name: str) -> Result:
    """The naive reference of case ``name`` (computed once per process)."""
    return run("naive", name)


def check_sort(backend, device="cpu", tile=16, seed=0):
    """The GPU backend's own stable sort against ``torch.sort`` (ties, -0.0, +inf padding,
    rows of one or several tiles, all +inf, all finite)."""
    g = torch.Generator().manual_seed(seed)
    old = backend.SORT_TILE, backend.SORT_MIN_WIDTH
    backend.SORT_TILE, backend.SORT_MIN_WIDTH = tile, 0
    try:
        for m, p_fin in ((7 * tile - 3, 0.5), (5 * tile, 1.0), (3 * tile, 0.0), (tile // 2, 0.7)):
            x = torch.round(torch.rand(6, m, generator=g) * 20) / 20  # many ties
            x[torch.rand(6, m, generator=g) > p_fin] = math.inf
            x[0, :3] = 0.0
            x[0, min(5, m - 1)] = -0.0
            ts, perm = backend._sort_times(x.to(device))
            rt, rp = torch.sort(x, dim=1, stable=True)
            fin = torch.isfinite(rt)
            assert torch.equal(ts.cpu(), rt), (m, p_fin)
            assert torch.equal(perm.cpu()[fin], rp[fin]), (m, p_fin)
            assert ((perm.cpu()[~fin] >= 0) & (perm.cpu()[~fin] < m)).all()
    finally:
        backend.SORT_TILE, backend.SORT_MIN_WIDTH = old


def check_row_sort(device="cpu", seed=0):
    """The GPU backend's receptive-field rows (:func:`batsnn.ops.lif.cuda.conv.sorted_rows`)
    against :func:`check_rf_rows`' loops, on inputs with many ties, -0.0, several slots,
    padding, strides and rows that reach past a block of the kernel, in float32 and float64,
    the sample sorted by ``torch.sort`` and by batsnn's own sort."""
    from batsnn.ops.lif import cuda
    from batsnn.ops.lif.cuda import conv

    g = torch.Generator().manual_seed(seed)
    p = LIFParams(tau_s=TAU_S, theta=1.0, max_spikes=1)
    old = cuda.SORT_TILE, cuda.SORT_MIN_WIDTH, conv.SELECT_BLOCK
    try:
        for shape, kernel, stride, padding, s_in in (((2, 5, 5), (3, 3), (1, 1), (0, 0), 3),
                                                     ((3, 6, 6), (3, 2), (2, 1), (1, 0), 2),
                                                     ((1, 7, 7), (5, 5), (1, 1), (2, 2), 1)):
            syn = Conv2d(shape, kernel, stride, padding)
            x = torch.round(torch.rand(2, math.prod(shape), s_in, generator=g) * 10) / 10
            x[torch.rand(x.shape, generator=g) < 0.4] = math.inf
            x = torch.sort(x, dim=-1).values
            x[0, 0, 0] = -0.0
            x[1] = torch.where(torch.isfinite(x[1]), 0.5, x[1])  # one time for all
            for dtype, own, block in ((torch.float32, False, 256), (torch.float32, True, 16),
                                      (torch.float64, False, 16)):
                cuda.SORT_TILE, cuda.SORT_MIN_WIDTH = (16, 0) if own else old[:2]
                conv.SELECT_BLOCK = block
                xd = x.to(dtype)
                ev = cuda.sort_events(xd.to(device), p, synapse=syn)
                check_rf_rows(xd, ev, syn)
                assert ((ev.perm >= 0) & (ev.perm < x[0].numel())).all()  # padding too
    finally:
        cuda.SORT_TILE, cuda.SORT_MIN_WIDTH, conv.SELECT_BLOCK = old
    return 0


def check_pool(device="cpu", seed=0):
    """The GPU backend's float32 pooling kernel (:mod:`batsnn.ops.lif.cuda.pooling`) against
    the torch ops of :func:`batsnn.spike_pool2d` (a stable sort of each window): the same
    pooled trains (ties, -0.0, ``+inf`` padding, several slots, odd maps, k = 2 and 3) and
    the same gradient of the input times."""
    from batsnn.ops.lif.cuda.pooling import SpikePoolFunction

    g = torch.Generator().manual_seed(seed)
    for shape, k in (((2, 3, 4, 4, 1), 2), ((2, 2, 5, 7, 3), 2), ((1, 2, 6, 7, 2), 3)):
        x = torch.round(torch.rand(shape, generator=g) * 8) / 8  # ties
        x[torch.rand(shape, generator=g) < 0.4] = math.inf
        x = torch.sort(x, dim=-1).values
        x[0, 0, 0, 0, 0] = -0.0
        n_batch, c, h, w, s_in = shape
        ho, wo = h // k, w // k
        xr = x.clone().requires_grad_(True)
        win = xr[:, :, :ho * k, :wo * k].reshape(n_batch, c, ho, k, wo, k, s_in)
        want = torch.sort(win.permute(0, 1, 2, 4, 3, 5, 6).reshape(n_batch, c, ho, wo, -1),
                          dim=-1, stable=True).values
        xg = x.to(device).requires_grad_(True)
        got = SpikePoolFunction.apply(xg, k)
        assert torch.equal(got.detach().cpu(), want.detach()), (shape, k)
        up = torch.randn(want.shape, generator=g)
        (gw,) = torch.autograd.grad(want, xr, up)
        (gg,) = torch.autograd.grad(got, xg, up.to(device))
        assert torch.equal(gg.cpu(), gw), (shape, k)
    return 0


def grid_ties(name: str) -> tuple[int, int]:
    """``(ties, spikes)`` of the naive reference on case ``name``: the spikes whose grid
    point is the next input's (the tie the window test must accept)."""
    case = make_case(name)
    p = case.p
    _, _, rec = case.synapse.naive_forward(
        case.x, case.w, case.value, tau_s=p.tau_s, theta=p.theta, delta_theta=p.delta_theta,
        max_spikes=p.max_spikes, t_max=p.t_max, dt=p.dt)
    ties = spikes = 0
    for events_b, rec_b in rec:
        k_in = floor_index(torch.tensor([t for t, _ in events_b], dtype=torch.float64), p.dt,
                           case.x.dtype).tolist()
        for rec_n in rec_b:
            for t_c, j, *_ in rec_n:
                spikes += 1
                ties += j + 1 < len(k_in) and floor_index_scalar(t_c, p.dt) + 1 == k_in[j + 1]
    return ties, spikes


def check_grid_bounds(backend, device="cpu", n=400):
    """A backend's grid indices ``kin``/``kup`` on times at, just below and just above every
    grid point ``k * dt`` (k < n), in float64 and float32, against
    :func:`batsnn.ops.lif.events.grid_bounds`; the set needs both corrections of
    ``floor(t / dt)`` (model.md section 6, :mod:`batsnn.ops.lif.grid`)."""
    corrections = set()
    for dt in (1e-3, 4e-3, 8e-3):
        for dtype in (torch.float64, torch.float32):
            g = (torch.arange(n, dtype=torch.float64) * dt).to(dtype)
            t = torch.cat([g, torch.nextafter(g, torch.full_like(g, -1.0)).clamp(min=0),
                           torch.nextafter(g, torch.full_like(g, 1.0))]).sort().values
            t[-5:] = math.inf  # padding
            p = LIFParams(tau_s=TAU_S, theta=1.0, max_spikes=1, dt=dt, t_max=float(g[n // 2]))
            ev = backend.sort_events(t.reshape(1, -1, 1).to(device), p)
            m = int(ev.nspk[0])
            assert m == len(t) - 5, m
            kin, kup = ref_events.grid_bounds(t.reshape(1, -1)[:, :m], ev.nspk.cpu()[:1], p,
                                              dtype)
            assert torch.equal(ev.kin.cpu()[:, :m], kin), (dt, dtype)
            assert torch.equal(ev.kup.cpu()[:, :m], kup), (dt, dtype)
            q = torch.floor(t[:m].double() / dt)
            corrections |= {int(c) for c in torch.unique(kin[0] - q)}
    assert {-1, 0, 1} <= corrections, corrections
    return 0


#: ``(dt, k)``: decimal steps a user types and a horizon ``t_max = k * dt`` written as the
#: decimal it is (``0.3`` for 3 steps of ``0.1``); the last grid point is ``k`` by plain
#: integer arithmetic. Most of these lose it to ``k * dt > t_max`` in floating point.
EDGE_GRIDS = (("0.1", 3), ("0.1", 7), ("1e-4", 3), ("3e-4", 12), ("7e-4", 300), ("1e-3", 9),
              ("4e-3", 9), ("4e-3", 18), ("3e-3", 17), ("8e-3", 13))


def edge_horizon(dt: str, k: int) -> tuple[float, float]:
    """``(dt, t_max)`` as floats, ``t_max`` the decimal ``k * dt`` (no float product)."""
    return float(dt), float(Decimal(dt) * k)


def edge_layer(dt: str, k: int, dtype: torch.dtype, reset_at: str):
    """A one-neuron layer whose last spike belongs at grid point ``k``, the last one at or
    before ``t_max`` (:data:`EDGE_GRIDS`): one input at ``t = 0``, weight 1, ``tau_s`` ten
    times ``t_max`` (the potential rises through the whole horizon). ``"crossing"``: the
    threshold is crossed halfway through the last cell, so the one spike is emitted at
    ``G(k)``; ``"emitted"``: crossed halfway through the first cell with a tiny reset, so
    the grid forces a spike at every point ``G(1) .. G(k)``. Returns ``(x, w, p,
    expected times (1, 1, K))``."""
    dt_f, t_max = edge_horizon(dt, k)
    tau_s = 10.0 * t_max
    tau = 2.0 * tau_s
    t_cross = (k - 0.5) * dt_f if reset_at == "crossing" else 0.5 * dt_f
    theta = tau * (math.exp(-t_cross / tau) - math.exp(-t_cross / tau_s))
    n_spikes = 1 if reset_at == "crossing" else k
    p = LIFParams(tau_s=tau_s, theta=theta, delta_theta=theta * 1e-6, max_spikes=k + 2,
                  t_max=t_max, dt=dt_f, reset_at=reset_at)
    want = torch.full((1, 1, k + 2), math.inf, dtype=torch.float64)
    first = k + 1 - n_spikes
    want[0, 0, :n_spikes] = torch.arange(first, k + 1, dtype=torch.float64) * dt_f
    x = torch.zeros(1, 1, 1, dtype=dtype)
    return x, torch.ones(1, 1, dtype=dtype), p, want.to(dtype)


def check_last_grid_point(backend: str, device: str = "cpu") -> int:
    """Every :data:`EDGE_GRIDS` horizon, float64 and float32, both reset rules: ``backend``
    (``naive`` or a backend module through the contract) emits the spikes of
    :func:`edge_layer`, the last one at ``G(k)``; returns the number of spikes."""
    total = 0
    for dt, k in EDGE_GRIDS:
        for dtype in (torch.float64, torch.float32):
            for reset_at in ("crossing", "emitted"):
                x, w, p, want = edge_layer(dt, k, dtype, reset_at)
                if backend == "naive":
                    times, counts, _ = lif_linear_forward_naive(
                        x, w, tau_s=p.tau_s, theta=p.theta, delta_theta=p.delta_theta,
                        max_spikes=p.max_spikes, t_max=p.t_max, dt=p.dt, reset_at=reset_at)
                    times = times.to(dtype)
                else:
                    mod, _ = _module(backend)
                    ev = mod.sort_events(x.to(device), p)
                    times, *_, counts = mod.forward(ev, w.to(device), p, synapse=DENSE)
                label = (backend, dt, k, str(dtype), reset_at)
                assert torch.equal(times.cpu().to(dtype), want), (label, times, want)
                total += int(counts.sum())
    return total


def check_input_at_horizon(backend: str, device: str = "cpu") -> int:
    """An input at ``t_max = 0.3`` exactly (``dt = 0.1``; not on the grid, so in cell 2, an
    ulp below ``G(3)``), weight 0, after a crossing in cell 2: the window before it ends at
    index 2 and the spike at ``G(3)`` belongs to the window after it. A backend that stops
    reading inputs at ``t >= t_max`` instead of at index ``k_T`` misses it. float64 (in
    float32 ``0.3`` rounds to ``G(3)`` itself, index 3); returns the number of spikes."""
    _, _, p, _ = edge_layer("0.1", 3, torch.float64, "crossing")
    p = p.replace(max_spikes=2)
    x = torch.tensor([0.0, 0.3], dtype=torch.float64).reshape(1, 2, 1)
    t_cross = 0.25
    theta = p.tau * (math.exp(-t_cross / p.tau) - math.exp(-t_cross / p.tau_s))
    p = p.replace(theta=theta, delta_theta=theta)
    w = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    if backend == "naive":
        times, counts, _ = lif_linear_forward_naive(
            x, w, tau_s=p.tau_s, theta=p.theta, delta_theta=p.delta_theta,
            max_spikes=p.max_spikes, t_max=p.t_max, dt=p.dt)
    else:
        mod, _ = _module(backend)
        ev = mod.sort_events(x.to(device), p)
        times, *_, counts = mod.forward(ev, w.to(device), p, synapse=DENSE)
    want = torch.tensor([[[3 * 0.1, math.inf]]], dtype=torch.float64)
    assert torch.equal(times.cpu().double(), want), (backend, times)
    return int(counts.sum())


def check_tangent_crossing(backend: str, device: str = "cpu") -> int:
    """A potential that touches ``theta`` without crossing it (``D = 0`` exactly: one input
    at ``t = 0`` of weight ``4 theta / tau``, ``tau = 1``): the spike at ``tau ln 2`` is
    emitted, and its time, whose derivative in the weight is infinite, passes no gradient
    (``X = +inf``) instead of ``inf``/``NaN``; a second neuron (weight 1.5) crosses normally
    and keeps its finite gradient. Exact time and the seed's grid rule, float64 and float32
    (the values are exact in both); with resets on the grid the touching neuron does not
    fire (``V < theta`` at every grid point). Returns the number of spikes."""
    total = 0
    x = torch.zeros(1, 1, 1, dtype=torch.float64)
    for dt, reset_at in ((None, "crossing"), (0.25, "crossing"), (0.25, "emitted")):
        p = LIFParams(tau_s=0.5, theta=0.25, max_spikes=1, dt=dt, reset_at=reset_at)
        for dtype in (torch.float64, torch.float32):
            w = torch.tensor([[1.0], [1.5]], dtype=dtype)
            grad = torch.ones(1, 2, 1, dtype=dtype)
            xd = x.to(dtype)
            if backend == "naive":
                times, counts, rec = lif_linear_forward_naive(
                    xd, w, tau_s=p.tau_s, theta=p.theta, delta_theta=p.delta_theta,
                    max_spikes=1, t_max=p.t_max, dt=p.dt, reset_at=reset_at)
                g_in, g_w = lif_linear_backward_naive(grad.double(), xd, w, rec, tau_s=p.tau_s,
                                                      delta_theta=p.delta_theta)
                g_in = g_in.reshape(1, -1)
            else:
                mod, _ = _module(backend)
                ev = mod.sort_events(xd.to(device), p)
                out = mod.forward(ev, w.to(device), p, synapse=DENSE, need_aux=True)
                times, counts = out[0], out[4]
                g_in, g_w = mod.backward(grad.to(device), out[1:], ev, w.to(device), p,
                                         synapse=DENSE, need_input=True)
            label = (backend, dt, reset_at, str(dtype))
            t_touch = math.log(2.0) if dt is None else 3 * 0.25  # cell 2, emitted at G(3)
            if reset_at == "emitted":  # V < theta at every grid point: no spike
                assert counts.cpu().tolist() == [[0, 1]], (label, counts)
            else:
                assert counts.cpu().tolist() == [[1, 1]], (label, counts)
                assert abs(float(times[0, 0, 0]) - t_touch) <= 1e-6 * t_touch, (label, times)
            g_w, g_in = g_w.cpu().double(), g_in.cpu().double()
            assert torch.isfinite(g_w).all() and torch.isfinite(g_in).all(), (label, g_w, g_in)
            assert float(g_w[0, 0]) == 0.0, (label, g_w)  # the touching neuron: no gradient
            assert float(g_w[1, 0]) < 0.0, (label, g_w)  # the crossing one: earlier with w
            total += int(counts.sum())
    return total


def _triton_need_aux():
    """Inference mode (no backward buffers) gives the same spikes."""
    from batsnn.ops.lif import cuda

    case = make_case("dense-plain-small-f32")
    ev = cuda.sort_events(case.x, case.p)
    full = cuda.forward(ev, case.w, case.p, synapse=DENSE, need_aux=True)
    lean = cuda.forward(ev, case.w, case.p, synapse=DENSE, need_aux=False)
    assert torch.equal(full[0], lean[0]) and torch.equal(full[4], lean[4])
    assert lean[1].numel() == 0
    return int(full[4].sum())


def _triton_conv_empty_batch():
    """A convolution over an empty batch: empty outputs and gradients of the right shapes."""
    from batsnn.ops.lif import cuda

    case = make_case("conv-plain-small-f64")
    x = case.x[:0]
    ev = cuda.sort_events(x, case.p, synapse=case.value)
    out = cuda.forward(ev, case.w, case.p, synapse=case.value, need_aux=True)
    n_out = case.w.shape[0] * case.value.positions
    assert out[0].shape == (0, n_out, case.p.max_spikes) and out[4].shape == (0, n_out)
    g_in, g_w = cuda.backward(torch.zeros(0, n_out, case.p.max_spikes, dtype=x.dtype),
                              out[1:], ev, case.w, case.p, synapse=case.value, need_input=True)
    assert g_in.shape[0] == 0 and g_w.shape == case.w.shape and not g_w.any()
    return 0


def _triton_own_sort(name):
    """The whole layer with the GPU backend's own sort in place of ``torch.sort``."""
    def fn():
        from batsnn.ops.lif import cuda

        old = cuda.SORT_TILE, cuda.SORT_MIN_WIDTH
        cuda.SORT_TILE, cuda.SORT_MIN_WIDTH = 16, 0
        try:
            return check("triton", name)
        finally:
            cuda.SORT_TILE, cuda.SORT_MIN_WIDTH = old
    return fn


def _triton_grid_bounds():
    from batsnn.ops.lif import cuda

    return check_grid_bounds(cuda)


def _triton_row_sort():
    return check_row_sort()


def _triton_pool():
    return check_pool()


def _triton_sort():
    from batsnn.ops.lif import cuda

    check_sort(cuda)
    return 0


#: Checks of the Triton kernels beyond the parity cases, run in the interpreter.
TRITON_EXTRAS = {
    "sort": _triton_sort,
    "conv_row_sort": _triton_row_sort,
    "pool": _triton_pool,
    "grid_bounds": _triton_grid_bounds,
    "last_grid_point": lambda: check_last_grid_point("triton"),
    "input_at_horizon": lambda: check_input_at_horizon("triton"),
    "tangent_crossing": lambda: check_tangent_crossing("triton"),
    "need_aux": _triton_need_aux,
    "conv_empty_batch": _triton_conv_empty_batch,
    "own_sort-dense-partial_reset-blocks-f32": _triton_own_sort("dense-partial_reset-blocks-f32"),
    "own_sort-dense-dt-small-f32": _triton_own_sort("dense-dt-small-f32"),
}


def main(argv=None):
    """``python -m tests.ops.lif.parity BACKEND [CASE ...]``: one JSON line per check,
    ``{"id", "ok", "spikes", "seconds"}`` or ``{"id", "ok": false, "error", "seconds"}``;
    exit status 1 if any
    failed."""
    args = sys.argv[1:] if argv is None else argv
    backend, names = args[0], args[1:]
    checks = {name: (lambda n=name: check(backend, n)) for name in case_ids(backend=backend)}
    if backend == "triton":
        checks.update({f"extra-{k}": v for k, v in TRITON_EXTRAS.items()})
    failed = 0
    for cid in names or checks:
        start = time.perf_counter()
        try:
            line = {"id": cid, "ok": True, "spikes": checks[cid]()}
        except Exception as e:  # report every case, then fail
            failed += 1
            line = {"id": cid, "ok": False,
                    "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}"}
        line["seconds"] = round(time.perf_counter() - start, 2)
        print(json.dumps(line), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
