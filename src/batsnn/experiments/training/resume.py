"""Continuing a run from its checkpoint: the settings must be the run's
(:func:`check_resumable`), the checkpoint must fit the network and optimizer and hold sane
values (:func:`restore_checkpoint`, :func:`optimizer_state_problem`), and the run's other
files are rewritten from it, the source of truth (:func:`sync_run_files`)."""

from __future__ import annotations

import math
import numbers

import torch

from batsnn import metrics as M
from batsnn.experiments.config import (TrainConfig, config_from_dict, keep_earlier_settings,
                                       settings_difference)
from batsnn.experiments.rundir import (CheckpointError, RunDir, load_run_checkpoint,
                                       save_checkpoint, set_rng_state, write_csv, write_json)
from batsnn.experiments.training.loop import summary_of

__all__ = ["best_epoch", "check_resumable", "optimizer_state_problem", "restore_checkpoint",
           "sync_run_files"]


def best_epoch(history: list[dict]) -> int:
    """The first epoch (1-based) with the best test accuracy (the one ``best.pt`` holds)."""
    accs = [r[M.TEST_ACCURACY] for r in history]
    return accs.index(max(accs)) + 1


def check_resumable(saved: dict, cfg: TrainConfig, path) -> list[str]:
    """Raise unless the settings ``saved`` in checkpoint ``path`` equal ``cfg`` in every
    field of :data:`~batsnn.experiments.config.RESUME_FIELDS`: ``CheckpointError`` when they
    are not valid settings, ``ValueError`` listing the differences otherwise.

    A run started before one of :data:`~batsnn.experiments.config.LATER_SETTINGS` existed
    (its checkpoint lacks it) continues as it ran: that field of ``cfg`` is set, in place,
    to the value the run trained with (the default), whatever a preset says now. Returns
    the names of the fields so set (empty when none was)."""
    try:
        before = config_from_dict(saved).to_dict()
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint '{path}' holds invalid settings: {e}") from None
    kept = keep_earlier_settings(saved, cfg)
    diff = settings_difference(before, cfg.to_dict())
    if diff:
        raise ValueError(f"--resume: settings differ from the run's checkpoint {path}: "
                         + ", ".join(diff))
    return kept


def _number(v) -> float | None:
    """``v`` as a float when it is a real number or a one-element floating tensor, else
    ``None``."""
    if isinstance(v, torch.Tensor):
        return float(v) if v.dim() == 0 and v.is_floating_point() else None
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        return float(v)
    return None


#: what each hyperparameter of an Adam parameter group must be: (low, high, low included)
_GROUP_RANGES = {"lr": (0.0, math.inf, False), "initial_lr": (0.0, math.inf, False),
                 "eps": (0.0, math.inf, False), "weight_decay": (0.0, math.inf, True)}


def _group_problem(g: dict) -> str | None:
    """What is wrong with the hyperparameters of one saved parameter group."""
    for k, (low, high, closed) in _GROUP_RANGES.items():
        if k not in g:
            continue
        v = _number(g[k])
        if v is None:
            return f"a parameter group's {k} is not a number"
        if not (math.isfinite(v) and (v >= low if closed else v > low) and v < high):
            return f"a parameter group's {k} of {v!r}"
    betas = g.get("betas")
    if betas is not None:
        vals = [_number(b) for b in betas] if isinstance(betas, (list, tuple)) else [None]
        if len(vals) != 2 or any(b is None or not 0.0 <= b < 1.0 for b in vals):
            return f"a parameter group's betas of {betas!r}"
    return None


def _param_state_problem(st: dict, p: torch.Tensor, steps: int,
                         betas: tuple | None) -> str | None:
    """What is wrong with the saved state of one parameter ``p`` after ``steps`` optimizer
    steps of the run, with Adam's ``betas``."""
    for k, v in st.items():
        if k == "step":
            n = _number(v)
            if n is None:
                return "a step count that is not a number"
            if not (math.isfinite(n) and n == int(n) and 0 <= n <= steps):
                return f"a step count of {n!r} (the run took {steps} steps)"
        elif not isinstance(v, torch.Tensor) or v.shape != p.shape:
            return (f"{k} of shape {tuple(getattr(v, 'shape', ()))} for a parameter of "
                    f"shape {tuple(p.shape)}")
        elif v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return f"{k} holding NaN or infinite values"
        elif k.endswith("exp_avg_sq") and bool((v < 0).any()):
            return f"{k} holding negative values"
    return _moments_problem(st, betas)


def _moments_problem(st: dict, betas: tuple | None) -> str | None:
    """Adam's moments from zero, ``m = (1 - b1) sum_k b1^k g_k`` and ``v = (1 - b2) sum_k
    b2^k g_k^2``, obey ``|m| <= C sqrt(v)`` with ``C = (1 - b1) / sqrt((1 - b2)(1 - b1^2 /
    b2))`` (Cauchy-Schwarz, for ``b1^2 < b2``; about 7.3 for the defaults): a first moment
    beyond it, or a second moment below it, was not made by Adam (a changed bit, a crafted
    value) and would drive the next steps far off."""
    m, v = st.get("exp_avg"), st.get("exp_avg_sq")
    if betas is None or not isinstance(m, torch.Tensor) or not isinstance(v, torch.Tensor):
        return None
    b1, b2 = (float(b) for b in betas)
    if not b1 * b1 < b2:
        return None
    c = (1 - b1) / math.sqrt((1 - b2) * (1 - b1 * b1 / b2))
    # float rounding: 1% and an absolute 1e-20 (a second moment that underflowed)
    bound = 1.01 * c * v.double().sqrt() + 1e-20
    if bool((m.double().abs() > bound).any()):
        return ("exp_avg and exp_avg_sq that Adam cannot have made (|exp_avg| beyond "
                f"{c:.3g} sqrt(exp_avg_sq))")
    return None


