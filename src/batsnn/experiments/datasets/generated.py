"""Generated benchmarks: Yin-Yang and Randman, seeded, deterministic, no files.

Both are returned as :class:`~batsnn.experiments.datasets.events.EventDataset` with one spike
per input channel, so they batch like any event dataset.
"""

from __future__ import annotations

import math

import numpy as np

from batsnn.experiments.datasets.events import EventDataset, split_from_samples

__all__ = ["MAX_GENERATED_SPIKES", "YIN_YANG_SEEDS", "YIN_YANG_SIZES", "randman", "randman_manifold", "yin_yang",
           "yin_yang_class", "yin_yang_points"]

#: the most spikes (or manifold values) a generator makes: sizes are checked against it
#: before anything is allocated
MAX_GENERATED_SPIKES = 100_000_000

#: published sizes and seeds (Kriener, Göltz & Petrovici 2021, README of
#: github.com/lkriener/yin_yang_data_set): train 5000 / seed 42, validation 1000 / seed 41,
#: test 1000 / seed 40
YIN_YANG_SIZES = {"train": 5000, "valid": 1000, "test": 1000}
YIN_YANG_SEEDS = {"train": 42, "valid": 41, "test": 40}


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def _positive(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


def yin_yang_class(x: float, y: float, r_big: float = 0.5, r_small: float = 0.1) -> int:
    """The class of the point ``(x, y)`` of the Yin-Yang square ``[0, 2 r_big]^2``
    (Kriener et al. 2021): 2 ("dot") within ``r_small`` of either dot centre
    ``(r_big / 2, r_big)`` (left) or ``(3 r_big / 2, r_big)`` (right); else 1 when the point is
    in the right dot's disc of radius ``r_big / 2``, in the left one's ring
    (``r_small < d_left <= r_big / 2``), or in the upper half outside the right disc; else 0.
    Points outside the big circle are not classified (the sampler rejects them)."""
    d_left = math.hypot(x - 0.5 * r_big, y - r_big)
    d_right = math.hypot(x - 1.5 * r_big, y - r_big)
    if d_left < r_small or d_right < r_small:
        return 2
    one = (d_right <= r_small or r_small < d_left <= 0.5 * r_big
           or (y > r_big and d_right > 0.5 * r_big))
    return int(one)


def yin_yang_points(size: int, seed: int, r_big: float = 0.5,
                    r_small: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``size`` Yin-Yang points ``(x, y)`` and their classes, by class-balanced rejection
    sampling (Kriener et al. 2021): for each sample draw the wanted class uniformly from
    {0, 1, 2}, then draw points uniformly in the square until one falls in the big circle
    and in that class. Draws come from ``numpy.random.RandomState(seed)`` in that order
    (class: ``randint(3)``, point: ``rand(2) * 2 r_big``), the generator and order of the
    published sets, so the published seeds give the published points."""
    rng = np.random.RandomState(seed)
    xy = np.empty((size, 2), dtype=np.float64)
    cls = np.empty(size, dtype=np.int64)
    for i in range(size):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if math.hypot(x - r_big, y - r_big) > r_big:
                continue
            if yin_yang_class(x, y, r_big, r_small) == goal:
                break
        xy[i] = x, y
        cls[i] = goal
    return xy, cls


def yin_yang(*, sizes: dict | None = None, seeds: dict | None = None, r_big: float = 0.5,
             r_small: float = 0.1, t_early: float = 0.15, t_late: float = 2.0,
             t_bias: float | None = 0.9, tau_s: float = 1.0) -> EventDataset:
    """The Yin-Yang dataset as time-to-first-spike input (Göltz et al. 2021).

    Points (Kriener, Göltz & Petrovici 2021, "The Yin-Yang dataset", arXiv:2102.08211):
    ``r_big = 0.5``, ``r_small = 0.1``, class-balanced rejection sampling
    (:func:`yin_yang_points`), train 5000 / validation 1000 / test 1000 with the published
    seeds 42 / 41 / 40 (:data:`YIN_YANG_SIZES`, :data:`YIN_YANG_SEEDS`).

    Encoding (Göltz et al. 2021, "Fast and energy-efficient neuromorphic deep learning with
    first-spike times"; the values of their Yin-Yang configuration, ``yin_yang.yaml`` and
    ``datasets.py`` of github.com/JulianGoeltz/fastAndDeep): the four values
    ``(x, y, 1 - x, 1 - y)`` in [0, 1] become one spike each at
    ``t_early + v (t_late - t_early)`` with ``t_early = 0.15`` and ``t_late = 2.0``, in units
    of the synaptic time constant ``tau_s``; a fifth channel carries the bias spike at
    ``t_bias = 0.9 tau_s`` (``t_bias=None`` leaves it out).

    Args:
        sizes, seeds: per split (``train``, ``valid``, ``test``), replacing the published ones.
        r_big, r_small: radii of the big and the small circles of the Yin-Yang figure.
        t_early, t_late: spike times (in units of ``tau_s``) of the values 0 and 1.
        t_bias: time of the bias spike (units of ``tau_s``); ``None`` leaves it out.
        tau_s: seconds per unit of time (the network's ``tau_s``; default 1 s).

    Channels: 5 (or 4 without bias); classes: 3. Times float64 seconds.
    """
    for name, v in (("r_big", r_big), ("r_small", r_small), ("t_late", t_late),
                    ("tau_s", tau_s)):
        _positive(name, v)
    if isinstance(t_early, bool) or not isinstance(t_early, (int, float)) \
            or not 0 <= t_early < t_late:
        raise ValueError(f"t_early must be a number in [0, t_late={t_late!r}), got {t_early!r}")
    if t_bias is not None and (isinstance(t_bias, bool) or not isinstance(t_bias, (int, float))
                               or not math.isfinite(t_bias) or t_bias < 0):
        raise ValueError(f"t_bias must be a finite number >= 0 or None, got {t_bias!r}")
    if r_small >= r_big / 2:
        raise ValueError(f"r_small ({r_small!r}) must be less than r_big / 2 ({r_big / 2!r})")
    sizes = {**YIN_YANG_SIZES, **(sizes or {})}
    seeds = {**YIN_YANG_SEEDS, **(seeds or {})}
    n_ch = 4 if t_bias is None else 5
    splits = {}
    for split in ("train", "valid", "test"):
        _positive_int(f"sizes[{split!r}]", sizes[split])
        if sizes[split] > MAX_GENERATED_SPIKES // n_ch:
            raise ValueError(f"sizes[{split!r}] must be <= {MAX_GENERATED_SPIKES // n_ch:,}, got "
                             f"{sizes[split]!r}")
        xy, cls = yin_yang_points(sizes[split], seeds[split], r_big, r_small)
        u = xy / (2 * r_big)  # (x, y) scaled to [0, 1]
        v = np.concatenate([u, 1.0 - u], axis=1)  # (x, y, 1 - x, 1 - y)
        t = (t_early + v * (t_late - t_early)) * tau_s
        if t_bias is not None:
            t = np.concatenate([t, np.full((len(t), 1), t_bias * tau_s)], axis=1)
        splits[split] = split_from_samples(list(t), [np.arange(n_ch)] * len(t), cls,
                                           n_channels=n_ch, n_classes=3,
                                           source=f"yin-yang {split} (seed {seeds[split]})")
    return EventDataset("yin-yang", (n_ch,), 3, splits,
                        notes=f"Yin-Yang, t_early {t_early}, t_late {t_late}, bias "
                              f"{t_bias} (x tau_s = {tau_s} s)")


def randman_manifold(rng: np.random.Generator, n_channels: int, dim: int, alpha: float,
                     prec: float = 1e-3, max_frequencies: int = 1000):
    """A random smooth manifold ``[0, 1]^dim -> R^n_channels`` (Zenke & Vogels 2021): each
    output coordinate is a product over the manifold's axes of 1-D random functions
    ``f(x) = sum_{j=0}^{F-1} a_j / (j + 1)^alpha * sin(2 pi (j b_j x + c_j))`` with ``a, b,
    c`` uniform in [0, 1] and ``a_0 = 0`` (no constant offset); ``F = min(ceil(prec **
    (-1 / alpha)), max_frequencies)`` frequencies, so the spectrum is cut where it falls
    below ``prec``. Larger ``alpha``: smoother. Returns the function of ``x (N, dim)``."""
    n_freq = int(min(math.ceil(prec ** (-1.0 / alpha)), max_frequencies))
    params = rng.uniform(0.0, 1.0, size=(n_channels, dim, 3, n_freq))
    params[:, :, 0, 0] = 0.0
    spectrum = 1.0 / (np.arange(n_freq) + 1.0) ** alpha
    j = np.arange(n_freq)

    def f(x: np.ndarray) -> np.ndarray:
        out = np.ones((len(x), n_channels))
        for d in range(dim):
            a, b, c = params[:, d, 0], params[:, d, 1], params[:, d, 2]  # (channels, F)
            phase = 2 * np.pi * (j * b * x[:, d, None, None] + c)  # (N, channels, F)
            out *= np.einsum("ncf,cf->nc", np.sin(phase), a * spectrum)
        return out

    return f


def randman(*, n_classes: int = 10, n_channels: int = 100, dim: int = 2, alpha: float = 2.0,
            samples_per_class: int = 1000, duration: float = 0.1, seed: int = 0,
            fractions: tuple = (0.8, 0.1, 0.1)) -> EventDataset:
    """Randman (Zenke & Vogels 2021, "The remarkable robustness of surrogate gradient
    learning for instilling complex function in spiking neural networks"): one random smooth
    manifold per class (:func:`randman_manifold`); a sample is a point drawn uniformly on
    the manifold's coordinates, and each input channel fires exactly one spike whose time is
    that channel's manifold value, min-max scaled per class to [0, 1] and times
    ``duration``. All the information is in the relative spike timing.

    Numbers and where they come from: the manifold family (spectrum ``1/(j+1)^alpha``,
    cutoff precision 1e-3, at most 1000 frequencies, no offset, min-max scaling) and the
    defaults ``n_classes=10``, ``n_channels=100``, ``dim=2``, ``alpha=2``,
    ``samples_per_class=1000``, one spike per channel are those of the authors' reference
    generator (``make_spiking_dataset`` and ``Randman`` in github.com/fzenke/randman); its
    100 time steps of 1 ms give ``duration=0.1`` s. The paper's own table of task
    parameters could not be consulted here, so these defaults follow the reference code;
    the paper varies classes, channels, dimension and smoothness across its experiments,
    all settable here. The split into train / valid / test (``fractions``, default
    0.8 / 0.1 / 0.1 of each class, disjoint samples of the same manifolds) is batsnn's.

    Returns an :class:`EventDataset` with ``n_channels`` channels, float64 times.
    """
    for name, v in (("n_classes", n_classes), ("n_channels", n_channels), ("dim", dim),
                    ("samples_per_class", samples_per_class)):
        _positive_int(name, v)
    _positive("alpha", alpha)
    _positive("duration", duration)
    # sizes bounded before anything is allocated: the spikes, and the manifold's evaluation
    # (samples x channels x frequencies floats per class and axis)
    n_freq = int(min(math.ceil(1e-3 ** (-1.0 / alpha)), 1000))
    if n_classes * samples_per_class * n_channels > MAX_GENERATED_SPIKES:
        raise ValueError(f"n_classes * samples_per_class * n_channels = {n_classes} * "
                         f"{samples_per_class} * {n_channels} spikes is more than the "
                         f"{MAX_GENERATED_SPIKES:,} batsnn generates")
    if samples_per_class * n_channels * n_freq > MAX_GENERATED_SPIKES:
        raise ValueError(f"samples_per_class * n_channels * frequencies = {samples_per_class} * "
                         f"{n_channels} * {n_freq} (alpha {alpha!r}) is more than the "
                         f"{MAX_GENERATED_SPIKES:,} values batsnn evaluates per manifold")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if len(fractions) != 3 or any(not isinstance(f, (int, float)) or not 0 <= f <= 1
                                  for f in fractions) or not math.isclose(sum(fractions), 1):
        raise ValueError(f"fractions must be three numbers in [0, 1] summing to 1 (train, "
                         f"valid, test), got {fractions!r}")
    n_train = int(round(fractions[0] * samples_per_class))
    n_valid = int(round(fractions[1] * samples_per_class))
    n_test = samples_per_class - n_train - n_valid
    if min(n_train, n_test) < 1:
        raise ValueError(f"samples_per_class={samples_per_class} with fractions {fractions} "
                         f"leaves an empty train or test split")
    rng = np.random.default_rng(seed)
    parts = {"train": ([], []), "valid": ([], []), "test": ([], [])}
    for k in range(n_classes):
        f = randman_manifold(rng, n_channels, dim, alpha)
        x = rng.uniform(0.0, 1.0, size=(samples_per_class, dim))
        y = f(x)
        lo, hi = y.min(axis=0), y.max(axis=0)
        t = (y - lo) / (hi - lo + 1e-7) * duration
        for name, a, b in (("train", 0, n_train), ("valid", n_train, n_train + n_valid),
                           ("test", n_train + n_valid, samples_per_class)):
            parts[name][0].append(t[a:b])
            parts[name][1].append(np.full(b - a, k))
    splits = {}
    for name, (ts, ls) in parts.items():
        t, lab = np.concatenate(ts), np.concatenate(ls)
        if len(lab) == 0:
            continue
        order = rng.permutation(len(lab))
        t, lab = t[order], lab[order]
        splits[name] = split_from_samples(list(t), [np.arange(n_channels)] * len(t), lab,
                                          n_channels=n_channels, n_classes=n_classes,
                                          source=f"randman {name} (seed {seed})")
    return EventDataset("randman", (n_channels,), n_classes, splits,
                        notes=f"Randman, {n_classes} classes, {n_channels} channels, dim "
                              f"{dim}, alpha {alpha}, {samples_per_class} per class, "
                              f"{duration} s, seed {seed}")
