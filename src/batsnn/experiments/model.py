"""Networks built from a description of their layers.

A network is described by a list of layer specs, plain JSON-able dicts, each with a ``type``:

    [{"type": "linear", "features": 800, "theta": 0.2, "max_spikes": 30},
     {"type": "linear", "theta": 1.3, "max_spikes": 30}]

``linear`` (a :class:`batsnn.nn.LIFLinear`) takes:

- ``features``: output neurons (int >= 1). The last layer may leave it out: it then has one
  neuron per class of the dataset (if given, it must equal the number of classes).
- ``theta``, ``max_spikes`` (required) and ``delta_theta``, ``tau_s``, ``t_max``, ``init``
  (optional; the run's ``tau_s``, ``t_max`` and ``init`` otherwise): the neuron's parameters,
  validated as one :class:`batsnn.LIFParams`. ``dt`` is the run's, the same for every layer.

``recurrent`` (a :class:`batsnn.nn.LIFRecurrent`) takes the keys of ``linear`` and
``recurrent_init`` (``[low, high]`` of its ``(N, N)`` recurrent weights, default
``[-0.5, 0.5]``) and ``self_connections`` (default true; false keeps the diagonal zero):
every neuron also reads every spike of the layer's neurons.

``conv2d`` (a :class:`batsnn.nn.LIFConv2d`, "valid" and no bias by default) takes maps
``(C, H, W)`` and needs ``channels`` (output channels), ``kernel`` (an int or ``[kH, kW]``),
``theta`` and ``max_spikes``; optional ``stride``, ``padding`` and the neuron's
``delta_theta``, ``tau_s``, ``t_max``, ``init`` as for ``linear``:

    {"type": "conv2d", "channels": 15, "kernel": 5, "theta": 0.04, "max_spikes": 1}

``pool2d`` (a :class:`batsnn.nn.SpikePool2d`, optional ``kernel``, default 2) merges the
spike trains of each ``kernel x kernel`` window (``(C, H, W)`` to ``(C, H // k, W // k)``);
``flatten`` (a :class:`batsnn.nn.Flatten`, no keys) turns maps into the flat input a
``linear`` layer needs. A network whose first layer reads maps takes square images as
``(1, H, W)`` maps (:func:`network_input_shape`).

``delay`` (a :class:`batsnn.nn.SpikeDelay`) adds a learnable delay per channel (axis 1:
the neurons of flat input, the channels of maps) to every spike of the channel (axonal
delays, exact gradients); optional ``init`` (``[low, high]`` in seconds, the initial
delays drawn uniformly from it; default ``[0, 0]``, the identity; not the run's weight
``init``) and ``max_delay`` (seconds, > 0; default none): the delays used are clamped to
``[0, max_delay]``. It keeps the shape of its input and holds one parameter per channel:

    {"type": "delay", "init": [0, 0.05], "max_delay": 0.1}

Other layer types are added with :func:`register_layer_type`; a spec of an unknown type
raises ``ValueError`` naming its index and type. Every builder maps the input shape
(neurons per sample, without batch and spike axes, e.g. ``(784,)`` or ``(1, 28, 28)``) to
the output shape.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from batsnn.experiments.timestep import dt_mode
from batsnn.fileio import printable
from batsnn.functional import check_memory, device_memory
from batsnn.nn import (Flatten, LIFConv2d, LIFLinear, LIFRecurrent, SpikeDelay, SpikePool2d,
                       SpikingSequential)
from batsnn.ops.lif.synapse import Conv2d, pair
from batsnn.params import LIFParams

__all__ = ["INT_MAX", "LAYER_TYPES", "BuildContext", "LayerType", "NetworkTooLarge",
           "build_model", "build_network", "check_fits", "check_network", "check_weights_fit",
           "dense_network", "device_memory", "layer_shapes",
           "min_weights", "network_input_shape", "network_summary", "network_weights",
           "register_layer_type"]

#: the largest integer a layer spec takes (int64); larger ones are refused before any use
INT_MAX = 2**63 - 1


class NetworkTooLarge(ValueError, MemoryError):
    """A network's weights cannot fit in memory (found from the shapes, before anything is
    allocated): bad settings (``ValueError``) about memory (``MemoryError``)."""


@dataclass(frozen=True)
class BuildContext:
    """Run-wide settings a layer builder may use.

    Attributes:
        tau_s: default synaptic time constant (s) for layers that do not set one.
        t_max: default simulation horizon (s).
        init: default ``(low, high)`` of the uniform weight initialisation.
        dt: the run's time step (s); ``None`` or 0 for exact time.
        n_classes: number of classes (the last layer's default ``features``).
        is_last: whether the layer being built is the network's last.
        reset_at: when a spike's reset is applied on the grid (``"crossing"`` or
            ``"emitted"``, :class:`~batsnn.params.LIFParams`).
    """

    tau_s: float
    t_max: float
    init: tuple[float, float]
    dt: float | None
    n_classes: int
    is_last: bool = False
    reset_at: str = "crossing"


@dataclass(frozen=True)
class LayerType:
    """How to check and build one type of layer spec.

    Attributes:
        name: the spec's ``type``.
        required: keys a spec must have (besides ``type``).
        optional: keys a spec may have.
        out_shape: ``(spec, in_shape, ctx) -> out_shape``; raises ``ValueError`` when the
            input shape does not fit.
        build: ``(spec, in_shape, ctx) -> torch.nn.Module`` (weights drawn from the current
            torch RNG); the module maps spike trains to :class:`batsnn.SpikeTrains`.
        check: optional ``(spec) -> None`` checking values without shapes.
        maps: whether the layer reads maps ``(C, H, W)``: a network that starts with it takes
            images as maps (:func:`network_input_shape`).
        weights: optional ``(spec, in_shape, ctx) -> int``, the number of weights the layer
            holds, from the shapes alone (``None``: none), for the memory estimates
            (:func:`network_weights`).
    """

    name: str
    required: frozenset
    optional: frozenset
    out_shape: Callable[[Mapping, tuple, BuildContext], tuple]
    build: Callable[[Mapping, tuple, BuildContext], torch.nn.Module]
    check: Callable[[Mapping], None] | None = None
    maps: bool = False
    weights: Callable[[Mapping, tuple, BuildContext], int] | None = None


#: the known layer types by name (see :func:`register_layer_type`)
LAYER_TYPES: dict[str, LayerType] = {}


def register_layer_type(layer_type: LayerType) -> LayerType:
    """Make ``layer_type`` available to network descriptions (replaces one of the same name)."""
    if not isinstance(layer_type, LayerType):
        raise TypeError(f"layer_type must be a LayerType, got {type(layer_type).__name__}")
    LAYER_TYPES[layer_type.name] = layer_type
    return layer_type


# ----------------------------------------------------------------------------- linear

def _lif_params(spec: Mapping, ctx: BuildContext) -> LIFParams:
    return LIFParams(tau_s=spec.get("tau_s", ctx.tau_s), theta=spec["theta"],
                     max_spikes=spec["max_spikes"], delta_theta=spec.get("delta_theta"),
                     t_max=spec.get("t_max", ctx.t_max), dt=ctx.dt, reset_at=ctx.reset_at)


def _check_features(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"features must be an int >= 1, got {printable(repr(value))}")
    return int(value)


def _check_init(value) -> None:
    if (isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                       and math.isfinite(v) for v in value) or value[0] > value[1]):
        raise ValueError(f"init must be [low, high] with low <= high, got "
                         f"{printable(repr(value))}")


def _check_linear(spec: Mapping) -> None:
    if "features" in spec:
        _check_features(spec["features"])
    if "init" in spec:
        _check_init(spec["init"])
    # the neuron's parameters, checked once as LIFParams (placeholder defaults)
    _lif_params(spec, BuildContext(tau_s=1.0, t_max=math.inf, init=(-1.0, 1.0), dt=None,
                                   n_classes=1))


def _linear_out(spec: Mapping, in_shape: tuple, ctx: BuildContext) -> tuple:
    if len(in_shape) != 1:
        raise ValueError(f"linear needs a flat input (neurons,), got shape {in_shape}; put a "
                         "flatten layer before it")
    if "features" not in spec:
        if not ctx.is_last:
            raise ValueError("features is required except in the last layer")
        return (ctx.n_classes,)
    n = _check_features(spec["features"])
    if ctx.is_last and n != ctx.n_classes:
        raise ValueError(f"the last layer has features {n} but the dataset has "
                         f"{ctx.n_classes} classes")
    return (n,)


def _linear_build(spec: Mapping, in_shape: tuple, ctx: BuildContext) -> torch.nn.Module:
    (n_out,) = _linear_out(spec, in_shape, ctx)
    p = _lif_params(spec, ctx)
    init = spec.get("init", ctx.init)
    return LIFLinear(in_shape[0], n_out, tau_s=p.tau_s, theta=p.theta,
                     delta_theta=p.delta_theta, max_spikes=p.max_spikes, dt=p.dt or None,
                     t_max=p.t_max, reset_at=p.reset_at, init=(float(init[0]), float(init[1])))


register_layer_type(LayerType(
    name="linear", required=frozenset({"theta", "max_spikes"}),
    optional=frozenset({"features", "delta_theta", "tau_s", "t_max", "init"}),
    out_shape=_linear_out, build=_linear_build, check=_check_linear,
    weights=lambda spec, in_shape, ctx: in_shape[0] * _linear_out(spec, in_shape, ctx)[0]))


# -------------------------------------------------------------------------- recurrent

def _check_recurrent(spec: Mapping) -> None:
    _check_linear(spec)
    if "recurrent_init" in spec:
        _check_init(spec["recurrent_init"])
    if not isinstance(spec.get("self_connections", True), bool):
        raise ValueError(f"self_connections must be true or false, got "
                         f"{printable(repr(spec['self_connections']))}")


def _recurrent_build(spec: Mapping, in_shape: tuple, ctx: BuildContext) -> torch.nn.Module:
    (n_out,) = _linear_out(spec, in_shape, ctx)
    p = _lif_params(spec, ctx)
    init = spec.get("init", ctx.init)
    rec = spec.get("recurrent_init", (-0.5, 0.5))
    return LIFRecurrent(in_shape[0], n_out, tau_s=p.tau_s, theta=p.theta,
                        delta_theta=p.delta_theta, max_spikes=p.max_spikes, dt=p.dt or None,
                        t_max=p.t_max, reset_at=p.reset_at,
                        init=(float(init[0]), float(init[1])),
                        recurrent_init=(float(rec[0]), float(rec[1])),
                        self_connections=spec.get("self_connections", True))


register_layer_type(LayerType(
    name="recurrent", required=frozenset({"theta", "max_spikes"}),
    optional=frozenset({"features", "delta_theta", "tau_s", "t_max", "init", "recurrent_init",
                        "self_connections"}),
    out_shape=_linear_out, build=_recurrent_build, check=_check_recurrent,
    weights=lambda spec, in_shape, ctx: (in_shape[0] + _linear_out(spec, in_shape, ctx)[0])
    * _linear_out(spec, in_shape, ctx)[0]))


# ------------------------------------------------------------------ conv2d, pool2d, flatten

def _check_maps(in_shape: tuple, kind: str) -> tuple:
    if len(in_shape) != 3:
        raise ValueError(f"{kind} needs maps (channels, height, width), got shape {in_shape}")
    return in_shape


def _conv_synapse(spec: Mapping, in_shape: tuple) -> Conv2d:
    return Conv2d(in_shape=_check_maps(in_shape, "conv2d"), kernel=_pair_of(spec, "kernel"),
                  stride=_pair_of(spec, "stride", 1), padding=_pair_of(spec, "padding", 0))


def _pair_of(spec: Mapping, key: str, default=None):
    v = spec.get(key, default)
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _check_conv(spec: Mapping) -> None:
    ch = spec["channels"]
    if isinstance(ch, bool) or not isinstance(ch, numbers.Integral) or ch < 1:
        raise ValueError(f"channels must be an int >= 1, got {printable(repr(ch))}")
    pair("kernel", _pair_of(spec, "kernel"), 1)
    pair("stride", _pair_of(spec, "stride", 1), 1)
    pair("padding", _pair_of(spec, "padding", 0), 0)
    if "init" in spec:
        _check_init(spec["init"])
    _lif_params(spec, BuildContext(tau_s=1.0, t_max=math.inf, init=(-1.0, 1.0), dt=None,
                                   n_classes=1))


def _conv_out(spec: Mapping, in_shape: tuple, ctx: BuildContext) -> tuple:
    if ctx.is_last:
        raise ValueError("a conv2d layer cannot be the last layer (end with flatten and linear)")
    return (int(spec["channels"]), *_conv_synapse(spec, in_shape).out_hw)


def _conv_build(spec: Mapping, in_shape: tuple, ctx: BuildContext) -> torch.nn.Module:
    syn = _conv_synapse(spec, in_shape)
    p = _lif_params(spec, ctx)
    init = spec.get("init", ctx.init)
    return LIFConv2d(in_shape[0], int(spec["channels"]), syn.kernel, stride=syn.stride,
                     padding=syn.padding, tau_s=p.tau_s, theta=p.theta,
                     delta_theta=p.delta_theta, max_spikes=p.max_spikes, dt=p.dt or None,
                     t_max=p.t_max, reset_at=p.reset_at, init=(float(init[0]), float(init[1])))


register_layer_type(LayerType(
    name="conv2d", required=frozenset({"channels", "kernel", "theta", "max_spikes"}),
    optional=frozenset({"stride", "padding", "delta_theta", "tau_s", "t_max", "init"}),
    out_shape=_conv_out, build=_conv_build, check=_check_conv, maps=True,
    weights=lambda spec, in_shape, ctx: (int(spec["channels"]) * in_shape[0]
                                         * math.prod(_conv_synapse(spec, in_shape).kernel))))


def _pool_kernel(spec: Mapping) -> int:
    """The pooling window (``kernel``, default 2)."""
    k = spec.get("kernel", 2)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"kernel must be an int >= 1, got {printable(repr(k))}")
    return int(k)


def _pool_out(spec: Mapping, in_shape: tuple, ctx: BuildContext) -> tuple:
    c, h, w = _check_maps(in_shape, "pool2d")
    k = _pool_kernel(spec)
    if k > min(h, w):
        raise ValueError(f"kernel {k} is larger than the {h}x{w} maps")
    if ctx.is_last:
        raise ValueError("a pool2d layer cannot be the last layer (end with flatten and linear)")
    return (c, h // k, w // k)


register_layer_type(LayerType(
    name="pool2d", required=frozenset(), optional=frozenset({"kernel"}), out_shape=_pool_out,
    build=lambda spec, in_shape, ctx: SpikePool2d(_pool_kernel(spec)), check=_pool_kernel,
    maps=True))


def _flatten_out(spec: Mapping, in_shape: tuple, ctx: BuildContext) -> tuple:
    if ctx.is_last:
        raise ValueError("a flatten layer cannot be the last layer")
    return (math.prod(in_shape),)


register_layer_type(LayerType(
    name="flatten", required=frozenset(), optional=frozenset(), out_shape=_flatten_out,
    build=lambda spec, in_shape, ctx: Flatten()))


# ----------------------------------------------------------------------------- delay

def _delay_bounds(spec: Mapping) -> tuple[tuple[float, float], float]:
    """A delay spec's ``(init, max_delay)``, checked (``ValueError`` naming the key)."""
    max_delay = spec.get("max_delay", math.inf)
    if isinstance(max_delay, bool) or not isinstance(max_delay, numbers.Real) \
            or math.isnan(max_delay) or max_delay <= 0:
        raise ValueError(f"max_delay must be a number > 0 (seconds), got "
                         f"{printable(repr(max_delay))}")
    init = spec.get("init", (0.0, 0.0))
    _check_init(init)
    if init[0] < 0 or init[1] > max_delay:
        raise ValueError(f"init must lie in [0, max_delay = {float(max_delay):g}] (seconds), "
                         f"got {printable(repr(init))}")
    return (float(init[0]), float(init[1])), float(max_delay)


