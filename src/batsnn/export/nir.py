r"""Export batsnn networks to NIR (the Neuromorphic Intermediate Representation) and back.

NIR (PyPI ``nir``, 1.0.x) describes a network as a graph of continuous-time nodes. A
:class:`~batsnn.nn.LIFLinear` layer becomes a ``nir.Linear`` node (the weight, ``(out, in)``;
BATS has no bias) followed by a ``nir.CubaLIF`` node whose constants are derived from the
layer's :class:`~batsnn.params.LIFParams` so that NIR's membrane potential *is* the BATS
potential at every time (docs/nir.md has the derivation):

NIR's CubaLIF, with ``S(t) = sum_k delta(t - t_k)`` the Linear node's output (each input spike
a Dirac impulse of area 1, weighted by ``W``)::

    tau_syn dI/dt = -I + w_in S            (so I jumps by w_in * W / tau_syn at a spike)
    tau_mem dv/dt = (v_leak - v) + r I
    v > v_threshold  ->  spike, v = v_reset

BATS (model.md section 1): ``dI/dt = -I/tau_s``, ``I += W`` at a spike,
``dV/dt = -V/tau + I``, ``V = theta -> spike, V -= delta_theta``, ``tau = 2 tau_s``.

In a graph whose time unit is ``u`` (``c`` units per second: 1 for ``"s"``, 1000 for ``"ms"``)
the mapping is::

    tau_syn = c tau_s      tau_mem = r = c tau      w_in = tau_s (= tau_syn / c)
    v_leak = 0             v_threshold = theta      v_reset = 0

so ``I_NIR = I_BATS / c`` (the current in potential per graph time unit) and
``v_NIR = V_BATS`` at all times. Reset: BATS subtracts ``delta_theta`` when ``V`` reaches
``theta``; at that exact continuous crossing ``V = theta``, so subtracting
``delta_theta = theta`` leaves ``0 = v_reset``: the two resets agree when
``delta_theta == theta`` (every BATS experiment), and :func:`to_nir` refuses any other value.

What NIR has no field for travels as metadata: the graph's ``metadata`` holds ``time_unit``,
``batsnn_version`` and ``format``; each CubaLIF node's ``metadata`` holds the layer's
``tau_s``, ``theta``, ``delta_theta``, ``max_spikes``, ``t_max`` and ``dt``, **in seconds**
(batsnn's own units, whatever the graph's time unit), and ``reset_at``. :func:`from_nir`
reads the neuron from the NIR fields and takes ``max_spikes``, ``t_max``, ``dt`` and
``reset_at`` from the metadata.

``nir`` is an optional dependency: this module imports it only when a function needs it.

A :class:`~batsnn.nn.LIFConv2d` becomes ``nir.Conv2d`` (``input_shape`` ``(H, W)``, the weight
``(C_out, C_in, kH, kW)``, stride, padding, dilation 1, groups 1, zero bias) followed by a
``nir.CubaLIF`` with the same constants in arrays ``(C_out, H_out, W_out)``; a
:class:`~batsnn.nn.SpikePool2d` of kernel ``k`` becomes ``nir.SumPool2d(k, stride k, padding
0)`` (the sum of a window's spike impulses, fed to linear synapses, is the union of its spike
trains); a spike-train :class:`~batsnn.nn.Flatten` becomes ``nir.Flatten`` of all per-sample
axes (``start_dim=0``, ``end_dim=-1``: NIR shapes carry no batch axis). A
:class:`~batsnn.nn.SpikeDelay` becomes ``nir.Delay`` (``O(t) = I(t - tau)``): its delays in
use, in the graph's time unit, one per neuron (a map's delay repeated over its positions).

A :class:`~batsnn.nn.LIFRecurrent` is the dense pair ``linear_<i>`` -> ``lif_<i>`` with a
cycle: ``lif_<i>`` -> ``recurrent_<i>`` (``nir.Linear``, the recurrent weight ``(N, N)`` in
use, its diagonal zero without self connections) -> ``lif_<i>``; NIR sums a node's inputs,
so the CubaLIF integrates both. :func:`from_nir` reads such a two-edge loop of a Linear node
(zero-bias Affine) on a CubaLIF as the layer's recurrent weight.

The exporter and importer are tables (:data:`EXPORTERS`, :data:`IMPORTERS`): a new layer type
adds one entry to each.

Files: :func:`save_nir` serialises the graph in memory and writes it through
:func:`batsnn.fileio.atomic_write` after :func:`check_nir_path` (never a link, a directory, a
FIFO or a device, never into a batsnn run or sweep directory, never over an existing file
unless asked to and batsnn wrote it). :func:`from_nir` reads a file node by node, so every
malformed file or graph (not HDF5, truncated, unknown node types, missing fields, dangling
edges, cycles, shapes that disagree, NaN or infinite weights and constants, weights of other
dtypes, fractional or boolean ``max_spikes``) is one ``ValueError`` naming the file and the
node; names from the file are shown through :func:`batsnn.fileio.printable`.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from batsnn.fileio import atomic_write, check_new_file, describe_path, one_line, printable
from batsnn.nn import (Flatten, LIFConv2d, LIFLinear, LIFRecurrent, SpikeDelay, SpikePool2d,
                       SpikingSequential)
from batsnn.params import WEIGHT_RATIO_MAX, LIFParams

__all__ = ["EXPORTERS", "FORMAT", "IMPORTERS", "TIME_UNITS", "check_nir_path",
           "cuba_lif_constants", "from_nir", "is_batsnn_nir_file", "save_nir", "to_nir"]

#: graph time unit -> units per second
TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e3}
#: value of the graph metadata's ``format`` field
FORMAT = "batsnn-nir/1"
_REL = 1e-9  # tolerance for derived NIR constants of graphs batsnn did not write


def _nir():
    try:
        import nir
    except ImportError as e:  # also raised when sys.modules["nir"] is None
        raise ImportError("batsnn's NIR export needs the optional package 'nir' (>= 1.0): "
                          "pip install nir") from e
    return nir


def _time_scale(time_unit) -> float:
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit must be one of {', '.join(map(repr, TIME_UNITS))}, got "
                         f"{time_unit!r}")
    return TIME_UNITS[time_unit]


# ----------------------------------------------------------------------------- export

def cuba_lif_constants(params: LIFParams, time_unit: str = "s") -> dict[str, float]:
    """NIR CubaLIF constants of a batsnn neuron (scalars; docs/nir.md derives them).

    Args:
        params: the layer's :class:`~batsnn.params.LIFParams` (times in seconds).
        time_unit: the graph's time unit, ``"s"`` or ``"ms"``.

    Returns:
        ``tau_syn``, ``tau_mem`` (in ``time_unit``), ``r`` (``= tau_mem``), ``w_in``
        (``= tau_s`` in seconds), ``v_leak`` (0), ``v_threshold`` (``theta``) and
        ``v_reset`` (0), such that NIR's ``v`` equals the BATS potential ``V`` at every time.

    Raises:
        ValueError: ``delta_theta != theta`` (NIR resets to ``v_reset``; that equals BATS'
            reset by subtraction only when the two are equal).
    """
    if not isinstance(params, LIFParams):
        raise TypeError(f"params must be a batsnn.LIFParams, got {type(params).__name__}")
    c = _time_scale(time_unit)
    if params.delta_theta != params.theta:
        raise ValueError(
            f"delta_theta={params.delta_theta!r} differs from theta={params.theta!r}: NIR's "
            "CubaLIF resets v to v_reset, which equals BATS' reset by subtraction (v -= "
            "delta_theta at v == theta) only when delta_theta == theta")
    return {"tau_syn": c * params.tau_s, "tau_mem": c * params.tau, "r": c * params.tau,
            "w_in": params.tau_s, "v_leak": 0.0, "v_threshold": params.theta, "v_reset": 0.0}


@dataclass
class _ExportContext:
    nir: Any
    time_unit: str
    shape: tuple[int, ...] | None  # per-sample shape (no batch dim) entering the next layer
    nodes: dict = field(default_factory=dict)
    index: int = 0  # number of layers exported so far
    side: dict = field(default_factory=dict)  # nodes off the chain (recurrent loops)
    loops: list = field(default_factory=list)  # their edges


def _cuba_lif_node(layer, where: str, shape: tuple[int, ...], ctx: _ExportContext):
    """The ``nir.CubaLIF`` node of ``layer`` (a LIFLinear or LIFConv2d) with per-neuron arrays
    of ``shape``, and its metadata: batsnn's ``LIFParams`` in seconds."""
    kind = type(layer).__name__
    p = layer.params
    try:
        k = cuba_lif_constants(p, ctx.time_unit)
    except ValueError as e:
        raise ValueError(f"{where} ({kind}): {e}") from None
    if p.dt > 0:
        warnings.warn(f"{where} ({kind}) runs on a time grid (dt={p.dt} s); NIR's CubaLIF "
                      "is the continuous-time neuron, so the graph describes the layer without "
                      "the grid (dt is kept in the node's metadata)", stacklevel=4)
    return ctx.nir.CubaLIF(
        **{name: np.full(shape, value, dtype=np.float64) for name, value in k.items()},
        metadata={"batsnn_layer": kind, "tau_s": p.tau_s, "theta": p.theta,
                  "delta_theta": p.delta_theta, "max_spikes": p.max_spikes,
                  "t_max": p.t_max, "dt": p.dt, "reset_at": p.reset_at})


