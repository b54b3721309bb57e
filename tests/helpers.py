"""Shared test helpers: tensor comparison with a named failure, random spike trains, the
scripts of ``benchmarks/`` and ``analysis/`` as modules."""

import importlib.util
import math
import os

import torch


def assert_close(name, ref, out, atol=1e-9, rtol=1e-9, slack=None):
    """Compare two tensors that may hold +inf padding; ``name`` labels the failure.

    The ``+inf`` entries must coincide; the finite ones must agree to
    ``atol + rtol * max|ref|``, plus per entry ``slack`` (a tensor of ``ref``'s shape) if
    given.
    """
    ref = torch.as_tensor(ref).double().cpu()
    out = torch.as_tensor(out).double().cpu()
    assert ref.shape == out.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    inf_ref, inf_out = torch.isinf(ref), torch.isinf(out)
    assert torch.equal(inf_ref, inf_out), f"{name}: +inf padding differs"
    r = ref.masked_fill(inf_ref, 0)
    o = out.masked_fill(inf_out, 0)
    bound = atol + rtol * (r.abs().max().item() if r.numel() else 0.0)
    if slack is None:
        err = (r - o).abs().max().item() if r.numel() else 0.0
        assert err <= bound, f"{name}: max abs error {err:.3e} > {bound:.3e}"
        return
    excess = (r - o).abs() - bound - torch.as_tensor(slack).double().cpu()
    worst = excess.max().item() if r.numel() else 0.0
    assert worst <= 0, f"{name}: max abs error beyond the bound and slack by {worst:.3e}"


def random_times(batch, neurons, slots, *, t_max=0.1, p=0.7, gen=None, dtype=torch.float64):
    """Random ascending +inf-padded spike trains ``(B, N, S)`` in seconds, uniform in
    ``[0, t_max)``, with about a share ``p`` of the slots holding a spike."""
    t = torch.rand(batch, neurons, slots, generator=gen, dtype=torch.float64) * t_max
    keep = torch.rand(batch, neurons, slots, generator=gen) < p
    t = torch.where(keep, t, torch.full_like(t, math.inf))
    return torch.sort(t, dim=-1).values.to(dtype)


def _script(folder: str, name: str):
    """``<folder>/<name>.py`` of the checkout loaded as a module (the folder is not a
    package)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(root, folder, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def benchmark_script(name: str):
    """``benchmarks/<name>.py`` loaded as a module."""
    return _script("benchmarks", name)


def analysis_script(name: str):
    """``analysis/<name>.py`` (the study analysis scripts) loaded as a module."""
    return _script("analysis", name)