def _delay_out(spec: Mapping, in_shape: tuple, ctx: BuildContext) -> tuple:
    if ctx.is_last:
        raise ValueError("a delay layer cannot be the last layer (it has no neurons)")
    return in_shape


def _delay_build(spec: Mapping, in_shape: tuple, ctx: BuildContext) -> torch.nn.Module:
    _delay_out(spec, in_shape, ctx)
    init, max_delay = _delay_bounds(spec)
    return SpikeDelay(in_shape[0], init=init, max_delay=max_delay)


register_layer_type(LayerType(
    name="delay", required=frozenset(), optional=frozenset({"init", "max_delay"}),
    out_shape=_delay_out, build=_delay_build, check=_delay_bounds,
    weights=lambda spec, in_shape, ctx: in_shape[0]))


# ----------------------------------------------------------------------------- networks

def network_input_shape(layers: Sequence[Mapping], n_inputs: int) -> tuple:
    """The input shape (neurons per sample) a network takes for images of ``n_inputs``
    pixels: ``(1, side, side)`` maps when its first layer reads maps (``conv2d``,
    ``pool2d``), which needs square images, else flat ``(n_inputs,)``."""
    check_network(layers)
    if not LAYER_TYPES[layers[0]["type"]].maps:
        return (int(n_inputs),)
    side = math.isqrt(int(n_inputs))
    if side * side != n_inputs:
        raise ValueError(f"a network starting with {layers[0]['type']} takes square images, "
                         f"got {n_inputs} pixels")
    return (1, side, side)