def _export_weight(layer, where: str) -> np.ndarray:
    """A copy of ``layer``'s weight as a numpy array, or a ValueError if it holds NaN or
    infinities (a diverged network is not exported)."""
    weight = layer.weight.detach().cpu().numpy().copy()
    bad = int(np.size(weight) - np.count_nonzero(np.isfinite(weight)))
    if bad:
        raise ValueError(f"{where} ({type(layer).__name__}): weight holds {bad} NaN or "
                         "infinite values; a diverged network cannot be exported")
    return weight


def _export_lif_linear(layer: LIFLinear, where: str, ctx: _ExportContext) -> None:
    nir = ctx.nir
    if ctx.shape is None:
        ctx.shape = (layer.in_features,)
    if ctx.shape != (layer.in_features,):
        raise ValueError(f"{where} (LIFLinear) takes {layer.in_features} inputs but receives "
                         f"shape {ctx.shape}")
    if getattr(layer, "delay", None) is not None:
        raise ValueError(f"{where} (LIFLinear) has per-synapse delays, which NIR cannot "
                         "carry (nir.Delay holds one delay per neuron); export refuses the "
                         "layer rather than drop them")
    n = (layer.out_features,)
    lif = _cuba_lif_node(layer, where, n, ctx)
    weight = _export_weight(layer, where)  # (out, in), dtype kept
    i = ctx.index
    ctx.nodes[f"linear_{i}"] = nir.Linear(weight=weight)
    ctx.nodes[f"lif_{i}"] = lif
    ctx.shape = n


def _export_lif_recurrent(layer: LIFRecurrent, where: str, ctx: _ExportContext) -> None:
    _export_lif_linear(layer, where, ctx)
    rw = layer.recurrent_weight if layer.mask is None else layer.recurrent_weight * layer.mask
    bad = int(rw.numel() - torch.isfinite(rw).sum())
    if bad:
        raise ValueError(f"{where} (LIFRecurrent): recurrent_weight holds {bad} NaN or "
                         "infinite values; a diverged network cannot be exported")
    i = ctx.index
    ctx.side[f"recurrent_{i}"] = ctx.nir.Linear(weight=rw.detach().cpu().numpy().copy())
    ctx.loops += [(f"lif_{i}", f"recurrent_{i}"), (f"recurrent_{i}", f"lif_{i}")]


def _maps_shape(where: str, kind: str, ctx: _ExportContext) -> tuple[int, int, int]:
    """The ``(C, H, W)`` entering a map layer, or a ValueError."""
    if ctx.shape is None:
        raise ValueError(f"{where} ({kind}) is the first layer: pass input_shape=(C, H, W), "
                         "the per-sample shape of its input maps")
    if len(ctx.shape) != 3:
        raise ValueError(f"{where} ({kind}) takes maps (C, H, W) but receives shape "
                         f"{ctx.shape}")
    return ctx.shape  # type: ignore[return-value]


def _export_lif_conv2d(layer: LIFConv2d, where: str, ctx: _ExportContext) -> None:
    nir = ctx.nir
    c, h, w = _maps_shape(where, "LIFConv2d", ctx)
    if c != layer.in_channels:
        raise ValueError(f"{where} (LIFConv2d) takes {layer.in_channels} channels but receives "
                         f"shape {ctx.shape}")
    (kh, kw), (sy, sx), (py, px) = layer.kernel_size, layer.stride, layer.padding
    ho, wo = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"{where} (LIFConv2d): kernel {layer.kernel_size} with padding "
                         f"{layer.padding} does not fit input maps {ctx.shape}")
    n = (layer.out_channels, ho, wo)
    lif = _cuba_lif_node(layer, where, n, ctx)
    weight = _export_weight(layer, where)  # (C_out, C_in, kH, kW), dtype kept
    i = ctx.index
    ctx.nodes[f"conv_{i}"] = nir.Conv2d(
        input_shape=(h, w), weight=weight, stride=(sy, sx), padding=(py, px), dilation=(1, 1),
        groups=1, bias=np.zeros(layer.out_channels, dtype=weight.dtype))
    ctx.nodes[f"lif_{i}"] = lif
    ctx.shape = n


