"""The part files of a convergence run directory (``parts/part-NNNNN.json``): read,
checked and compared with the requested settings."""

from __future__ import annotations

import math
import re
from pathlib import Path

from batsnn.experiments.common import SettingsMismatch
from batsnn.experiments.convergence.config import VARIANTS
from batsnn.fileio import describe_path, loads_json, one_line, printable

__all__ = ["MAX_PART_BYTES", "PART_NAME", "load_parts"]

#: the name of a part file: ``part-`` and its number
PART_NAME = re.compile(r"part-(\d{1,9})\.json\Z")
#: a part file larger than this is refused before it is read
MAX_PART_BYTES = 512 * 2**20

#: settings added after part files were first written: a part without them was made with
#: these values
ADDED_SETTINGS = {"reset_at": "crossing"}


def _settings_difference(stored: dict, wanted: dict) -> list[str]:
    stored = {**ADDED_SETTINGS, **stored}
    keys = sorted(set(stored) | set(wanted))
    return [printable(f"{k}: stored {stored.get(k, '(absent)')!r}, requested "
                      f"{wanted.get(k, '(absent)')!r}", 300)
            for k in keys if stored.get(k) != wanted.get(k)]


_CELL_LISTS = ("best", "initial", "final", "first_converged_epoch", "silent_initial",
               "silent_final", "blind_final", "diverged")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_part(path: Path) -> tuple[dict, int]:
    """A part file's content and number; ``ValueError`` naming it when it is not one."""
    def bad(why):
        raise ValueError(f"{printable(path)} is not a convergence part file ({why}); remove it "
                         "or choose another --out")

    name = PART_NAME.match(path.name)
    if name is None:
        bad("its name is not part-NUMBER.json")
    if path.is_symlink():
        bad("a symbolic link")
    if not path.is_file():
        bad(f"it {describe_path(path)}")
    try:
        if path.stat().st_size > MAX_PART_BYTES:
            bad(f"larger than {MAX_PART_BYTES // 2**20} MiB")
        part = loads_json(path.read_text(encoding="utf-8"), path.name)
    except (OSError, ValueError) as e:
        bad(one_line(e)[:200])
    if not (isinstance(part, dict) and isinstance(part.get("settings"), dict)
            and isinstance(part.get("cells"), list)):
        bad("no settings and cells")
    return part, int(name.group(1))


def _check_cells(path: Path, part: dict, repeats: int) -> None:
    """Each cell of a part (whose settings matched) holds ``repeats`` outcomes per list."""
    if part.get("variant") not in VARIANTS or not _number(part.get("seconds", 0.0)):
        raise ValueError(f"{printable(path)} is not a convergence part file (variant or "
                         "seconds); remove it or choose another --out")
    for cell in part["cells"]:
        if not (isinstance(cell, dict) and _number(cell.get("mean")) and _number(cell.get("std"))
                and all(isinstance(cell.get(k), list) and len(cell[k]) == repeats
                        and all(_number(v) for v in cell[k]) for k in _CELL_LISTS)):
            raise ValueError(f"{printable(path)} holds a malformed cell (each needs mean, std and "
                             f"{repeats} outcomes per run list); remove it or choose another "
                             "--out")


def load_parts(out: Path, settings: dict) -> tuple[dict, float, int]:
    """Finished cells ``{(variant, mean, std): outcome}``, their compute seconds and the next
    free part number; raises :class:`SettingsMismatch` on a part with other settings and
    ``ValueError`` naming a file that is not a part file."""
    done, seconds, next_id = {}, 0.0, 0
    parts = out / "parts"
    for path in sorted(parts.glob("part-*.json")) if parts.is_dir() else []:
        part, pid = _read_part(path)
        next_id = max(next_id, pid + 1)
        diff = _settings_difference(part["settings"], settings)
        if diff:
            raise SettingsMismatch(
                f"{printable(out)} holds finished cells made with other settings "
                f"({printable(path.name)}): "
                + "; ".join(diff) + ". Use the same settings to continue, or another --out")
        _check_cells(path, part, settings["repeats"])
        for cell in part["cells"]:
            done[(part["variant"], cell["mean"], cell["std"])] = cell
        seconds += part.get("seconds", 0.0)
    return done, seconds, next_id