def _layer_error(i: int, spec, e: Exception) -> Exception:
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    return type(e)(f"network layer {i} ({printable(kind)}): {e}")


def _big_int(value) -> bool:
    """Whether ``value`` (or an item of it, when it is a list) is an integer beyond
    :data:`INT_MAX` in size."""
    items = value if isinstance(value, (list, tuple)) else (value,)
    return any(isinstance(v, numbers.Integral) and not -INT_MAX <= int(v) <= INT_MAX
               for v in items)


def check_network(layers: Sequence[Mapping]) -> None:
    """Check a network description without building it (types, keys and values; shapes
    are checked by :func:`layer_shapes`).

    Raises:
        ValueError / TypeError: naming the layer index and type, e.g.
            ``network layer 2 (conv3d): unknown layer type 'conv3d'; known: linear``.
    """
    if isinstance(layers, (str, bytes, Mapping)) or not isinstance(layers, Sequence):
        raise TypeError(f"network must be a list of layer specs, got {type(layers).__name__}")
    if not layers:
        raise ValueError("network must have at least one layer")
    for i, spec in enumerate(layers):
        if not isinstance(spec, Mapping):
            raise TypeError(f"network layer {i}: a layer spec must be a dict with a 'type', "
                            f"got {printable(repr(spec))}")
        big = sorted(printable(k) for k, v in spec.items() if _big_int(v))
        if big:
            raise ValueError(f"network layer {i}: {big[0]} must be at most {INT_MAX} in size")
        kind = spec.get("type")
        lt = LAYER_TYPES.get(kind) if isinstance(kind, str) else None
        where = f"network layer {i} ({printable(kind)})"
        if lt is None:
            raise ValueError(f"{where}: unknown layer type {printable(repr(kind))}; known: "
                             f"{', '.join(sorted(LAYER_TYPES))}")
        missing = sorted(lt.required - set(spec))
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        unknown = sorted(printable(k) for k in set(spec) - lt.required - lt.optional - {"type"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(lt.required | lt.optional))}")
        if lt.check is not None:
            try:
                lt.check(spec)
            except (ValueError, TypeError) as e:
                raise _layer_error(i, spec, e) from None