def _export_spike_pool2d(layer: SpikePool2d, where: str, ctx: _ExportContext) -> None:
    c, h, w = _maps_shape(where, "SpikePool2d", ctx)
    k = layer.kernel_size
    if k > min(h, w):
        raise ValueError(f"{where} (SpikePool2d): kernel_size={k} exceeds input maps "
                         f"{ctx.shape}")
    ctx.nodes[f"pool_{ctx.index}"] = ctx.nir.SumPool2d(
        kernel_size=np.array([k, k]), stride=np.array([k, k]), padding=np.array([0, 0]))
    ctx.shape = (c, h // k, w // k)


def _export_flatten(layer: Flatten, where: str, ctx: _ExportContext) -> None:
    if ctx.shape is None:
        raise ValueError(f"{where} (Flatten) is the first layer: pass input_shape")
    ctx.nodes[f"flatten_{ctx.index}"] = ctx.nir.Flatten(
        input_type={"input": np.array(ctx.shape)}, start_dim=0, end_dim=-1)
    ctx.shape = (int(np.prod(ctx.shape)),)


def _export_spike_delay(layer: SpikeDelay, where: str, ctx: _ExportContext) -> None:
    """``nir.Delay`` with the delays in use (``delay.clamp(0, max_delay)``) in the graph's
    time unit, one per neuron of the per-sample shape (a map's delay repeated over its
    positions); ``max_delay`` (seconds) in the node's metadata."""
    if ctx.shape is None:
        ctx.shape = (layer.channels,)
    if ctx.shape[0] != layer.channels:
        raise ValueError(f"{where} (SpikeDelay) delays {layer.channels} channels but receives "
                         f"shape {ctx.shape}")
    d = layer.delay.detach().clamp(0.0, layer.max_delay).cpu().numpy()
    if not np.all(np.isfinite(d)):
        raise ValueError(f"{where} (SpikeDelay): delay holds NaN or infinite values; a "
                         "diverged network cannot be exported")
    d = (d * _time_scale(ctx.time_unit)).astype(d.dtype)  # exact for "s" (times 1)
    full = np.broadcast_to(d.reshape((-1,) + (1,) * (len(ctx.shape) - 1)), ctx.shape).copy()
    ctx.nodes[f"delay_{ctx.index}"] = ctx.nir.Delay(
        delay=full, metadata={"batsnn_layer": "SpikeDelay", "max_delay": layer.max_delay})


#: layer type -> function(layer, description, context) adding the layer's nodes in order
EXPORTERS: dict[type, Callable[[nn.Module, str, _ExportContext], None]] = {
    LIFLinear: _export_lif_linear,
    LIFRecurrent: _export_lif_recurrent,
    LIFConv2d: _export_lif_conv2d,
    SpikePool2d: _export_spike_pool2d,
    Flatten: _export_flatten,
    SpikeDelay: _export_spike_delay,
}


def _flat_layers(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    if type(module) in EXPORTERS:
        return [(prefix or "model", module)]
    if isinstance(module, nn.Sequential):  # SpikingSequential included
        out = []
        for name, child in module.named_children():
            out += _flat_layers(child, f"{prefix}.{name}" if prefix else f"layer {name}")
        return out
    raise TypeError(f"{prefix or 'model'} is a {type(module).__name__}, which has no NIR "
                    f"mapping (supported: {', '.join(t.__name__ for t in EXPORTERS)}, inside "
                    "nn.Sequential / SpikingSequential)")


def to_nir(model: nn.Module, *, input_shape: tuple[int, ...] | None = None,
           time_unit: str = "s"):
    """The NIR graph of a batsnn network.

    Each :class:`~batsnn.nn.LIFLinear` becomes ``linear_<i>`` (``nir.Linear``, weight
    ``(out, in)`` in the layer's dtype, bit for bit) followed by ``lif_<i>`` (``nir.CubaLIF``
    with per-neuron arrays ``(out,)`` from :func:`cuba_lif_constants`); each
    :class:`~batsnn.nn.LIFConv2d` becomes ``conv_<i>`` (``nir.Conv2d``) followed by ``lif_<i>``
    (arrays ``(C_out, H_out, W_out)``); :class:`~batsnn.nn.SpikePool2d` becomes ``pool_<i>``
    (``nir.SumPool2d``) and :class:`~batsnn.nn.Flatten` ``flatten_<i>`` (``nir.Flatten``,
    ``start_dim=0``); a :class:`~batsnn.nn.LIFRecurrent` is ``linear_<i>`` -> ``lif_<i>``
    with the loop ``lif_<i>`` -> ``recurrent_<i>`` (``nir.Linear``) -> ``lif_<i>``; ``<i>``
    is the layer's position. They lie between an ``input``
    (``nir.Input``) and an ``output`` (``nir.Output``) node carrying the per-sample shapes
    (no batch dimension). ``nn.Sequential`` / :class:`~batsnn.nn.SpikingSequential`
    containers (nested too) are flattened. See the module docstring for the equations.

    Args:
        model: a :class:`~batsnn.nn.LIFLinear` or a (nested) sequential container of
            ``LIFLinear``, ``LIFConv2d``, ``SpikePool2d`` and ``Flatten`` layers.
        input_shape: per-sample input shape; ``None`` infers it from a dense first layer,
            where it must be ``(in_features,)``. A network that starts with maps (a
            ``LIFConv2d``) needs it: ``(C, H, W)``, carried by the ``nir.Input`` node.
        time_unit: unit of the graph's time constants, ``"s"`` (default) or ``"ms"``.

    Returns:
        ``nir.NIRGraph``, with graph metadata ``format``, ``batsnn_version`` and
        ``time_unit`` and, on each CubaLIF node, the layer's ``LIFParams`` in seconds.

    Raises:
        ImportError: ``nir`` is not installed (the message says what to install).
        TypeError: a layer has no NIR mapping (the message names it).
        ValueError: ``delta_theta != theta``, a bad ``time_unit`` or ``input_shape``.
    """
    import batsnn

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _time_scale(time_unit)
    if input_shape is not None:
        try:
            input_shape = tuple(int(s) for s in input_shape)
        except (TypeError, ValueError):
            raise ValueError(f"input_shape must be a tuple of ints, got {input_shape!r}") \
                from None
        if not input_shape or any(s < 1 for s in input_shape):
            raise ValueError(f"input_shape must be positive ints, got {input_shape!r}")
    layers = _flat_layers(model, "")
    if not layers:
        raise ValueError("model has no layers to export")
    nir = _nir()
    ctx = _ExportContext(nir=nir, time_unit=time_unit, shape=input_shape)
    for where, layer in layers:
        EXPORTERS[type(layer)](layer, where, ctx)
        ctx.index += 1
    first = next(iter(ctx.nodes.values()))
    in_shape = input_shape or tuple(int(s) for s in first.input_type["input"])
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)}), **ctx.nodes,
             "output": nir.Output(output_type={"output": np.array(ctx.shape)})}
    names = list(nodes)
    return nir.NIRGraph(nodes={**nodes, **ctx.side},
                        edges=list(zip(names[:-1], names[1:])) + ctx.loops,
                        metadata={"format": FORMAT, "batsnn_version": batsnn.__version__,
                                  "time_unit": time_unit})


def save_nir(model: nn.Module, path: str | os.PathLike, *, overwrite: bool = False,
             **kw) -> Path:
    """Write ``to_nir(model, **kw)`` to ``path`` as a NIR HDF5 file.

    The graph is serialised in memory (``nir.write``) and written by the one safe writer
    (:func:`batsnn.fileio.atomic_write`: a new temporary file in the target directory, then
    renamed), so a reader never sees a half-written file. Before anything is written, ``path``
    is checked (:func:`batsnn.fileio.check_new_file`): its directory must exist and must not
    be a batsnn run or sweep directory, and a symbolic link, a directory, a FIFO or a device
    there is refused. An existing file is never replaced unless ``overwrite=True`` and it is
    a NIR file batsnn wrote (graph metadata ``format`` is :data:`FORMAT`).

    Args:
        model: see :func:`to_nir`.
        path: output file, conventionally ``*.nir``; its directory must exist.
        overwrite: replace an existing NIR file that batsnn wrote (nothing else).
        **kw: ``input_shape``, ``time_unit`` (see :func:`to_nir`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``path`` may not be written (the message says why), or see :func:`to_nir`.
    """
    path = check_nir_path(path, "path", overwrite=overwrite)
    graph = to_nir(model, **kw)
    buf = io.BytesIO()
    _nir().write(buf, graph)
    try:
        atomic_write(path, buf.getvalue())
    except OSError as e:
        raise ValueError(f"path {printable(path)} cannot be written "
                         f"({e.strerror or one_line(e)})") from None
    return path


