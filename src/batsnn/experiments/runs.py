"""Trained runs as networks: rebuilding a run's network, and exporting a run as NIR.

- :func:`load_run_model`: the trained network of a ``batsnn train`` run directory, rebuilt
  from its ``config.json`` and loaded from ``best.pt``/``last.pt``, every file checked (the
  config's fields, the checkpoint's parameters: names, shapes, dtypes, finite values).
- :func:`export_run`: that network written as a NIR file (:func:`batsnn.export.save_nir`).
- ``batsnn export``: :func:`add_parser` adds the subcommand to ``batsnn``'s argparse
  subparsers, :func:`main` runs it::

      batsnn export --run runs/mnist-count --out net.nir [--force]

This is runner code (it reads run directories); the library's :mod:`batsnn.export` knows
nothing of runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch

from batsnn.export.nir import TIME_UNITS, check_nir_path, save_nir
from batsnn.fileio import describe_path, one_line, printable

__all__ = ["add_parser", "export_run", "load_run_model", "main"]

CHECKPOINTS = ("best", "last")


def _run_file(run: Path, name: str) -> Path:
    """``run/name``, which must be a regular file (a ValueError says what it is else)."""
    p = run / name
    if os.path.islink(p) or not p.is_file():
        what = "is a symbolic link" if os.path.islink(p) else describe_path(p)
        hint = (": is it a batsnn train run directory with a completed epoch?"
                if not os.path.lexists(p) else ", expected a file")
        raise ValueError(f"{printable(p)} {what}{hint}")
    return p


def _layer_sizes(doc, cfg_path: Path) -> list:
    """The ``layers`` field of a run's config (input, ..., classes): the input and class
    counts ints >= 1, each layer between an int (neurons) or a list of ints >= 1 (the maps
    ``[C, H, W]`` of a conv or pool layer)."""
    sizes = doc.get("layers") if isinstance(doc, dict) else None
    if sizes is None:
        raise ValueError(f"{printable(cfg_path)} has no field 'layers' (input, ..., classes): "
                         "not a batsnn train run's config")

    def count(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, int) and v >= 1

    if (not isinstance(sizes, list) or len(sizes) < 2 or not count(sizes[0])
            or not count(sizes[-1])
            or not all(count(s) or (isinstance(s, list) and s and all(map(count, s)))
                       for s in sizes[1:-1])):
        raise ValueError(f"{printable(cfg_path)}: field 'layers' must be a list of at least two "
                         "entries (input, ..., classes): ints >= 1, a hidden layer's maps as a "
                         f"list of ints >= 1, got {printable(repr(sizes), 80)}")
    return sizes


def _check_state(model: torch.nn.Module, state, ck_path: Path, cfg_path: Path) -> None:
    """``state`` (a checkpoint's ``model``) must hold exactly the parameters and buffers of
    ``model`` (the network of ``cfg_path``), of the same shapes and dtypes, with finite
    floating-point values."""
    where = f"checkpoint {printable(ck_path)}"
    if not isinstance(state, dict):
        raise ValueError(f"{where} holds no model state (field 'model' is "
                         f"{type(state).__name__})")
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [f"'{printable(k, 40)}'" for k in state if k not in want]
    if missing or extra:
        raise ValueError(f"{where} does not hold the network of {printable(cfg_path)} "
                         f"(missing: {', '.join(missing) or 'none'}; unexpected: "
                         f"{', '.join(extra[:5]) or 'none'})")
    for k, ref in want.items():
        t = state[k]
        if not isinstance(t, torch.Tensor) or t.shape != ref.shape or t.dtype != ref.dtype:
            got = (f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor)
                   else type(t).__name__)
            raise ValueError(f"{where}: parameter {k!r} is {got}, but the network of "
                             f"{printable(cfg_path)} needs {tuple(ref.shape)} {ref.dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{where}: parameter {k!r} holds {bad} NaN or infinite values "
                             "(the run diverged)")


def _check_same_settings(cfg, ck: dict, ck_path: Path, cfg_path: Path) -> None:
    """The settings a checkpoint was trained with (its ``config``) must be those of the
    run's ``config.json`` in every field fixed for a run's life
    (:data:`~batsnn.experiments.config.RESUME_FIELDS`): an edited ``config.json`` never
    changes the exported network."""
    from batsnn.experiments.config import RESUME_FIELDS, config_from_dict

    try:
        saved = config_from_dict(ck["config"]).to_dict()
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"checkpoint {printable(ck_path)} holds invalid settings: "
                         f"{printable(one_line(e))}") from None
    now = cfg.to_dict()
    for k in RESUME_FIELDS:
        if saved.get(k) != now.get(k):
            raise ValueError(f"{printable(cfg_path)} disagrees with checkpoint "
                             f"{printable(ck_path)}: field {k} is "
                             f"{printable(repr(now.get(k)), 120)} in the config but "
                             f"{printable(repr(saved.get(k)), 120)} in the checkpoint; "
                             "restore the run's config.json")


def _input_shape(doc: dict) -> tuple | None:
    """The input shape a run's ``config.json`` records (runs before it was recorded: ``None``,
    the shape then follows from the layer sizes)."""
    shape = doc.get("input_shape")
    if shape is None:
        return None
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**31
                       for v in shape)):
        raise ValueError(f"input_shape must be a list of positive integers, got "
                         f"{printable(repr(shape))}")
    return tuple(shape)


def load_run_model(run_dir: str | os.PathLike, checkpoint: str = "best") -> tuple:
    """The trained network of a ``batsnn train`` run directory: ``(cfg, model, ck)``.

    The model is rebuilt from the run's ``config.json`` (its settings and layer sizes) with
    :func:`batsnn.experiments.model.build_model`, without touching the caller's torch RNG,
    and its weights are loaded from ``<checkpoint>.pt``
    (:func:`batsnn.experiments.rundir.load_checkpoint`), on the CPU; ``cfg`` is the run's
    :class:`~batsnn.experiments.config.TrainConfig` and ``ck`` the checkpoint's dict
    (``ck["epoch"]``: the epoch it was written after). The checkpoint must hold exactly the
    network's parameters (names, shapes, dtypes) with finite values, and must have been
    trained with the settings of ``config.json`` (every field of
    :data:`~batsnn.experiments.config.RESUME_FIELDS`).

    Args:
        run_dir: the run directory (``config.json`` and ``best.pt``/``last.pt``).
        checkpoint: ``"best"`` (default) or ``"last"``.

    Raises:
        ValueError: the run directory, its config or its checkpoint is missing, is not a
            file, is corrupt or does not match (the message names the file, and the field
            or parameter).
    """
    return _load(run_dir, checkpoint)[:3]


def _load(run_dir, checkpoint: str) -> tuple:
    """:func:`load_run_model`'s ``(cfg, model, ck)`` and the input shape per sample the
    network takes (``(N,)``, or ``(C, H, W)`` maps)."""
    from batsnn.experiments.config import config_from_dict
    from batsnn.experiments.model import build_model, network_input_shape
    from batsnn.experiments.rundir import load_checkpoint, read_json

    if not isinstance(checkpoint, str) or checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"run directory {printable(run)} {describe_path(run)}")
    cfg_path = _run_file(run, "config.json")
    ck_path = _run_file(run, f"{checkpoint}.pt")
    try:
        doc = read_json(cfg_path)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{printable(cfg_path)} cannot be read as UTF-8 JSON "
                         f"({printable(one_line(e))})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{printable(cfg_path)} holds a {type(doc).__name__}, not a table of "
                         "settings")
    sizes = _layer_sizes(doc, cfg_path)
    try:
        cfg = config_from_dict(doc)
        shape = _input_shape(doc) or network_input_shape(cfg.network, sizes[0])
        with torch.random.fork_rng(devices=[]):  # build_model draws weights: keep caller's RNG
            model = build_model(cfg, sizes[0], sizes[-1], shape)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise ValueError(f"{printable(cfg_path)}: {printable(one_line(e))}") from None
    ck = load_checkpoint(ck_path)
    _check_state(model, ck.get("model"), ck_path, cfg_path)
    _check_same_settings(cfg, ck, ck_path, cfg_path)
    model.load_state_dict(ck["model"])
    return cfg, model, ck, tuple(shape)


def export_run(run_dir: str | os.PathLike, out_path: str | os.PathLike, *,
               checkpoint: str = "best", time_unit: str = "s",
               overwrite: bool = False) -> Path:
    """Write the network of a ``batsnn train`` run directory as a NIR file.

    The model is rebuilt from the run's ``config.json`` (layer sizes, thresholds, spike
    buffers, ``tau_s``, ``t_max``, ``dt``, the reset of ``--dt-mode consistent``) and its
    weights loaded from ``<checkpoint>.pt`` (:func:`load_run_model`), then written with
    :func:`batsnn.export.save_nir`, which checks ``out_path`` first (never a link, a
    directory, a FIFO or a device, never into a run directory, never over an existing file
    unless ``overwrite`` and batsnn wrote it as NIR).

    Args:
        run_dir: the run directory (``config.json`` and ``best.pt``/``last.pt``).
        out_path: the NIR file to write (``*.nir``).
        checkpoint: ``"best"`` (default) or ``"last"``.
        time_unit: the graph's time unit, ``"s"`` or ``"ms"``.
        overwrite: replace an existing NIR file that batsnn wrote.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the run directory, its config or its checkpoint is missing or does not
            match (the message names the file), or ``out_path`` may not be written.
        ImportError: ``nir`` is not installed.
    """
    check_nir_path(out_path, "out_path", overwrite=overwrite)
    _, model, _, shape = _load(run_dir, checkpoint)
    # a network reading maps (a conv or pool first layer) is exported with their shape
    kw = {"input_shape": shape} if len(shape) == 3 else {}
    return save_nir(model, out_path, overwrite=overwrite, time_unit=time_unit, **kw)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``export`` to ``batsnn``'s subparsers (``func`` is set to :func:`main`)."""
    p = subparsers.add_parser("export", help="write a trained run's network as a NIR file")
    p.add_argument("--run", required=True, metavar="DIR", help="a batsnn train run directory")
    p.add_argument("--out", required=True, metavar="FILE.nir",
                   help="NIR (HDF5) file to write; must not exist (see --force)")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="best",
                   help="which checkpoint of the run (default: best)")
    p.add_argument("--time-unit", choices=sorted(TIME_UNITS), default="s",
                   help="time unit of the graph's time constants (default: s)")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it is a NIR file batsnn wrote (nothing else is "
                        "ever replaced)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Run ``batsnn export`` for parsed ``args``; returns the exit status (0)."""
    force = getattr(args, "force", False)
    check_nir_path(args.out, "--out", overwrite=force, force_hint="--force")
    # the exporter warns once per layer (e.g. a layer on a time grid, which NIR's continuous
    # neuron describes without it); the command reports them as one line
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_run(args.run, args.out, checkpoint=args.checkpoint,
                          time_unit=args.time_unit, overwrite=force)
    notes = list(dict.fromkeys(one_line(w.message) for w in caught))
    if notes:
        more = f" (and {len(notes) - 1} more such warnings)" if len(notes) > 1 else ""
        print(f"batsnn: warning: {printable(notes[0], 400)}{more}", file=sys.stderr)
    print(f"wrote {printable(path)} (NIR graph, time unit {args.time_unit}) from "
          f"{printable(args.run)} ({args.checkpoint}.pt)")
    return 0