def _contexts(layers, n_classes, tau_s, t_max, init, dt, reset_at="crossing"):
    for i, spec in enumerate(layers):
        yield i, spec, BuildContext(tau_s=tau_s, t_max=t_max, init=tuple(init), dt=dt,
                                    n_classes=n_classes, is_last=i == len(layers) - 1,
                                    reset_at=reset_at)


def layer_shapes(layers: Sequence[Mapping], input_shape: Sequence[int], n_classes: int, *,
                 tau_s: float = 0.13, t_max: float = math.inf,
                 init: Sequence[float] = (-1.0, 1.0), dt: float | None = None) -> list[tuple]:
    """The output shape (neurons per sample) of every layer of a description.

    Args:
        layers: the description (see the module docstring).
        input_shape: input neurons per sample, e.g. ``(784,)``.
        n_classes: number of classes; the last layer must have that many neurons.
        tau_s, t_max, init, dt: run-wide defaults (see :class:`BuildContext`).
    """
    check_network(layers)
    shapes, shape = [], tuple(int(v) for v in input_shape)
    for i, spec, ctx in _contexts(layers, n_classes, tau_s, t_max, init, dt):
        try:
            shape = tuple(LAYER_TYPES[spec["type"]].out_shape(spec, shape, ctx))
        except (ValueError, TypeError) as e:
            raise _layer_error(i, spec, e) from None
        shapes.append(shape)
    return shapes