def check_nir_path(path: str | os.PathLike, what: str = "path", *, overwrite: bool = False,
                   force_hint: str = "overwrite=True") -> Path:
    """Check that a NIR file may be written at ``path``, before anything is written
    (:func:`batsnn.fileio.check_new_file` with :func:`is_batsnn_nir_file` as the test of an
    existing file): ``what`` names the path in messages (``"--out"`` on the command line) and
    ``force_hint`` says how to ask for overwriting (``"--force"``). Returns ``path`` as a
    Path; raises ``ValueError`` saying why it may not be written."""
    return check_new_file(path, what, overwrite=overwrite, is_own=is_batsnn_nir_file,
                          own=f"a NIR file batsnn wrote (metadata format {FORMAT!r})",
                          force_hint=force_hint)


def is_batsnn_nir_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (not a link) holding a NIR graph whose metadata
    ``format`` is :data:`FORMAT`, i.e. a file :func:`save_nir` wrote. Never raises."""
    try:
        import h5py

        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, "rb") as f, h5py.File(f, "r") as h5:
            fmt = h5["node"]["metadata"]["format"][()]
        return (fmt.decode() if isinstance(fmt, bytes) else fmt) == FORMAT
    except Exception:  # noqa: BLE001 - any failure to read it means: not ours
        return False


# ----------------------------------------------------------------------------- import

@dataclass
class _ImportContext:
    scale: float
    max_spikes: int | None
    t_max: float | None
    dtype: torch.dtype | None
    shape: tuple[int, ...] | None
    #: the dtype integer weights become: ``dtype``, else that of the graph's float weights
    #: (float64 if any is), else float32
    int_dtype: torch.dtype = torch.float32
    #: CubaLIF name -> (name, node) of the Linear/Affine node looping back on it
    loops: dict = field(default_factory=dict)


def _q(name) -> str:
    """A node name (text from a file) quoted for a message, control characters escaped."""
    return f"'{printable(name)}'"


def _meta(node, where: str = "the graph") -> dict:
    """A node's (or the graph's) metadata as a dict, byte strings decoded; ValueError naming
    ``where`` for text that is not UTF-8."""
    m = getattr(node, "metadata", None)
    if not isinstance(m, dict):
        return {}
    out = {}
    for k, v in m.items():
        if isinstance(v, np.ndarray) and v.ndim == 0:
            v = v[()]
        if isinstance(v, bytes):
            try:
                v = v.decode()
            except UnicodeDecodeError:
                raise ValueError(f"{where}: metadata {_q(k)} is not UTF-8 text") from None
        out[k] = v
    return out


def _meta_number(where: str, meta: dict, key: str, default: float, *,
                 allow_inf: bool = False) -> float:
    """The real number ``meta[key]`` (``default`` if absent), or a ValueError naming it."""
    if key not in meta:
        return default
    v = meta[key]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or math.isnan(v) \
            or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{where}: metadata {key} must be a "
                         f"{'real number or infinity' if allow_inf else 'finite real number'}, "
                         f"got {printable(repr(v))}")
    return float(v)


def _max_spikes(where: str, value, source: str) -> int:
    """``value`` as a spike count: an integer >= 1 (never a bool or a fraction)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{where}: {source} max_spikes must be an integer >= 1, got "
                         f"{printable(repr(value))}")
    if value < 1:
        raise ValueError(f"{where}: {source} max_spikes must be >= 1, got {int(value)}")
    return int(value)


def _uniform(name: str, what: str, values, n: int) -> float:
    a = np.asarray(values)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: {what} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: {what} must be finite numbers, got "
                         f"{printable(np.asarray(values).tolist(), 80)}")
    if a.size != n:
        raise ValueError(f"{name}: {what} has {a.size} entries for {n} neurons")
    if not np.all(a == a[0]):
        raise ValueError(f"{name}: {what} differs between neurons (from {a.min()!r} to "
                         f"{a.max()!r}); a batsnn layer has one value for all its neurons")
    return float(a[0])


