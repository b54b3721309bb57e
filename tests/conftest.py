import math
import random

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def seed():
    """Seed every RNG the tests use; returns a fresh torch.Generator."""
    random.seed(0)
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


def assert_close(name, ref, out, atol=1e-9, rtol=1e-9):
    """Compare two tensors that may hold +inf padding; ``name`` labels the failure."""
    ref = torch.as_tensor(ref).double().cpu()
    out = torch.as_tensor(out).double().cpu()
    assert ref.shape == out.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    inf_ref, inf_out = torch.isinf(ref), torch.isinf(out)
    assert torch.equal(inf_ref, inf_out), f"{name}: +inf padding differs"
    r = ref.masked_fill(inf_ref, 0)
    o = out.masked_fill(inf_out, 0)
    err = (r - o).abs().max().item() if r.numel() else 0.0
    bound = atol + rtol * (r.abs().max().item() if r.numel() else 0.0)
    assert err <= bound, f"{name}: max abs error {err:.3e} > {bound:.3e}"


def random_times(batch, neurons, slots, *, t_max=0.1, p=0.7, gen=None, dtype=torch.float64):
    """Random ascending +inf-padded spike trains (B, N, S) with about a share p of spikes."""
    t = torch.rand(batch, neurons, slots, generator=gen, dtype=torch.float64) * t_max
    keep = torch.rand(batch, neurons, slots, generator=gen) < p
    t = torch.where(keep, t, torch.full_like(t, math.inf))
    return torch.sort(t, dim=-1).values.to(dtype)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny fake Fashion-MNIST in IDX files (60 train / 20 test images)."""
    from test_data import write_fake_idx_dataset

    d = tmp_path_factory.mktemp("data")
    write_fake_idx_dataset(d, n_train=60, n_test=20)
    return d