def network_weights(layers: Sequence[Mapping], input_shape: Sequence[int],
                    n_classes: int) -> int:
    """The number of weights of a network description for inputs of ``input_shape``, from
    the shapes alone (nothing is allocated; layer types without a ``weights`` count hold
    none). Raises like :func:`layer_shapes`."""
    shapes = [tuple(int(v) for v in input_shape)]
    shapes += layer_shapes(layers, input_shape, n_classes)
    total = 0
    for (i, spec, ctx), in_shape in zip(_contexts(layers, n_classes, 1.0, math.inf,
                                                  (-1.0, 1.0), None), shapes):
        count = LAYER_TYPES[spec["type"]].weights
        if count is not None:
            total += int(count(spec, in_shape, ctx))
    return total


def min_weights(layers: Sequence[Mapping], n_classes: int) -> int:
    """A lower bound of the number of weights of a network description whatever its input:
    every ``linear`` layer after another one holds ``features x features`` weights, the
    first reads at least one input (after ``flatten``, at least one per channel); every
    ``conv2d`` layer holds ``channels x input channels x kernel`` weights (one input
    channel for the first). For a check of the settings before the input is known."""
    check_network(layers)
    total, width, channels = 0, 1, 1
    for i, spec in enumerate(layers):
        kind = spec["type"]
        if kind in ("linear", "recurrent"):
            n = int(spec.get("features", n_classes))
            total, width = total + width * n + (n * n if kind == "recurrent" else 0), n
        elif kind == "conv2d":
            c = int(spec["channels"])
            total += c * channels * math.prod(pair("kernel", _pair_of(spec, "kernel"), 1))
            width, channels = 1, c
        elif kind == "flatten":
            width = channels
        elif kind not in ("pool2d", "delay"):  # another type: its output size is unknown
            width, channels = 1, 1
    return total


