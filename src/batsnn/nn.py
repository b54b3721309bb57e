"""``nn.Module`` wrappers: thin holders of weights and frozen hyper-parameters."""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from batsnn.functional import (device_memory, lif_conv2d, lif_linear, lif_recurrent,
                               spike_delay, spike_flatten, spike_pool2d)
from batsnn.ops.lif.synapse import PAIR_MAX, pair
from batsnn.params import LIFParams
from batsnn.spikes import SpikeTrains

__all__ = ["Flatten", "LIFConv2d", "LIFLinear", "LIFRecurrent", "SpikeDelay", "SpikePool2d",
           "SpikingSequential"]


def _size(name: str, value) -> int:
    """A layer size: an int in ``[1, 2**31 - 1]`` (numpy ints included, bools not; the
    kernels index neurons with 32-bit integers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if value > PAIR_MAX:
        raise ValueError(f"{name} must be <= {PAIR_MAX} (2**31 - 1), got {value!r}")
    return int(value)


def _empty_weight(shape: tuple, device, dtype) -> torch.Tensor:
    """An uninitialised weight of ``shape``; ``MemoryError`` naming the sizes when it is
    larger than the device's memory."""
    device = _device(device)
    if device is not None and device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} is not available here (no CUDA device)")
    need = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    have = device_memory(device if device is not None else torch.get_default_device())
    if have is not None and need > have:
        raise MemoryError(f"a weight of shape {shape} ({dtype}) needs {need / 2**30:.1f} GiB "
                          f"but {device or 'the default device'} has {have / 2**30:.1f} GiB")
    return torch.empty(shape, device=device, dtype=dtype)


def _init_range(init, dtype, name: str = "init") -> tuple[float, float]:
    """``init`` as ``(low, high)``: two finite real numbers with ``low <= high`` whose
    span ``dtype`` holds (errors name it ``name``)."""
    try:
        low, high = init
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (low, high) of numbers, got {init!r}") from None
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be a pair (low, high) of numbers, got {init!r}")
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} must hold finite numbers, got {init!r}")
    if low > high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {init!r}")
    if high - low > torch.finfo(dtype).max:
        raise ValueError(f"{name} {init!r} spans more than {dtype} holds")
    return low, high


def _weight_dtype(dtype):
    """The weight dtype of a layer: ``None`` (torch's default float dtype), float32 or
    float64 (the dtypes of batsnn's kernels)."""
    if dtype is None:
        dtype = torch.get_default_dtype()
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _device(device):
    """``device`` as a ``torch.device`` (``None`` stays ``None``: torch's default)."""
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must name a torch device (e.g. 'cpu', 'cuda:0'), got "
                         f"{device!r}") from None


def _delay_range(name: str, init, max_delay, dtype) -> tuple[tuple[float, float], float]:
    """``(init, max_delay)`` of learnable delays: ``init`` a pair ``(low, high)`` with
    ``0 <= low <= high <= max_delay`` (named ``name`` in errors), ``max_delay`` a number
    ``> 0`` (seconds; ``inf``: none)."""
    if isinstance(max_delay, bool) or not isinstance(max_delay, numbers.Real) \
            or math.isnan(max_delay) or max_delay <= 0:
        raise ValueError(f"max_delay must be a number > 0 (seconds; inf: none), got "
                         f"{max_delay!r}")
    max_delay = float(max_delay)
    low, high = _init_range(init, dtype, name)
    if low < 0 or high > max_delay:
        raise ValueError(f"{name} must lie in [0, max_delay = {max_delay:g}], got {init!r}")
    return (low, high), max_delay


class _NeuronLayer(nn.Module):
    """What the LIF layers share: ``weight`` drawn uniformly from ``init``, and the neuron's
    parameters held as one frozen :class:`~batsnn.params.LIFParams` (``.params``) and read
    back as attributes of the same names."""

    def reset_parameters(self) -> None:
        """Draw the weights uniformly from ``init``."""
        with torch.no_grad():
            self.weight.uniform_(*self.init)

    tau_s = property(lambda self: self.params.tau_s)
    theta = property(lambda self: self.params.theta)
    delta_theta = property(lambda self: self.params.delta_theta)
    max_spikes = property(lambda self: self.params.max_spikes)
    t_max = property(lambda self: self.params.t_max)
    dt = property(lambda self: self.params.dt or None)
    reset_at = property(lambda self: self.params.reset_at)