def _close(a: float, b: float, rel: float = _REL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def _neuron(name: str, node, n: int, ctx: _ImportContext) -> LIFParams:
    """LIFParams of a CubaLIF node that batsnn can represent, or a ValueError naming it."""
    f = {k: _uniform(f"CubaLIF {_q(name)}", k, getattr(node, k), n)
         for k in ("tau_syn", "tau_mem", "r", "w_in", "v_leak", "v_threshold", "v_reset")}
    where = f"CubaLIF {_q(name)}"
    if f["v_leak"] != 0:
        raise ValueError(f"{where}: v_leak={f['v_leak']!r}; batsnn's neuron leaks to 0")
    if f["v_reset"] != 0:
        raise ValueError(f"{where}: v_reset={f['v_reset']!r}; batsnn's reset (v -= theta at "
                         "v == theta) equals a reset to 0 only")
    if not (f["tau_syn"] > 0 and f["v_threshold"] > 0):
        raise ValueError(f"{where}: tau_syn={f['tau_syn']!r} and v_threshold="
                         f"{f['v_threshold']!r} must be > 0")
    if not _close(f["tau_mem"], 2 * f["tau_syn"]):
        raise ValueError(f"{where}: tau_mem={f['tau_mem']!r} is not 2 * tau_syn="
                         f"{2 * f['tau_syn']!r}; batsnn's neuron needs tau = 2 tau_s")
    # v equals the BATS potential iff r * w_in / tau_syn = tau (seconds) = tau_mem / scale
    gain = f["r"] * f["w_in"] / f["tau_syn"]
    if not _close(gain, f["tau_mem"] / ctx.scale):
        raise ValueError(f"{where}: r * w_in / tau_syn = {gain!r} but batsnn's neuron needs "
                         f"tau_mem / (units per second) = {f['tau_mem'] / ctx.scale!r} (input "
                         "spikes are Dirac impulses of area 1)")
    meta = _meta(node, where)
    tau_s = f["tau_syn"] / ctx.scale
    if "tau_s" in meta:  # batsnn's own value in seconds: exact where the unit conversion is not
        meta_tau_s = _meta_number(where, meta, "tau_s", tau_s)
        if not _close(meta_tau_s, tau_s, 1e-12):
            raise ValueError(f"{where}: metadata tau_s={meta_tau_s!r} s disagrees with "
                             f"tau_syn={f['tau_syn']!r}")
        tau_s = meta_tau_s
    theta = f["v_threshold"]
    delta_theta = _meta_number(where, meta, "delta_theta", theta)
    if delta_theta != theta:
        raise ValueError(f"{where}: metadata delta_theta={delta_theta!r} differs from "
                         f"v_threshold={theta!r}; NIR's reset to v_reset=0 is BATS' reset "
                         "only when they are equal")
    if ctx.max_spikes is not None:
        max_spikes = ctx.max_spikes
    elif "max_spikes" in meta:
        max_spikes = _max_spikes(where, meta["max_spikes"], "metadata")
    else:
        raise ValueError(f"{where}: no max_spikes in its metadata (a graph batsnn did not "
                         "write); pass from_nir(..., max_spikes=K)")
    t_max = ctx.t_max if ctx.t_max is not None else _meta_number(where, meta, "t_max",
                                                                   math.inf, allow_inf=True)
    dt = _meta_number(where, meta, "dt", 0.0)
    reset_at = meta.get("reset_at", "crossing")
    if not isinstance(reset_at, str):
        raise ValueError(f"{where}: metadata reset_at must be text, got "
                         f"{printable(repr(reset_at))}")
    try:
        return LIFParams(tau_s=tau_s, theta=theta, max_spikes=max_spikes, t_max=t_max,
                         dt=dt, reset_at=printable(reset_at))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def _import_weight(where: str, weight) -> np.ndarray:
    """A node's weight as a numpy array of float32, float64 or integers (converted by
    :func:`_weight_tensor`), finite and non-empty, or a ValueError naming ``where``."""
    w = np.asarray(weight)
    if w.dtype.kind not in "iu" and w.dtype not in (np.float32, np.float64):
        raise ValueError(f"{where}: weight has dtype {w.dtype}; batsnn's layers hold float32 "
                         "or float64 weights")
    if w.size == 0:
        raise ValueError(f"{where}: weight is empty (shape {w.shape})")
    if w.dtype.kind == "f":
        bad = int(w.size - np.count_nonzero(np.isfinite(w)))
        if bad:
            raise ValueError(f"{where}: weight holds {bad} NaN or infinite values")
    return w


#: Integers of at most this magnitude are exact in each float dtype.
_EXACT_INT = {torch.float32: 2**24, torch.float64: 2**53}


def _weight_tensor(where: str, w: np.ndarray, ctx: _ImportContext,
                   params: LIFParams) -> torch.Tensor:
    """The layer weight tensor of ``w``: the file's float dtype, or ``ctx.dtype``, in which it
    must stay finite; integer weights become ``ctx.int_dtype`` when every one is exact there
    (magnitude at most 2**24 in float32, 2**53 in float64). Its magnitudes
    must be at most ``params.max_weight`` (docs/model.md section 7)."""
    if w.dtype.kind in "iu":
        dtype = ctx.int_dtype
        top = max(abs(int(w.min())), abs(int(w.max())))
        if top > _EXACT_INT[dtype]:
            raise ValueError(f"{where}: integer weight of magnitude {top} is not exact in "
                             f"{dtype} (integers of magnitude up to 2**24 are exact in float32, "
                             "up to 2**53 in float64; pass dtype=torch.float64 or store float "
                             "weights)")
        weight = torch.from_numpy(w.astype(np.float64)).to(dtype)
    else:
        weight = torch.from_numpy(np.array(w, copy=True))
    if ctx.dtype is not None:
        weight = weight.to(ctx.dtype)
        if not bool(torch.isfinite(weight).all()):
            raise ValueError(f"{where}: weight overflows {ctx.dtype} (largest |w| = "
                             f"{float(np.abs(w).max())!r})")
    top = float(weight.abs().max())
    if top > params.max_weight:
        raise ValueError(f"{where}: weight holds a magnitude {top:g}, beyond the |weight| <= "
                         f"{WEIGHT_RATIO_MAX:g} * theta / tau_s = {params.max_weight:g} that "
                         "batsnn supports (docs/model.md section 7)")
    return weight


def _import_dense(chain: list, i: int, ctx: _ImportContext) -> tuple[nn.Module, int]:
    """``Linear``/``Affine`` (zero bias) + ``CubaLIF`` -> :class:`LIFLinear`."""
    nir = _nir()
    name, node = chain[i]
    kind = type(node).__name__
    if isinstance(node, nir.Affine):
        bias = np.asarray(node.bias)
        if np.any(bias != 0):
            raise ValueError(f"{kind} {_q(name)} has a non-zero bias (max |b| = "
                             f"{float(np.abs(bias).max())!r}); batsnn's layers have none")
    w = _import_weight(f"{kind} {_q(name)}", node.weight)
    if w.ndim != 2:
        raise ValueError(f"{kind} {_q(name)}: weight must be 2-D (out, in), got shape {w.shape}")
    if i + 1 >= len(chain) or not isinstance(chain[i + 1][1], nir.CubaLIF):
        nxt = chain[i + 1] if i + 1 < len(chain) else ("(end)", None)
        raise ValueError(f"{kind} {_q(name)} must be followed by a CubaLIF node, got "
                         f"{type(nxt[1]).__name__} {_q(nxt[0])}")
    n_out, n_in = w.shape
    if ctx.shape is not None and ctx.shape != (n_in,):
        raise ValueError(f"{kind} {_q(name)} takes {n_in} inputs but receives shape {ctx.shape}")
    lif_name, lif = chain[i + 1]
    params = _neuron(lif_name, lif, n_out, ctx)
    weight = _weight_tensor(f"{kind} {_q(name)}", w, ctx, params)
    kw = dict(tau_s=params.tau_s, theta=params.theta, max_spikes=params.max_spikes,
              t_max=params.t_max, dt=params.dt or None, reset_at=params.reset_at,
              dtype=weight.dtype)
    if lif_name in ctx.loops:
        rec = _recurrent_weight(ctx.loops[lif_name], n_out, ctx, params).to(weight.dtype)
        layer = LIFRecurrent(n_in, n_out, **kw)
        with torch.no_grad():
            layer.recurrent_weight.copy_(rec)
    else:
        layer = LIFLinear(n_in, n_out, **kw)
    with torch.no_grad():
        layer.weight.copy_(weight)
    ctx.shape = (n_out,)
    return layer, 2


def _recurrent_weight(loop: tuple, n: int, ctx: _ImportContext,
                      params: LIFParams) -> torch.Tensor:
    """The ``(n, n)`` weight of the Linear / zero-bias Affine node ``loop`` = ``(name,
    node)`` that feeds a CubaLIF's spikes back to it, or a ValueError naming it."""
    nir = _nir()
    name, node = loop
    kind = type(node).__name__
    if not isinstance(node, (nir.Linear, nir.Affine)):
        raise ValueError(f"{kind} {_q(name)} loops on a CubaLIF; batsnn reads a Linear or "
                         "zero-bias Affine recurrent synapse only")
    if isinstance(node, nir.Affine) and np.any(np.asarray(node.bias) != 0):
        raise ValueError(f"{kind} {_q(name)} has a non-zero bias; batsnn's layers have none")
    w = _import_weight(f"{kind} {_q(name)}", node.weight)
    if w.shape != (n, n):
        raise ValueError(f"{kind} {_q(name)}: a recurrent weight of {n} neurons must have "
                         f"shape ({n}, {n}), got {w.shape}")
    return _weight_tensor(f"{kind} {_q(name)}", w, ctx, params)


def _ints(name: str, what: str, value, n: int = 2) -> tuple[int, ...]:
    """``value`` (an int or ``n`` ints) as a tuple of ``n`` ints, or a ValueError naming it."""
    a = np.atleast_1d(np.asarray(value))
    if a.size == 1:
        a = np.repeat(a, n)
    if a.shape != (n,) or not np.all(a == np.round(a.astype(np.float64))):
        raise ValueError(f"{name}: {what} must be an int or {n} ints, got {value!r}")
    return tuple(int(x) for x in a)


def _import_maps_shape(name: str, ctx: _ImportContext) -> tuple[int, int, int]:
    if ctx.shape is None or len(ctx.shape) != 3:
        raise ValueError(f"{name} takes maps (C, H, W) but receives shape {ctx.shape}")
    return ctx.shape  # type: ignore[return-value]


def _import_conv(chain: list, i: int, ctx: _ImportContext) -> tuple[nn.Module, int]:
    """``Conv2d`` (zero bias, dilation 1, groups 1) + ``CubaLIF`` -> :class:`LIFConv2d`."""
    nir = _nir()
    name, node = chain[i]
    where = f"Conv2d {_q(name)}"
    w = _import_weight(where, node.weight)
    if w.ndim != 4:
        raise ValueError(f"{where}: weight must be 4-D (C_out, C_in, kH, kW), got shape "
                         f"{w.shape}")
    if _ints(where, "dilation", node.dilation) != (1, 1):
        raise ValueError(f"{where}: dilation={np.asarray(node.dilation).tolist()!r}; batsnn's "
                         "convolution has dilation 1")
    if int(np.asarray(node.groups)) != 1:
        raise ValueError(f"{where}: groups={int(np.asarray(node.groups))!r}; batsnn's "
                         "convolution has groups 1")
    bias = np.asarray(node.bias) if node.bias is not None else np.zeros(1)
    if np.any(bias != 0):
        raise ValueError(f"{where} has a non-zero bias (max |b| = "
                         f"{float(np.abs(bias).max())!r}); batsnn's layers have none")
    c_out, c_in, kh, kw = w.shape
    pad = node.padding
    if isinstance(pad, bytes):
        pad = pad.decode()
    if isinstance(pad, str) or (isinstance(pad, np.ndarray) and pad.dtype.kind in "SU"):
        if str(pad) != "valid":
            raise ValueError(f"{where}: padding={str(pad)!r}; batsnn takes 'valid' or explicit "
                             "ints")
        pad = 0
    (sy, sx), (py, px) = _ints(where, "stride", node.stride), _ints(where, "padding", pad)
    if min(sy, sx) < 1 or min(py, px) < 0:
        raise ValueError(f"{where}: stride {(sy, sx)} must be >= 1 and padding {(py, px)} >= 0")
    c, h, wd = _import_maps_shape(where, ctx)
    if c != c_in:
        raise ValueError(f"{where} takes {c_in} channels but receives shape {ctx.shape}")
    if node.input_shape is not None and tuple(int(x) for x in np.asarray(node.input_shape)) \
            != (h, wd):
        raise ValueError(f"{where}: input_shape={np.asarray(node.input_shape).tolist()} but it "
                         f"receives maps {ctx.shape}")
    ho, wo = (h + 2 * py - kh) // sy + 1, (wd + 2 * px - kw) // sx + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"{where}: kernel {(kh, kw)} does not fit input maps {ctx.shape}")
    if i + 1 >= len(chain) or not isinstance(chain[i + 1][1], nir.CubaLIF):
        nxt = chain[i + 1] if i + 1 < len(chain) else ("(end)", None)
        raise ValueError(f"{where} must be followed by a CubaLIF node, got "
                         f"{type(nxt[1]).__name__} {_q(nxt[0])}")
    lif_name, lif = chain[i + 1]
    params = _neuron(lif_name, lif, c_out * ho * wo, ctx)
    weight = _weight_tensor(where, w, ctx, params)
    layer = LIFConv2d(c_in, c_out, (kh, kw), stride=(sy, sx), padding=(py, px),
                      tau_s=params.tau_s, theta=params.theta, max_spikes=params.max_spikes,
                      t_max=params.t_max, dt=params.dt or None, reset_at=params.reset_at,
                      dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
    ctx.shape = (c_out, ho, wo)
    return layer, 2


def _import_pool(chain: list, i: int, ctx: _ImportContext) -> tuple[nn.Module, int]:
    """``SumPool2d`` (square kernel, stride = kernel, no padding) -> :class:`SpikePool2d`:
    the sum of the window's spikes, fed to linear synapses, is the union of its trains."""
    name, node = chain[i]
    where = f"SumPool2d {_q(name)}"
    k = _ints(where, "kernel_size", node.kernel_size)
    stride = _ints(where, "stride", node.stride)
    pad = _ints(where, "padding", node.padding)
    if k[0] != k[1] or k[0] < 1:
        raise ValueError(f"{where}: kernel_size={list(k)}; batsnn pools square windows")
    if stride != k:
        raise ValueError(f"{where}: stride={list(stride)} differs from kernel_size={list(k)}; "
                         "batsnn's pooling windows do not overlap or leave gaps")
    if pad != (0, 0):
        raise ValueError(f"{where}: padding={list(pad)}; batsnn's pooling has none")
    c, h, w = _import_maps_shape(where, ctx)
    if k[0] > min(h, w):
        raise ValueError(f"{where}: kernel_size={list(k)} exceeds input maps {ctx.shape}")
    ctx.shape = (c, h // k[0], w // k[0])
    return SpikePool2d(k[0]), 1


def _import_flatten(chain: list, i: int, ctx: _ImportContext) -> tuple[nn.Module, int]:
    """``Flatten`` of all per-sample axes (no batch axis) -> :class:`Flatten`."""
    name, node = chain[i]
    where = f"Flatten {_q(name)}"
    shape = ctx.shape or ()
    in_type = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    if in_type is not None and tuple(int(x) for x in np.atleast_1d(in_type)) != shape:
        raise ValueError(f"{where}: input_type {np.asarray(in_type).tolist()} but it receives "
                         f"shape {ctx.shape}")
    nd = len(shape)
    start, end = int(node.start_dim), int(node.end_dim)
    start, end = start + nd if start < 0 else start, end + nd if end < 0 else end
    if (start, end) != (0, nd - 1):
        raise ValueError(f"{where}: start_dim={int(node.start_dim)}, end_dim="
                         f"{int(node.end_dim)} on per-sample shape {ctx.shape}; batsnn's "
                         "Flatten joins all per-sample axes (start_dim=0, end_dim=-1, no "
                         "batch axis)")
    ctx.shape = (int(np.prod(shape)),)
    return Flatten(), 1


def _import_delay(chain: list, i: int, ctx: _ImportContext) -> tuple[nn.Module, int]:
    """``Delay`` (finite delays >= 0, equal over each channel's positions) ->
    :class:`SpikeDelay` (``max_delay`` from the metadata, else none)."""
    name, node = chain[i]
    where = f"Delay {_q(name)}"
    d = np.asarray(node.delay)
    if d.dtype not in (np.float32, np.float64) or d.ndim < 1 or d.size == 0:
        raise ValueError(f"{where}: delay must be a float32 or float64 array with one value "
                         f"per neuron, got {d.dtype} of shape {d.shape}")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        bad = d[~(np.isfinite(d) & (d >= 0))].ravel()[0]
        raise ValueError(f"{where}: delays must be finite and >= 0, got {float(bad)!r}")
    if ctx.shape is not None and tuple(d.shape) != tuple(ctx.shape):
        raise ValueError(f"{where}: delay has shape {d.shape} but it receives shape "
                         f"{ctx.shape}")
    per_channel = d.reshape(d.shape[0], -1)
    if np.any(per_channel != per_channel[:, :1]):
        raise ValueError(f"{where}: the delays differ between positions of one channel; "
                         "batsnn's SpikeDelay has one delay per channel")
    max_delay = _meta_number(where, _meta(node, where), "max_delay", math.inf,
                             allow_inf=True)
    seconds = per_channel[:, 0].astype(np.float64) / ctx.scale
    # a delay at the bound, held in float32, may lie a few ulps above max_delay
    slack = 1.0 + 8 * float(np.finfo(d.dtype).eps)
    if max_delay <= 0 or np.any(seconds > max_delay * slack):
        raise ValueError(f"{where}: metadata max_delay={max_delay!r} s must be > 0 and hold "
                         f"every delay (the largest is {float(seconds.max())!r} s)")
    dtype = ctx.dtype or (torch.float64 if d.dtype == np.float64 else torch.float32)
    value = torch.as_tensor(seconds if ctx.scale != 1.0 else per_channel[:, 0], dtype=dtype)
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{where}: the delays overflow {dtype} (largest "
                         f"{float(seconds.max())!r} s)")
    layer = SpikeDelay(d.shape[0], max_delay=max_delay, dtype=dtype)
    with torch.no_grad():
        layer.delay.copy_(value)
    ctx.shape = tuple(int(x) for x in d.shape)
    return layer, 1


#: NIR node type name -> function(chain, position, context) -> (module, nodes consumed)
IMPORTERS: dict[str, Callable] = {"Linear": _import_dense, "Affine": _import_dense,
                                  "Conv2d": _import_conv, "SumPool2d": _import_pool,
                                  "Flatten": _import_flatten, "Delay": _import_delay}


def _names(names) -> str:
    return "[" + ", ".join(_q(n) for n in names) + "]"


def _chain(graph) -> tuple[list[tuple[str, Any]], dict]:
    """The graph's nodes in order, from its one Input to its one Output, and its recurrent
    loops (CubaLIF name -> ``(name, node)`` of a node whose only edges are one from and one
    back to that CubaLIF), or a ValueError."""
    nir = _nir()
    if not isinstance(graph.nodes, dict) or not all(isinstance(k, str) for k in graph.nodes):
        raise ValueError("the graph's nodes must be a dict of named nodes")
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"the graph must have one Input and one Output node, got inputs "
                         f"{_names(inputs)} and outputs {_names(outputs)}")
    succ: dict[str, list[str]] = {}
    pred: dict[str, int] = {}
    try:
        edges = [tuple(e) for e in graph.edges]
    except TypeError:
        raise ValueError(f"the graph's edges must be a list of (source, target) pairs, got "
                         f"{printable(repr(graph.edges), 80)}") from None
    for e in edges:
        if len(e) != 2 or not all(isinstance(x, str) for x in e):
            raise ValueError(f"edge {printable(repr(e), 80)} is not a (source, target) pair of "
                             "node names")
        a, b = e
        for end in (a, b):
            if end not in graph.nodes:
                raise ValueError(f"edge ({_q(a)}, {_q(b)}) names the node {_q(end)}, which the "
                                 "graph does not have")
    pairs = set(edges)
    loops = {}
    for a, b in pairs:
        if ((b, a) in pairs and isinstance(graph.nodes[a], nir.CubaLIF)
                and not isinstance(graph.nodes[b], (nir.CubaLIF, nir.Input, nir.Output))
                and sum(b in e for e in edges) == 2):
            if a in loops:
                raise ValueError(f"CubaLIF {_q(a)} has two recurrent loops "
                                 f"({_q(loops[a][0])}, {_q(b)}); batsnn reads one")
            loops[a] = (b, graph.nodes[b])
    looped = {b for b, _ in loops.values()}
    for a, b in edges:
        if a in looped or b in looped:
            continue
        succ.setdefault(a, []).append(b)
        pred[b] = pred.get(b, 0) + 1
    for k in graph.nodes:
        if len(succ.get(k, [])) > 1 or pred.get(k, 0) > 1:
            raise ValueError(f"node {_q(k)} branches or merges; batsnn imports a chain of layers "
                             "only")
    order, seen, k = [], set(), inputs[0]
    while True:
        order.append((k, graph.nodes[k]))
        seen.add(k)
        if k == outputs[0]:
            break
        nxt = succ.get(k, [])
        if not nxt:
            raise ValueError(f"node {_q(k)} does not lead to the Output node (no edge leaves it)")
        if nxt[0] in seen:
            raise ValueError(f"node {_q(k)} does not lead to the Output node (its edge to "
                             f"{_q(nxt[0])} closes a cycle)")
        k = nxt[0]
    if len(order) + len(looped) != len(graph.nodes):
        left = sorted(set(graph.nodes) - seen - looped)
        raise ValueError(f"nodes {_names(left)} are not on the path from Input to Output")
    return order, loops


def _shape(where: str, types, key: str) -> tuple[int, ...]:
    """The per-sample shape ``types[key]`` of an Input or Output node: positive ints."""
    value = types.get(key) if isinstance(types, dict) else None
    a = np.atleast_1d(np.asarray(value)) if value is not None else np.zeros(0)
    if a.size == 0 or a.ndim != 1 or a.dtype.kind not in "iuf" or \
            not np.all(np.isfinite(a.astype(np.float64))) or \
            not np.all(a == np.round(a.astype(np.float64))) or np.any(a < 1):
        raise ValueError(f"{where}: its {key} shape must be positive integers, got "
                         f"{printable(repr(value), 80)}")
    return tuple(int(x) for x in a)


def _h5_to_dict(group, depth: int = 0) -> dict:
    """An HDF5 group as nested dicts (byte strings decoded), at most 32 groups deep."""
    import h5py

    if depth > 32:
        raise ValueError("groups nested more than 32 deep")
    out = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _h5_to_dict(item, depth + 1)
        elif isinstance(item, h5py.Dataset):
            v = item[()]
            out[key] = v.decode("utf8") if isinstance(v, bytes) else v
        else:
            raise ValueError(f"{_q(key)} is neither a group nor a dataset")
    return out


#: the node types a NIR file may hold (those ``nir`` 1.0 reads and writes)
NODE_TYPES = ("Affine", "AvgPool2d", "Conv1d", "Conv2d", "CubaLI", "CubaLIF", "Delay",
              "Flatten", "I", "IF", "Input", "LI", "LIF", "Linear", "NIRGraph", "Output",
              "Scale", "SumPool2d", "Threshold")


def _read_graph(path: Path):
    """The NIR graph in the file ``path``; every failure a ValueError naming the node (the
    caller adds the file name)."""
    nir = _nir()
    import h5py

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ValueError(describe_path(path)) from None
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror or one_line(e)})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{describe_path(path)}, expected a NIR (HDF5) file")
    with os.fdopen(fd, "rb") as f:
        try:
            with h5py.File(f, "r") as h5:
                top = h5.get("node")
                if not isinstance(top, h5py.Group):
                    raise ValueError("has no 'node' group: not a NIR graph file")
                d = _h5_to_dict(top)
        except UnicodeDecodeError:
            raise ValueError("holds names or text that are not UTF-8") from None
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ... on bad files
            raise ValueError(f"is not a readable NIR (HDF5) file (empty, truncated or another "
                             f"format: {type(e).__name__}: {printable(one_line(e))})") from None
    if not (isinstance(d.get("type"), str) and d["type"] == "NIRGraph"):
        raise ValueError(f"its top node is of type {printable(repr(d.get('type')), 80)}, not "
                         "a NIRGraph")
    nodes = d.get("nodes")
    if not isinstance(nodes, dict):
        raise ValueError("its graph has no nodes")
    built = {}
    for name, nd in nodes.items():
        if not isinstance(name, str):
            raise ValueError(f"node name {printable(repr(name), 80)} is not UTF-8 text")
        kind = nd.get("type") if isinstance(nd, dict) else None
        try:
            if not isinstance(kind, str):
                raise ValueError("it has no type")
            if kind not in NODE_TYPES:
                raise ValueError(f"NIR has no node type {printable(repr(kind), 80)}")
            built[name] = nir.dict2NIRNode(nd)
        except Exception as e:  # noqa: BLE001 - nir's constructors raise anything on bad fields
            raise ValueError(f"node {_q(name)} ({printable(kind)}) cannot be read: "
                             f"{type(e).__name__}: {printable(one_line(e))}") from None
    edges = d.get("edges")
    e = np.asarray(edges if edges is not None else [])
    if e.size and (e.ndim != 2 or e.shape[1] != 2):
        raise ValueError(f"its edges must be (source, target) pairs, got shape {e.shape}")
    try:
        pairs = [tuple(x.decode("utf8") if isinstance(x, bytes) else x for x in row)
                 for row in e.tolist()] if e.size else []
    except UnicodeDecodeError:
        raise ValueError("its edges name nodes in text that is not UTF-8") from None
    meta = d.get("metadata", {})
    try:
        return nir.NIRGraph(nodes=built, edges=pairs,
                            metadata=meta if isinstance(meta, dict) else {}, type_check=False)
    except Exception as e:  # noqa: BLE001 - as above
        raise ValueError(f"its graph cannot be built: {type(e).__name__}: "
                         f"{printable(one_line(e))}") from None