def check_weights_fit(n_weights: int, device=None, copies: int = 1,
                      element_size: int = 4) -> None:
    """Raise :class:`NetworkTooLarge` when ``copies`` of ``n_weights`` weights of
    ``element_size`` bytes (float32: 4) exceed ``device``'s memory (default: the device
    torch allocates on now; nothing is checked on the ``meta`` device or when the memory is
    unknown)."""
    device = torch.device(device) if device is not None else torch.get_default_device()
    if device.type == "meta":
        return
    have = device_memory(device)
    need = copies * n_weights * element_size
    if have is not None and need > have:
        gib = 2.0 ** 30
        held = "with their gradients and Adam's moments " if copies == 4 else ""
        raise NetworkTooLarge(
            f"the network's {n_weights:,} weights need about {need / gib:.1f} GiB {held}but "
            f"{device} has {have / gib:.1f} GiB in all: lower the layer sizes")


def build_network(layers: Sequence[Mapping], input_shape: Sequence[int], n_classes: int, *,
                  tau_s: float = 0.13, t_max: float = math.inf,
                  init: Sequence[float] = (-1.0, 1.0), dt: float | None = None,
                  reset_at: str = "crossing") -> SpikingSequential:
    """Build a network from its description, weights drawn from the current torch RNG in
    layer order.

    Args:
        layers: the description (see the module docstring).
        input_shape: input neurons per sample, e.g. ``(784,)`` for TTFS-encoded MNIST.
        n_classes: number of classes (the last layer's neurons).
        tau_s: default synaptic time constant in seconds.
        t_max: default simulation horizon in seconds.
        init: default ``(low, high)`` of the uniform weight initialisation.
        dt: time step in seconds for every layer (``None``: exact time).
        reset_at: when every layer applies a spike's reset on the grid (``"crossing"``,
            the seed's scheme, or ``"emitted"``, :class:`~batsnn.params.LIFParams`).

    Returns:
        a :class:`batsnn.nn.SpikingSequential` taking ``(B, *input_shape, S_in)`` spike times.

    Raises:
        ValueError / TypeError: a bad description or shapes that do not fit (naming the layer).
        NetworkTooLarge: the weights cannot fit in the memory of the device torch allocates
            on (:func:`check_weights_fit`), found before anything is allocated.
    """
    check_weights_fit(network_weights(layers, input_shape, n_classes))  # checks the shapes
    modules, shape = [], tuple(int(v) for v in input_shape)
    for i, spec, ctx in _contexts(layers, n_classes, tau_s, t_max, init, dt, reset_at):
        lt = LAYER_TYPES[spec["type"]]
        try:
            modules.append(lt.build(spec, shape, ctx))
            shape = tuple(lt.out_shape(spec, shape, ctx))
        except (ValueError, TypeError) as e:
            raise _layer_error(i, spec, e) from None
    return SpikingSequential(*modules)


