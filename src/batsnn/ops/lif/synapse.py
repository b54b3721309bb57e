"""Synapse choices: how an (output neuron, input event) pair finds its weight.

The neuron core (integration, exact root search, reset, BATS error recursion) is shared by
every layer type; a synapse says which events a neuron reads, where its weight comes from,
and where the gradients of that weight and of that input time go. Backends compile one
kernel variant per synapse type (numba specialisation / Triton ``constexpr``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Dense:
    """Every output neuron reads every input event; weight ``(N_out, N_in)``."""

    kind = "dense"


DENSE = Dense()


#: The largest size, stride or padding of a convolution (32-bit indices in the kernels).
PAIR_MAX = 2**31 - 1


def pair(name: str, value, minimum: int) -> tuple[int, int]:
    """``value`` (an int or a pair of ints, numpy ints included) as a pair of ints in
    ``[minimum, PAIR_MAX]``; raises TypeError/ValueError naming ``name`` and ``value``."""
    items = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        a, b = items
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        if v > PAIR_MAX:
            raise ValueError(f"{name} must be <= {PAIR_MAX} (2**31 - 1), got {value!r}")
    return int(a), int(b)


@dataclass(frozen=True)
class Conv2d:
    """A 2-D convolution without bias: output neuron ``(co, oy, ox)`` reads the input
    neurons ``(ci, oy * sy - py + ky, ox * sx - px + kx)`` (``0 <= ky < kH``, ``0 <= kx < kW``,
    inside the map) with weight ``weight[co, ci, ky, kx]``; weight ``(C_out, C_in, kH, kW)``.

    Neurons are numbered in C order: input ``(ci, iy, ix)`` is ``(ci * H + iy) * W + ix`` and
    output ``(co, oy, ox)`` is ``(co * H_out + oy) * W_out + ox``, as in the dense layer of the
    unrolled weight matrix (:func:`batsnn.ops.lif.naive.unroll_conv_weight`), whose semantics
    the kernels reproduce.

    Attributes:
        in_shape: ``(C_in, H, W)`` of the input maps.
        kernel: ``(kH, kW)``.
        stride: ``(sy, sx)``.
        padding: ``(py, px)`` zero padding (padded positions hold no spikes).
    """

    in_shape: tuple
    kernel: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    kind = "conv2d"

    def __post_init__(self):
        put = object.__setattr__.__get__(self)
        shape = self.in_shape
        if (not isinstance(shape, (tuple, list)) or len(shape) != 3
                or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                       for v in shape)):
            raise ValueError(f"in_shape must be (C_in, H, W) of positive ints, got {shape!r}")
        put("in_shape", tuple(int(v) for v in shape))
        put("kernel", pair("kernel_size", self.kernel, 1))
        put("stride", pair("stride", self.stride, 1))
        put("padding", pair("padding", self.padding, 0))
        h_out, w_out = self.out_hw
        if h_out < 1 or w_out < 1:
            _, h, w = self.in_shape
            raise ValueError(f"kernel {self.kernel} with padding {self.padding} does not fit "
                             f"the {h}x{w} input maps")

    @property
    def out_hw(self) -> tuple[int, int]:
        """``(H_out, W_out)``: ``(H + 2 py - kH) // sy + 1`` and likewise for the width."""
        _, h, w = self.in_shape
        (kh, kw), (sy, sx), (py, px) = self.kernel, self.stride, self.padding
        return (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1

    def check_input(self, input_times) -> None:
        """Raise ``ValueError`` unless ``input_times (B, N_in, S)`` holds the ``C_in * H * W``
        neurons per sample that this convolution reads."""
        if input_times.shape[1] != self.n_in:
            raise ValueError(f"input_times has {input_times.shape[1]} neurons per sample but "
                             f"the convolution reads {self.in_shape}")

    @property
    def n_in(self) -> int:
        """Input neurons per sample, ``C_in * H * W``."""
        c, h, w = self.in_shape
        return c * h * w

    @property
    def positions(self) -> int:
        """Output positions per channel, ``H_out * W_out``."""
        h_out, w_out = self.out_hw
        return h_out * w_out


@dataclass(frozen=True)
class DelayedDense:
    """A dense layer with one delay per synapse, as rows: the op's input is ``(B * N_out,
    N_in, S)``, row ``b * N_out + n`` holding sample ``b``'s spike times as output neuron
    ``n`` receives them (each input ``i`` shifted by its delay ``d[n, i]``); the output is
    ``(B * N_out, 1, K)``, one neuron per row. Row ``b * N_out + n`` reads its own sorted
    stream with weight ``weight[n, i]``; weight ``(N_out, N_in)``.

    Attributes:
        n_out: ``N_out``, the output neurons (rows per sample).
        n_in: ``N_in``, the input neurons of a row.
    """

    n_out: int
    n_in: int

    kind = "delayed_dense"

    def check_input(self, input_times) -> None:
        """Raise ``ValueError`` unless ``input_times`` holds rows of ``n_in`` neurons, a whole
        number of samples of ``n_out`` rows."""
        rows, n_in = input_times.shape[0], input_times.shape[1]
        if n_in != self.n_in or rows % self.n_out:
            raise ValueError(f"delayed rows of shape {tuple(input_times.shape)} do not fit "
                             f"{self.n_out} output and {self.n_in} input neurons")