def from_nir(graph_or_path, *, time_unit: str | None = None, max_spikes: int | None = None,
             t_max: float | None = None, dtype: torch.dtype | None = None) -> SpikingSequential:
    """Build a batsnn network from a NIR graph (the inverse of :func:`to_nir`).

    The graph must be a chain from ``Input`` to ``Output`` of ``Linear`` / ``Affine`` (zero
    bias) / ``Conv2d`` (zero bias, dilation 1, groups 1) nodes each followed by a ``CubaLIF``,
    ``SumPool2d`` (square kernel, stride = kernel, no padding), ``Flatten`` (all per-sample
    axes) and ``Delay`` (finite delays >= 0, one per channel) nodes, whose CubaLIF constants batsnn can represent: one value per layer, ``v_leak =
    v_reset = 0``, ``tau_mem = 2 tau_syn`` and ``r w_in / tau_syn = tau_mem / c`` (``c`` the
    graph's units per second; see the module docstring).

    Args:
        graph_or_path: a ``nir.NIRGraph`` or the path of a NIR file.
        time_unit: the graph's time unit when its metadata has none (default ``"s"``); must
            agree with the metadata when both are given.
        max_spikes: spikes per neuron for every layer, overriding the metadata (needed for
            graphs batsnn did not write).
        t_max: simulation horizon in seconds for every layer, overriding the metadata
            (default: the metadata's, else ``inf``).
        dtype: weight dtype (default: the file's, float32 or float64). Integer weights
            become ``dtype``, by default float64 if the graph holds float64 weights, else
            float32; each must be exact there (magnitude at most 2**24 in float32, 2**53 in
            float64).

    Returns:
        :class:`~batsnn.nn.SpikingSequential` of :class:`~batsnn.nn.LIFLinear`,
        :class:`~batsnn.nn.LIFConv2d`, :class:`~batsnn.nn.SpikePool2d`,
        :class:`~batsnn.nn.Flatten` and :class:`~batsnn.nn.SpikeDelay` layers with the
        graph's weights bit for bit (delays too, in a graph in seconds).

    Raises:
        ImportError: ``nir`` is not installed.
        ValueError: naming the file (when given a path) and the node: a file that is not a
            readable NIR file (empty, truncated, text, a directory or FIFO), a node nir cannot
            read, an unsupported node type, a non-zero bias, a dilation, groups or pooling
            (stride, padding, kernel) batsnn has not, per-neuron differing constants, a reset
            or threshold batsnn cannot represent, NaN or infinite weights or constants,
            weights that are not float32/float64 or integers exact in ``dtype`` (float16,
            complex, ...), weights beyond the layer's ``LIFParams.max_weight``, a ``dt``
            outside its range (``LIFParams``), a ``max_spikes``
            that is not an integer >= 1 (metadata or argument), a graph that is not a chain
            (cycles, missing or dangling edges), shapes that disagree.
    """
    nir = _nir()
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    if max_spikes is not None:
        max_spikes = _max_spikes("from_nir", max_spikes, "argument")
    if t_max is not None:
        t_max = _meta_number("from_nir", {"t_max": t_max}, "t_max", math.inf, allow_inf=True)
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = Path(graph_or_path)
        try:
            graph = _read_graph(path)
            return _build(graph, time_unit, max_spikes, t_max, dtype)
        except ValueError as e:
            raise ValueError(f"NIR file {printable(path)}: {e}") from None
    if isinstance(graph_or_path, nir.NIRGraph):
        return _build(graph_or_path, time_unit, max_spikes, t_max, dtype)
    raise TypeError(f"graph_or_path must be a nir.NIRGraph or a path, got "
                    f"{type(graph_or_path).__name__}")