def build_model(cfg, n_inputs: int, n_classes: int,
                input_shape: Sequence[int] | None = None) -> SpikingSequential:
    """The network of a run's settings (a :class:`~batsnn.experiments.config.TrainConfig`, or
    anything with ``network``, ``tau_s``, ``t_max``, ``init`` and ``dt``) for inputs of
    ``input_shape`` (default: images of ``n_inputs`` pixels, taken flat or as maps,
    :func:`network_input_shape`); weights drawn from the current torch RNG. The layers
    reset as the run's ``dt_mode`` says
    (:attr:`~batsnn.experiments.timestep.DtMode.reset_at`)."""
    reset_at = dt_mode(getattr(cfg, "dt_mode", "fixed")).reset_at
    if input_shape is None:
        input_shape = network_input_shape(cfg.network, n_inputs)
    return build_network(cfg.network, tuple(input_shape), n_classes,
                         tau_s=cfg.tau_s, t_max=cfg.t_max, init=cfg.init, dt=cfg.dt,
                         reset_at=reset_at)


def check_fits(cfg, n_inputs: int, n_classes: int, device, batch_size: int, *,
               input_shape: Sequence[int] | None = None, input_slots: int = 1) -> None:
    """Raise ``MemoryError`` (:class:`NetworkTooLarge`) naming the sizes, and the index and
    type of the layer in ``cfg.network``, when the network of a run's settings cannot fit
    in ``device``'s memory, before anything is allocated.

    Estimated from the shapes alone: the weights (float32) with their gradients and Adam's
    two moments (4 copies, :func:`check_weights_fit`, counted before anything is built), and
    every LIF layer's spike buffers for ``batch_size`` samples
    (:func:`batsnn.functional.check_memory`, which raises the same ``MemoryError`` that the
    layer would raise in its first call). The input is ``input_shape`` neurons (default:
    images of ``n_inputs`` pixels, :func:`network_input_shape`) of ``input_slots`` spike
    times each (TTFS images: 1; event streams: the largest count of one channel).
    """
    device = torch.device(device)
    if input_shape is None:
        input_shape = network_input_shape(cfg.network, n_inputs)
    check_weights_fit(network_weights(cfg.network, input_shape, n_classes), device, copies=4)
    with torch.device("meta"):
        model = build_model(cfg, n_inputs, n_classes, input_shape)
    slots = int(input_slots)
    for i, layer in enumerate(model):
        if isinstance(layer, (LIFLinear, LIFRecurrent)):
            try:
                _check_buffers(layer, slots, device, batch_size)
            except MemoryError as e:
                kind = printable(cfg.network[i].get("type"), 40)
                raise NetworkTooLarge(f"network layer {i} ({kind}): {e}") from None
            slots = layer.max_spikes


