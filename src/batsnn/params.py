"""The neuron's parameters as one validated value (model.md section 1)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

__all__ = ["DT_RANGE", "DT_RATIO_RANGE", "GRID_INDEX_MAX", "LIFParams", "MAX_SPIKES_MAX",
           "RESET_AT", "TAU_S_RANGE", "THETA_RANGE", "TIME_RATIO_MAX", "WEIGHT_RATIO_MAX", "real_number"]

#: When a spike's reset is applied on the grid: at the continuous crossing (the seed's
#: scheme) or at the emitted grid time (:attr:`LIFParams.reset_at`).
RESET_AT = ("crossing", "emitted")

#: The ranges batsnn supports (docs/model.md section 7, where they are derived): beyond
#: them the closed form's exponentials overflow or its roots lose all precision, and spikes
#: would be lost without a word, so they are refused.
#: ``tau_s`` in seconds, both ends included.
TAU_S_RANGE = (1e-9, 1e6)
#: ``theta``, and ``delta_theta`` unless it is 0, both ends included.
THETA_RANGE = (1e-12, 1e12)
#: The largest ``max_spikes`` (the spike buffers are indexed with 32-bit integers).
MAX_SPIKES_MAX = 2**31 - 1
#: The largest ``|weight| * tau_s / theta``: one input spike may lift the potential by at
#: most this many thresholds (times 1/2), so that the time it takes to reach the threshold,
#: ``theta / |weight|``, stays resolvable (:meth:`LIFParams.max_weight`).
WEIGHT_RATIO_MAX = 1e9
#: The largest spike time, in units of ``tau_s``, that a layer integrates (``t <= 4.5e6
#: tau_s``): beyond it the spacing of representable float64 times exceeds the interval
#: between the spikes of a burst (:attr:`LIFParams.max_time`).
TIME_RATIO_MAX = 4.5e6
#: Grid cell indices ``t / dt`` are exact integers in float64 below ``2**53``.
GRID_INDEX_MAX = 2.0**53
#: ``dt`` in units of ``tau_s`` (both ends included; 0 means exact time): from below, the
#: index of every supported time, ``TIME_RATIO_MAX / 1e-9 = 4.5e15``, stays below
#: :data:`GRID_INDEX_MAX`; from above, a step no longer than the supported time range.
DT_RATIO_RANGE = (1e-9, TIME_RATIO_MAX)
#: ``dt`` in seconds where no ``tau_s`` is known (:func:`batsnn.discretize`,
#: :func:`batsnn.ttfs_encode`): the steps :data:`DT_RATIO_RANGE` allows for some ``tau_s``
#: in :data:`TAU_S_RANGE`, ``[1e-18 s, 4.5e12 s]``.
DT_RANGE = (DT_RATIO_RANGE[0] * TAU_S_RANGE[0], DT_RATIO_RANGE[1] * TAU_S_RANGE[1])


def real_number(name: str, value, *, allow_inf: bool = False, allow_zero: bool = False,
          supported: tuple[float, float] | None = None) -> float:
    """``value`` (a Python or numpy real number, not a bool) as a float, checked: not NaN,
    finite unless ``allow_inf``, > 0 (>= 0 with ``allow_zero``) and, unless it is 0, inside
    ``supported``; TypeError/ValueError naming ``name`` and the value otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if supported is not None and value != 0 and not supported[0] <= value <= supported[1]:
        raise ValueError(f"{name}={value!r} is outside the range batsnn supports, "
                         f"[{supported[0]:g}, {supported[1]:g}] (docs/model.md section 7)")
    return value


@dataclass(frozen=True, kw_only=True)
class LIFParams:
    """Parameters of a layer of exact LIF neurons (model.md sections 1 and 6).

    Validated once, on construction; every field is then a plain ``float``/``int``. Numpy
    scalars are accepted wherever Python numbers are.

    Attributes:
        tau_s: synaptic time constant in seconds, in :data:`TAU_S_RANGE` (``[1e-9, 1e6]``).
            The membrane's is :attr:`tau`.
        theta: firing threshold, in :data:`THETA_RANGE` (``[1e-12, 1e12]``).
        max_spikes: ``K``, the most spikes a neuron emits (int, ``1 <= K <= 2**31 - 1``).
        delta_theta: reset amount subtracted from the potential at each spike: 0 or in
            :data:`THETA_RANGE`; ``None`` means ``theta``.
        t_max: simulation horizon in seconds (> 0, may be ``inf``); no spike after it.
        dt: time step in seconds: ``None`` or ``0`` (exact continuous time), or in
            ``[1e-9 tau_s, 4.5e6 tau_s]`` (:data:`DT_RATIO_RANGE`), so that the grid index of
            every supported time is an exact integer.
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
        put("tau_s", real_number("tau_s", self.tau_s, supported=TAU_S_RANGE))
        put("theta", real_number("theta", self.theta, supported=THETA_RANGE))
        dth = self.theta if self.delta_theta is None else real_number(
            "delta_theta", self.delta_theta, allow_zero=True, supported=THETA_RANGE)
        put("delta_theta", dth)
        k = self.max_spikes
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"max_spikes must be an int, got {k!r}")
        if k < 1:
            raise ValueError(f"max_spikes must be >= 1, got {k!r}")
        if k > MAX_SPIKES_MAX:
            raise ValueError(f"max_spikes={k!r} is more than batsnn supports "
                             f"({MAX_SPIKES_MAX} = 2**31 - 1)")
        put("max_spikes", int(k))
        put("t_max", real_number("t_max", self.t_max, allow_inf=True))
        dt = 0.0 if self.dt is None else real_number("dt", self.dt, allow_zero=True)
        lo, hi = (r * self.tau_s for r in DT_RATIO_RANGE)
        if dt != 0 and not lo <= dt <= hi:
            raise ValueError(
                f"dt={dt!r} is outside the range batsnn supports for tau_s={self.tau_s!r}, "
                f"[{DT_RATIO_RANGE[0]:g}, {DT_RATIO_RANGE[1]:g}] * tau_s = [{lo:g}, {hi:g}] "
                "(or 0 for exact time; docs/model.md section 7)")
        put("dt", dt)
        if not isinstance(self.reset_at, str) or self.reset_at not in RESET_AT:
            raise ValueError(f"reset_at must be one of {', '.join(map(repr, RESET_AT))}, got "
                             f"{self.reset_at!r}")

    @property
    def tau(self) -> float:
        """Membrane time constant ``2 * tau_s`` in seconds (the closed form needs it)."""
        return 2.0 * self.tau_s

    @property
    def max_weight(self) -> float:
        """The largest weight magnitude batsnn supports with these parameters,
        ``WEIGHT_RATIO_MAX * theta / tau_s`` (docs/model.md section 7)."""
        return WEIGHT_RATIO_MAX * self.theta / self.tau_s

    @property
    def max_time(self) -> float:
        """The latest input spike time batsnn supports with these parameters,
        ``TIME_RATIO_MAX * tau_s`` (docs/model.md section 7)."""
        return TIME_RATIO_MAX * self.tau_s

    @property
    def on_grid(self) -> bool:
        """Whether the layer runs on a time grid (``dt > 0``)."""
        return self.dt > 0.0

    @property
    def reset_on_grid(self) -> bool:
        """Whether resets happen at the emitted grid times (``reset_at == "emitted"`` on a
        grid); in exact time the two are the same."""
        return self.on_grid and self.reset_at == "emitted"

    def replace(self, **changes) -> LIFParams:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-safe except for ``t_max = inf``)."""
        return dataclasses.asdict(self)