def _float_weight_dtype(chain: list) -> torch.dtype:
    """float64 if a node of ``chain`` holds float64 weights, else float32: the dtype in which
    a graph's integer weights join its float ones."""
    for _, node in chain:
        w = getattr(node, "weight", None)
        if isinstance(w, np.ndarray) and w.dtype == np.float64:
            return torch.float64
    return torch.float32


def _build(graph, time_unit, max_spikes, t_max, dtype) -> SpikingSequential:
    """The network of ``graph`` (see :func:`from_nir`); ValueErrors name the node."""
    meta = _meta(graph)
    unit = meta.get("time_unit")
    if unit is not None and (not isinstance(unit, str) or unit not in TIME_UNITS):
        raise ValueError(f"the graph's metadata time_unit must be one of "
                         f"{', '.join(map(repr, TIME_UNITS))}, got {printable(repr(unit), 80)}")
    if unit is not None and time_unit is not None and unit != time_unit:
        raise ValueError(f"time_unit={time_unit!r} but the graph's metadata says {unit!r}")
    scale = _time_scale(unit or time_unit or "s")
    ctx = _ImportContext(scale=scale, max_spikes=max_spikes, t_max=t_max, dtype=dtype,
                         shape=None)
    chain, ctx.loops = _chain(graph)
    for lif_name in ctx.loops:
        at = [k for k, (n, _) in enumerate(chain) if n == lif_name][0]
        if not (at > 0 and type(chain[at - 1][1]).__name__ in ("Linear", "Affine")):
            raise ValueError(f"CubaLIF {_q(lif_name)} has a recurrent loop but no Linear or "
                             "Affine node before it; batsnn reads recurrent dense layers only")
    ctx.int_dtype = dtype or _float_weight_dtype(chain)
    ctx.shape = _shape(f"Input node {_q(chain[0][0])}", chain[0][1].input_type, "input")
    layers, i = [], 1
    while i < len(chain) - 1:
        name, node = chain[i]
        importer = IMPORTERS.get(type(node).__name__)
        if importer is None:
            raise ValueError(f"node {_q(name)} of type {type(node).__name__}: batsnn cannot "
                             "import it (supported: Linear, Affine with zero bias or Conv2d, "
                             "each followed by CubaLIF; SumPool2d; Flatten)")
        try:
            layer, used = importer(chain, i, ctx)
        except ValueError as e:  # batsnn's own name the node; numpy's do not
            if any(_q(n) in str(e) for n, _ in chain[i:i + 2]):
                raise
            raise ValueError(f"node {_q(name)} of type {type(node).__name__}: "
                             f"{printable(one_line(e))}") from None
        except (KeyError, IndexError, TypeError, AttributeError, OverflowError,
                AssertionError) as e:  # a field of the wrong kind or shape
            raise ValueError(f"node {_q(name)} of type {type(node).__name__} is malformed: "
                             f"{type(e).__name__}: {printable(one_line(e))}") from None
        layers.append(layer)
        i += used
    if not layers:
        raise ValueError("the graph has no layers between its Input and Output nodes")
    out_shape = _shape(f"Output node {_q(chain[-1][0])}", chain[-1][1].output_type, "output")
    if out_shape != ctx.shape:
        raise ValueError(f"Output node {_q(chain[-1][0])} has shape {out_shape} but the last "
                         f"layer gives {ctx.shape}")
    return SpikingSequential(*layers)