def _check_buffers(layer: LIFLinear | LIFRecurrent, slots: int, device: torch.device,
                   batch_size: int) -> None:
    """``MemoryError`` naming the sizes when the spike buffers of ``layer`` (``slots``
    input spike times per neuron) for ``batch_size`` samples cannot fit on ``device``."""
    for what, shape in (("input", (batch_size, layer.in_features, slots)),
                        ("output", (batch_size, layer.out_features, layer.max_spikes))):
        if math.prod(shape) > INT_MAX:  # more elements than a tensor can have
            raise MemoryError(
                f"a layer's {what} spike buffer of {' x '.join(map(str, shape))} "
                "(batch x neurons x spikes) has more elements than any memory holds: "
                "lower the batch size, max_spikes or the layer width")
    x = torch.empty((1, 1, 1), device=device).expand(batch_size, layer.in_features, slots)
    check_memory(x, layer.out_features, layer.params)


def dense_network(hidden: Sequence[int], theta: Sequence[float],
                  max_spikes: Sequence[int]) -> list[dict]:
    """The description of a stack of ``linear`` layers: ``hidden`` sizes, then the output
    layer (one neuron per class); ``theta`` and ``max_spikes`` give one value per layer
    (``len(hidden) + 1``)."""
    n = len(hidden) + 1
    for name, values in (("theta", theta), ("max_spikes", max_spikes)):
        if len(values) != n:
            raise ValueError(f"{name} needs one value per layer ({n}), got {list(values)}")
    if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden):
        raise ValueError(f"hidden layer sizes must be ints >= 1, got {list(hidden)}")
    layers = [{"type": "linear", "features": int(h), "theta": th, "max_spikes": k}
              for h, th, k in zip(hidden, theta, max_spikes)]
    layers.append({"type": "linear", "theta": theta[-1], "max_spikes": max_spikes[-1]})
    return layers


def network_summary(layers: Sequence[Mapping]) -> dict | None:
    """``{"hidden", "theta", "max_spikes"}`` of a description made only of ``linear`` layers
    whose last layer leaves ``features`` out (the inverse of :func:`dense_network`), else
    ``None``."""
    if not layers or any(s.get("type") != "linear" for s in layers):
        return None
    if any("features" not in s for s in layers[:-1]) or "features" in layers[-1]:
        return None
    return {"hidden": [s["features"] for s in layers[:-1]],
            "theta": [s["theta"] for s in layers],
            "max_spikes": [s["max_spikes"] for s in layers]}