def optimizer_state_problem(osd: dict, opt: torch.optim.Optimizer,
                            steps: int) -> str | None:
    """Why the saved optimizer state ``osd`` does not fit ``opt`` after ``steps`` optimizer
    steps of the run (``None`` if it does): other parameter groups; hyperparameters that
    are not finite numbers in range (learning rates and ``eps`` > 0, ``weight_decay`` >= 0,
    ``betas`` in [0, 1)); state for unknown parameters; moments of other shapes, not
    finite, negative second moments, or first and second moments that Adam cannot have
    made together; step counts that are not whole numbers in ``[0, steps]``."""
    groups = osd["param_groups"]
    if len(groups) != len(opt.param_groups):
        return f"{len(groups)} parameter groups, the optimizer has {len(opt.param_groups)}"
    params, ids = [], []
    for g, own in zip(groups, opt.param_groups):
        if len(g["params"]) != len(own["params"]):
            return "parameter groups of other sizes"
        why = _group_problem(g)
        if why is not None:
            return why
        params += own["params"]
        ids += g["params"]
    for key, st in osd["state"].items():
        if key not in ids or not isinstance(st, dict):
            return f"state for an unknown parameter {key!r}"
        group = next(g for g in groups if key in g["params"])
        why = _param_state_problem(st, params[ids.index(key)], steps, group.get("betas"))
        if why is not None:
            return why
    return None


def _schedule_problem(groups: list, sched, epoch: int) -> str | None:
    """Why the saved learning rates ``groups`` are not those the schedule ``sched`` (a
    ``LambdaLR``; others are not checked) gives after ``epoch`` epochs."""
    lambdas, bases = getattr(sched, "lr_lambdas", None), getattr(sched, "base_lrs", None)
    if lambdas is None or bases is None:
        return None
    for g, base, factor in zip(groups, bases, lambdas):
        want, got = float(base) * factor(epoch), _number(g["lr"])
        if not math.isclose(got, want, rel_tol=1e-5):
            return f"lr of {got!r} where the run's schedule gives {want!r} after epoch {epoch}"
    return None


def restore_checkpoint(ck: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
                       sched, path) -> None:
    """Load a checked run checkpoint (:func:`batsnn.experiments.rundir.load_run_checkpoint`)
    into the model, optimizer and learning-rate schedule, and restore the RNG states.

    The schedule is rebuilt from the epoch (its settings are the run's, equal by
    :func:`check_resumable`), not read from the file.

    Raises:
        CheckpointError: the checkpoint does not fit (other layers or shapes, non-finite
            weights, optimizer state that :func:`optimizer_state_problem` finds wrong, a
            learning rate other than the schedule's after the saved epoch), in one line
            naming the file.
    """
    def bad(why):
        raise CheckpointError(f"checkpoint '{path}' does not fit this run's network: {why}")

    own, saved = model.state_dict(), ck["model"]
    missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or extra:
        bad(f"missing {', '.join(missing) or 'nothing'}, "
            f"unexpected {', '.join(extra) or 'nothing'}")
    for k, v in own.items():
        if saved[k].shape != v.shape or saved[k].dtype != v.dtype:
            bad(f"{k} is {tuple(saved[k].shape)} {saved[k].dtype} in the checkpoint, "
                f"{tuple(v.shape)} {v.dtype} in the network")
        if saved[k].is_floating_point() and not bool(torch.isfinite(saved[k]).all()):
            bad(f"{k} holds NaN or infinite values")
    why = (optimizer_state_problem(ck["optimizer"], opt, ck["step"])
           or _schedule_problem(ck["optimizer"]["param_groups"], sched, ck["epoch"]))
    if why is not None:
        raise CheckpointError(f"checkpoint '{path}' holds an optimizer state with {why}")
    model.load_state_dict(saved)
    try:
        opt.load_state_dict(ck["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        bad(f"optimizer state ({' '.join(str(e).split())[:160]})")
    epoch = ck["epoch"]
    st = sched.state_dict()
    st.update(last_epoch=epoch, _step_count=epoch + 1)
    sched.load_state_dict(st)
    set_rng_state(ck["rng"])


def sync_run_files(run: RunDir, ck: dict) -> list[dict]:
    """Make a run's files agree with its checkpoint ``ck`` (read from ``last.pt``, the source
    of truth): rewrite ``metrics.csv`` and ``summary.json`` from its history, and ``best.pt``
    when the best epoch is the checkpoint's own and ``best.pt`` is missing or older (a run
    stopped between writing ``last.pt`` and the other files). Returns the history."""
    history = ck["history"]
    write_csv(run.metrics, history)
    write_json(run.summary, summary_of(history))
    if best_epoch(history) == ck["epoch"]:
        try:
            stale = load_run_checkpoint(run.best)["epoch"] != ck["epoch"]
        except CheckpointError:
            stale = True
        if stale:
            save_checkpoint(run.best, ck)
    return history
