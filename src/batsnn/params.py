"""The neuron's parameters as one validated value (model.md section 1)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

__all__ = ["LIFParams", "RESET_AT"]

#: When a spike's reset is applied on the grid: at the continuous crossing (the seed's
#: scheme) or at the emitted grid time (:attr:`LIFParams.reset_at`).
RESET_AT = ("crossing", "emitted")


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
        reset_at: on the grid (``dt > 0``), when a spike's reset is applied (model.md
            section 6): ``"crossing"`` (the default, the seed's scheme), at the continuous
            threshold crossing ``t*`` although the spike is emitted at ``grid(t*)``;
            ``"emitted"``, at the emitted grid time, so that the membrane potential the
            layer computes is that of a neuron whose spikes and resets both happen on the
            grid (the consistent discrete model; its gradient couples a neuron's spikes
            through the emitted times). Identical in exact time.
    """

    tau_s: float
    theta: float
    max_spikes: int
    delta_theta: float | None = None
    t_max: float = math.inf
    dt: float | None = 0.0
    reset_at: str = "crossing"

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
        if not isinstance(self.reset_at, str) or self.reset_at not in RESET_AT:
            raise ValueError(f"reset_at must be one of {', '.join(map(repr, RESET_AT))}, got "
                             f"{self.reset_at!r}")

    @property
    def tau(self) -> float:
        """Membrane time constant ``2 * tau_s`` in seconds (the closed form needs it)."""
        return 2.0 * self.tau_s

    @property
    def discrete(self) -> bool:
        """Whether the layer runs on a time grid (``dt > 0``)."""
        return self.dt > 0.0

    @property
    def reset_emitted(self) -> bool:
        """Whether resets happen at the emitted grid times (``reset_at == "emitted"`` on a
        grid); in exact time the two are the same."""
        return self.discrete and self.reset_at == "emitted"

    def replace(self, **changes) -> LIFParams:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-safe except for ``t_max = inf``)."""
        return dataclasses.asdict(self)