class LIFLinear(_NeuronLayer):
    """Dense layer of exact multi-spike LIF neurons (BATS); see :func:`batsnn.functional.lif_linear`.

    Args:
        in_features: number of presynaptic neurons ``N_in``.
        out_features: number of neurons ``N_out``.
        tau_s: synaptic time constant in seconds.
        theta: threshold.
        delta_theta: reset amount (defaults to ``theta``).
        max_spikes: most spikes per neuron.
        dt: time step in seconds for the discretized model, in ``[1e-9, 4.5e6] * tau_s``;
            ``None`` for exact time.
        t_max: simulation horizon in seconds.
        reset_at: on the grid, ``"crossing"`` (the seed's scheme) or ``"emitted"`` (the
            consistent discrete model); see :class:`~batsnn.params.LIFParams`.
            These seven are held as one frozen :class:`~batsnn.params.LIFParams`,
            ``.params``, and read back as attributes of the same names.
        init: ``(low, high)`` of the uniform weight initialisation (BATS: ``(-1, 1)``),
            finite, ``low <= high``.
        delays: with ``True``, a learnable delay per synapse, the parameter ``delay``
            ``(out_features, in_features)`` in seconds (CPU only; see the ``delay``
            argument of :func:`batsnn.functional.lif_linear`); the delays used are
            ``delay.clamp(0, max_delay)``, so a delay that training pushes outside acts as
            the bound (and gets no gradient while it stays outside).
        delay_init: ``(low, high)``: initial delays drawn uniformly from it,
            ``0 <= low <= high <= max_delay`` (default ``(0, 0)``: the plain layer).
        max_delay: the largest delay in seconds (default: none).
        device: where the weight lives.
        dtype: the weight's dtype, ``torch.float32`` or ``torch.float64`` (``None``: torch's
            default).

    Shape:
        forward takes ``(B, N_in, S_in)`` spike times (or a :class:`SpikeTrains`) and returns
        :class:`SpikeTrains` with times ``(B, N_out, max_spikes)`` and counts ``(B, N_out)``.
    """

    def __init__(self, in_features: int, out_features: int, *, tau_s: float, theta: float,
                 delta_theta: float | None = None, max_spikes: int, dt: float | None = None,
                 t_max: float = math.inf, reset_at: str = "crossing",
                 init: tuple[float, float] = (-1.0, 1.0), delays: bool = False,
                 delay_init: tuple[float, float] = (0.0, 0.0), max_delay: float = math.inf,
                 device=None, dtype=None):
        super().__init__()
        in_features = _size("in_features", in_features)
        out_features = _size("out_features", out_features)
        self.params = LIFParams(tau_s=tau_s, theta=theta, delta_theta=delta_theta,
                                max_spikes=max_spikes, t_max=t_max, dt=dt, reset_at=reset_at)
        self.in_features = in_features
        self.out_features = out_features
        dtype = _weight_dtype(dtype)
        self.init = _init_range(init, dtype)
        if not isinstance(delays, bool):
            raise TypeError(f"delays must be True or False, got {delays!r}")
        self.delays = delays
        self.delay_init, self.max_delay = _delay_range("delay_init", delay_init, max_delay,
                                                       dtype)
        self.weight = nn.Parameter(_empty_weight((out_features, in_features), device, dtype))
        if delays:
            self.delay = nn.Parameter(_empty_weight((out_features, in_features), device, dtype))
        else:
            self.register_parameter("delay", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the weights uniformly from ``init`` and the delays (if any) from
        ``delay_init``."""
        super().reset_parameters()
        if self.delay is not None:
            with torch.no_grad():
                self.delay.uniform_(*self.delay_init)

    def forward(self, input_times) -> SpikeTrains:
        if isinstance(input_times, SpikeTrains):
            input_times = input_times.times
        if self.delay is not None:
            return lif_linear(input_times, self.weight, params=self.params,
                              delay=self.delay.clamp(0.0, self.max_delay))
        return lif_linear(input_times, self.weight, params=self.params)


    def extra_repr(self) -> str:
        p = self.params
        return (f"{self.in_features}, {self.out_features}, tau_s={p.tau_s}, "
                f"theta={p.theta}, delta_theta={p.delta_theta}, "
                f"max_spikes={p.max_spikes}, dt={self.dt}, t_max={p.t_max}"
                + (f", reset_at={p.reset_at!r}" if p.reset_at != "crossing" else "")
                + (f", delays=True, delay_init={self.delay_init}, max_delay={self.max_delay}"
                   if self.delays else ""))


class LIFRecurrent(_NeuronLayer):
    """Recurrent layer of exact multi-spike LIF neurons; see
    :func:`batsnn.functional.lif_recurrent`.

    Args:
        in_features: number of presynaptic neurons ``N_in``.
        out_features: number of neurons ``N`` of the layer.
        tau_s, theta, delta_theta, max_spikes, dt, t_max, reset_at: the neuron's
            parameters, held as one frozen :class:`~batsnn.params.LIFParams` (``.params``)
            as in :class:`LIFLinear`.
        init: ``(low, high)`` of the uniform input-weight initialisation (default
            ``(-1, 1)``, BATS'), finite, ``low <= high``.
        recurrent_init: ``(low, high)`` of the uniform initialisation of
            ``recurrent_weight`` ``(N, N)``; default ``(-0.5, 0.5)``, half the default
            input range.
        self_connections: ``False`` keeps the diagonal of ``recurrent_weight`` at zero (it
            is drawn as zero and masked in every forward, so it gets no gradient either).
        device, dtype: as in :class:`LIFLinear`.

    Shape:
        forward takes ``(B, N_in, S_in)`` spike times (or a :class:`SpikeTrains`) and returns
        :class:`SpikeTrains` with times ``(B, N, max_spikes)`` and counts ``(B, N)``.
    """

    #: its kernels run on the host for CUDA tensors too (copied there and back), so a CUDA
    #: graph cannot hold it: ``batsnn train`` steps a network with it eagerly
    host_kernels = True

    def __init__(self, in_features: int, out_features: int, *, tau_s: float, theta: float,
                 delta_theta: float | None = None, max_spikes: int, dt: float | None = None,
                 t_max: float = math.inf, reset_at: str = "crossing",
                 init: tuple[float, float] = (-1.0, 1.0),
                 recurrent_init: tuple[float, float] = (-0.5, 0.5),
                 self_connections: bool = True, device=None, dtype=None):
        super().__init__()
        in_features = _size("in_features", in_features)
        out_features = _size("out_features", out_features)
        if not isinstance(self_connections, bool):
            raise TypeError(f"self_connections must be True or False, got "
                            f"{self_connections!r}")
        self.params = LIFParams(tau_s=tau_s, theta=theta, delta_theta=delta_theta,
                                max_spikes=max_spikes, t_max=t_max, dt=dt, reset_at=reset_at)
        self.in_features = in_features
        self.out_features = out_features
        self.self_connections = self_connections
        dtype = _weight_dtype(dtype)
        self.init = _init_range(init, dtype)
        self.recurrent_init = _init_range(recurrent_init, dtype)
        self.weight = nn.Parameter(_empty_weight((out_features, in_features), device, dtype))
        self.recurrent_weight = nn.Parameter(
            _empty_weight((out_features, out_features), device, dtype))
        mask = None
        if not self_connections:
            mask = 1.0 - torch.eye(out_features, device=self.weight.device, dtype=dtype)
        self.register_buffer("mask", mask)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw ``weight`` uniformly from ``init`` and ``recurrent_weight`` from
        ``recurrent_init`` (its diagonal zero without self connections)."""
        super().reset_parameters()
        with torch.no_grad():
            self.recurrent_weight.uniform_(*self.recurrent_init)
            if self.mask is not None:
                self.recurrent_weight.mul_(self.mask)

    def forward(self, input_times) -> SpikeTrains:
        if isinstance(input_times, SpikeTrains):
            input_times = input_times.times
        rw = self.recurrent_weight if self.mask is None else self.recurrent_weight * self.mask
        return lif_recurrent(input_times, self.weight, rw, params=self.params)

    def extra_repr(self) -> str:
        p = self.params
        return (f"{self.in_features}, {self.out_features}, tau_s={p.tau_s}, "
                f"theta={p.theta}, delta_theta={p.delta_theta}, "
                f"max_spikes={p.max_spikes}, dt={self.dt}, t_max={p.t_max}, "
                + (f"reset_at={p.reset_at!r}, " if p.reset_at != "crossing" else "")
                + f"self_connections={self.self_connections}")

def _trains(x) -> SpikeTrains:
    """``x`` as :class:`SpikeTrains`: itself, or spike times with their counts (the finite
    entries per neuron)."""
    if isinstance(x, SpikeTrains):
        return x
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected spike times (a torch.Tensor) or SpikeTrains, got "
                        f"{type(x).__name__}")
    return SpikeTrains(x, torch.isfinite(x).sum(-1))


class LIFConv2d(_NeuronLayer):
    """Convolutional layer of exact multi-spike LIF neurons (BATS), no bias; see
    :func:`batsnn.functional.lif_conv2d`.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: ``k`` or ``(kH, kW)``.
        stride: ``s`` or ``(sy, sx)`` (default 1).
        padding: ``p`` or ``(py, px)`` (default 0: "valid").
        tau_s, theta, delta_theta, max_spikes, dt, t_max, reset_at: the neuron's parameters,
            held as one frozen :class:`~batsnn.params.LIFParams` (``.params``) as in
            :class:`LIFLinear`.
        init: ``(low, high)`` of the uniform weight initialisation (BATS: ``(-1, 1)``),
            finite, ``low <= high``.
        device, dtype: as in :class:`LIFLinear`.

    Shape:
        forward takes ``(B, C_in, H, W, S_in)`` spike times (or a :class:`SpikeTrains`) and
        returns :class:`SpikeTrains` with times ``(B, C_out, H_out, W_out, max_spikes)`` and
        counts ``(B, C_out, H_out, W_out)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, *, stride=1,
                 padding=0, tau_s: float, theta: float, delta_theta: float | None = None,
                 max_spikes: int, dt: float | None = None, t_max: float = math.inf,
                 reset_at: str = "crossing", init: tuple[float, float] = (-1.0, 1.0),
                 device=None, dtype=None):
        super().__init__()
        in_channels = _size("in_channels", in_channels)
        out_channels = _size("out_channels", out_channels)
        self.params = LIFParams(tau_s=tau_s, theta=theta, delta_theta=delta_theta,
                                max_spikes=max_spikes, t_max=t_max, dt=dt, reset_at=reset_at)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair("kernel_size", kernel_size, 1)
        self.stride = pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        dtype = _weight_dtype(dtype)
        self.init = _init_range(init, dtype)
        self.weight = nn.Parameter(_empty_weight((out_channels, in_channels, *self.kernel_size),
                                                 device, dtype))
        self.reset_parameters()

    def forward(self, input_times) -> SpikeTrains:
        if isinstance(input_times, SpikeTrains):
            input_times = input_times.times
        return lif_conv2d(input_times, self.weight, stride=self.stride, padding=self.padding,
                          params=self.params)


    def extra_repr(self) -> str:
        p = self.params
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, tau_s={p.tau_s}, "
                f"theta={p.theta}, delta_theta={p.delta_theta}, max_spikes={p.max_spikes}, "
                f"dt={self.dt}, t_max={p.t_max}"
                + (f", reset_at={p.reset_at!r}" if p.reset_at != "crossing" else ""))


class SpikePool2d(nn.Module):
    """Spike pooling over ``k x k`` windows: every spike of a window kept, time-sorted; see
    :func:`batsnn.functional.spike_pool2d` (any device, no parameters).

    Shape:
        forward takes :class:`SpikeTrains` (or spike times) ``(B, C, H, W, S)`` and returns
        :class:`SpikeTrains` with times ``(B, C, H // k, W // k, k * k * S)``.
    """

    def __init__(self, kernel_size: int = 2):
        super().__init__()
        if (isinstance(kernel_size, bool) or not isinstance(kernel_size, numbers.Integral)
                or kernel_size < 1):
            raise ValueError(f"kernel_size must be an int >= 1, got {kernel_size!r}")
        self.kernel_size = int(kernel_size)

    def forward(self, x) -> SpikeTrains:
        x = _trains(x)
        return spike_pool2d(x.times, x.counts, self.kernel_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class SpikeDelay(nn.Module):
    """A learnable axonal delay per channel (seconds), added to every spike of the channel;
    see :func:`batsnn.functional.spike_delay` (exact gradients to the delays and to the
    input times).

    The delays used are ``delay.clamp(0, max_delay)``: a delay that training pushes below 0
    or above ``max_delay`` acts as the bound (and gets no gradient while it stays outside).

    Args:
        channels: ``C``, the channels on axis 1 of the input (neurons, or maps).
        init: ``(low, high)``: initial delays drawn uniformly from it (default ``(0, 0)``:
            the layer starts as the identity), ``0 <= low <= high``.
        max_delay: the largest delay in seconds (default: none).
        dtype, device: of the delays (float32 or float64; the input's).

    Shape:
        forward takes :class:`SpikeTrains` (or spike times) ``(B, C, ..., S)`` and returns
        :class:`SpikeTrains` of the same shapes.
    """

    #: no spikes of its own: :meth:`SpikingSequential.forward_all` leaves its output out
    reshapes_only = True

    def __init__(self, channels: int, *, init=(0.0, 0.0), max_delay: float = math.inf,
                 dtype=None, device=None):
        super().__init__()
        self.channels = _size("channels", channels)
        dtype = _weight_dtype(dtype)
        self.init, self.max_delay = _delay_range("init", init, max_delay, dtype)
        self.delay = nn.Parameter(_empty_weight((self.channels,), device, dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the delays uniformly from ``init``."""
        with torch.no_grad():
            self.delay.uniform_(*self.init)

    def forward(self, x) -> SpikeTrains:
        x = _trains(x)
        if x.times.dim() < 3 or x.times.shape[1] != self.channels:
            raise ValueError(f"SpikeDelay({self.channels}) takes spike trains (B, "
                             f"{self.channels}, ..., S), got shape {tuple(x.times.shape)}")
        return spike_delay(x.times, x.counts, self.delay.clamp(0.0, self.max_delay))

    def extra_repr(self) -> str:
        return f"{self.channels}, init={self.init}, max_delay={self.max_delay}"


class Flatten(nn.Module):
    """Spike trains ``(B, *neurons, S)`` as ``(B, N, S)`` (counts likewise), C order: between
    convolutions and dense layers. It only reshapes, so :meth:`SpikingSequential.forward_all`
    leaves its output out."""

    #: a layer that only reshapes its input's spike trains (no spikes of its own)
    reshapes_only = True

    def forward(self, x) -> SpikeTrains:
        x = _trains(x)
        return spike_flatten(x.times, x.counts)


class SpikingSequential(nn.Sequential):
    """``nn.Sequential`` that also returns every layer's spike trains.

    ``forward`` returns the last layer's :class:`SpikeTrains`; ``forward_all`` returns the list
    of the layers' outputs (for metrics such as spikes per layer), leaving out layers that
    only reshape (``reshapes_only``, e.g. :class:`Flatten`), whose trains are their input's.
    """

    def forward_all(self, input_times) -> list[SpikeTrains]:
        """Run the network and return the spike trains of every layer that computes
        (a :class:`Flatten` and other reshaping layers are skipped), in order; the last is
        the network's output.

        Args:
            input_times: the input spike times ``(B, ..., S)`` or a :class:`SpikeTrains`.
        """
        outs = []
        x = input_times
        last = len(self) - 1
        for i, layer in enumerate(self):
            x = layer(x)
            if not getattr(layer, "reshapes_only", False) or i == last:
                outs.append(x)
        return outs
