"""What the study commands (``sweep``, ``convergence``, ``discretization-error``) and the
analysis scripts share: the settings-mismatch error, comma-separated number lists, the seed
check and the size limit checked before anything is allocated."""

from __future__ import annotations

import argparse

__all__ = ["SettingsMismatch", "check_seed", "check_size", "float_list", "int_list"]


class SettingsMismatch(ValueError):
    """An output directory holds results (a sweep, a run, convergence parts) made with other
    settings than those requested."""


def float_list(text: str) -> list[float]:
    """``"0,1e-3, 4e-3"`` as floats (empty items skipped), for argparse ``type=``; a bad
    item is an ``argparse.ArgumentTypeError`` naming the text."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def int_list(text: str) -> list[int]:
    """``"1,2,4"`` as ints (empty items skipped), for argparse ``type=``."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def check_seed(seed) -> int:
    """``seed`` as an int in ``[0, 2**32 - 1]`` (the range ``batsnn train`` accepts);
    ``ValueError``/``TypeError`` naming ``seed`` and the value otherwise."""
    from batsnn.experiments.config import check_setting

    return check_setting("seed", seed)



def check_size(what: str, factors: dict, limit: int) -> int:
    """The product of ``factors`` (``{name: value}``, values ints), refused with a
    ``ValueError`` naming every factor, the product and ``limit`` when it is larger than
    ``limit``, e.g. ``means x stds x repeats = 13 x 13 x 10000000 = 1690000000 networks,
    more than the limit of 1000000``. Computed on Python ints: nothing is allocated."""
    size = 1
    for v in factors.values():
        size *= int(v)
    if size > limit:
        names = " x ".join(factors)
        values = " x ".join(str(int(v)) for v in factors.values())
        raise ValueError(f"{names} = {values} = {size} {what}, more than the limit of "
                         f"{limit}; lower one of them")
    return size
