"""The neuron's parameters as one validated value (model.md section 1)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

__all__ = ["LIFParams"]


def _real(name: str, value, *, allow_inf: bool = False, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class LIFParams:
    """Parameters of a layer of exact LIF neurons (model.md sections 1 and 6).

    Validated once, on construction; every field is then a plain ``float``/``int``. Numpy
    scalars are accepted wherever Python numbers are.

    Attributes:
        tau_s: synaptic time constant in seconds (> 0). The membrane's is :attr:`tau`.
        theta: firing threshold (> 0).
        max_spikes: ``K``, the most spikes a neuron emits (int >= 1).
        delta_theta: reset amount subtracted from the potential at each spike (>= 0);
            ``None`` means ``theta``.
        t_max: simulation horizon in seconds (> 0, may be ``inf``); no spike after it.
        dt: time step in seconds (>= 0); ``None`` or ``0`` means exact continuous time.
    """

    tau_s: float
    theta: float
    max_spikes: int
    delta_theta: float | None = None
    t_max: float = math.inf
    dt: float | None = 0.0

    def __post_init__(self):
        put = object.__setattr__.__get__(self)
        put("tau_s", _real("tau_s", self.tau_s))
        put("theta", _real("theta", self.theta))
        dth = self.theta if self.delta_theta is None else _real(
            "delta_theta", self.delta_theta, allow_zero=True)
        put("delta_theta", dth)
        k = self.max_spikes
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"max_spikes must be an int, got {k!r}")
        if k < 1:
            raise ValueError(f"max_spikes must be >= 1, got {k!r}")
        put("max_spikes", int(k))
        put("t_max", _real("t_max", self.t_max, allow_inf=True))
        put("dt", 0.0 if self.dt is None else _real("dt", self.dt, allow_zero=True))

    @property
    def tau(self) -> float:
        """Membrane time constant ``2 * tau_s`` in seconds (the closed form needs it)."""
        return 2.0 * self.tau_s

    @property
    def discrete(self) -> bool:
        """Whether the layer runs on a time grid (``dt > 0``)."""
        return self.dt > 0.0

    def replace(self, **changes) -> LIFParams:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-safe except for ``t_max = inf``)."""
        return dataclasses.asdict(self)
