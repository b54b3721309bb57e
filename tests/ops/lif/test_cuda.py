"""GPU backend on a GPU (the ``cuda`` tests, skipped without one).

Parity of the Triton kernels with the naive reference on every harness case, in Triton's
CPU interpreter and on a GPU, is in ``test_parity.py``; here: the public op on the GPU, the
GPU sort, large layers, host synchronisation, CUDA graphs.
"""

import math
import os
import subprocess
import sys

import pytest
import torch

from tests.ops.lif import parity


@pytest.mark.cuda
@pytest.mark.parametrize("cid", parity.case_ids(layouts=("small", "empty"), backend="cuda"))
def test_gpu_public_op_matches_reference(cid):
    """``batsnn.lif_linear`` on the GPU, through autograd, against the naive reference."""
    parity.check("cuda", cid, public=True)


@pytest.mark.cuda
@pytest.mark.parametrize("tile", [16, 2048])
def test_gpu_sort_matches_torch_sort(tile):
    from batsnn.ops.lif import cuda

    parity.check_sort(cuda, "cuda", tile=tile)


@pytest.mark.cuda
def test_gpu_conv_row_sort_matches_loops():
    parity.check_row_sort("cuda")


@pytest.mark.cuda
def test_gpu_pool_matches_torch_ops():
    parity.check_pool("cuda")


@pytest.mark.cuda
def test_gpu_layer_with_own_sort_matches_torch_sort():
    """A 784-800-10 network's second layer (24,000-wide input) gives the same spikes and
    gradients with batsnn's sort as with torch.sort."""
    import batsnn
    from batsnn.ops.lif import cuda

    g = torch.Generator().manual_seed(1)
    x = batsnn.ttfs_encode(torch.rand(64, 784, generator=g)).cuda()
    w1 = (torch.rand(800, 784, generator=g) * 2 - 1).cuda()
    w2 = (torch.rand(10, 800, generator=g) * 2 - 1).cuda()
    h = batsnn.lif_linear(x, w1, tau_s=0.13, theta=0.2, max_spikes=30, t_max=0.2)
    assert h.times.shape[1] * h.times.shape[2] > cuda.SORT_MIN_WIDTH
    outs = []
    for min_width in (cuda.SORT_MIN_WIDTH, 10**9):  # own sort, then torch.sort
        old = cuda.SORT_MIN_WIDTH
        cuda.SORT_MIN_WIDTH = min_width
        try:
            hid = h.times.detach().clone().requires_grad_(True)
            w = w2.clone().requires_grad_(True)
            out = batsnn.lif_linear(hid, w, tau_s=0.13, theta=1.3, max_spikes=30, t_max=0.2)
            gx, gw = torch.autograd.grad(out.times, (hid, w), torch.isfinite(out.times).float())
        finally:
            cuda.SORT_MIN_WIDTH = old
        outs.append([v.detach().cpu() for v in (out.times, out.counts, gx, gw)])
    (t0, c0, gx0, gw0), (t1, c1, gx1, gw1) = outs
    assert c0.sum() > 64 * 5
    assert torch.equal(c0, c1) and torch.equal(t0, t1)
    assert torch.allclose(gw0, gw1, rtol=1e-5, atol=1e-6)
    assert torch.allclose(gx0, gx1, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_gpu_large_batch_and_realistic_layer(dtype):
    """Batch over 1024 (8192) and a 784-800 layer with 30 spikes max."""
    import batsnn

    g = torch.Generator().manual_seed(0)
    x = torch.rand(8192, 784, generator=g)
    x = torch.where(torch.rand(8192, 784, generator=g) < 0.5, x, torch.zeros_like(x))
    inp = batsnn.ttfs_encode(x, dtype=dtype)
    w = (torch.rand(800, 784, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    kw = dict(tau_s=0.13, theta=0.2, max_spikes=30, t_max=0.2)
    gpu = batsnn.lif_linear(inp.cuda(), w.cuda(), **kw)
    idx = torch.tensor([0, 1, 1023, 1024, 5000, 8191])
    cpu = batsnn.lif_linear(inp[idx], w, **kw)
    gc = gpu.counts[idx.cuda()].cpu()
    if dtype == torch.float64:
        assert torch.equal(gc, cpu.counts)
    else:  # float32 arithmetic on the GPU, float64 on the CPU: borderline crossings may flip
        assert (gc != cpu.counts).float().mean() < 1e-3
    assert gpu.counts.sum() > 8192 * 100
    same = gc == cpu.counts
    t_gpu = gpu.times[idx.cuda()].cpu()[same]
    t_cpu = cpu.times[same]
    fin = torch.isfinite(t_cpu)
    assert torch.equal(fin, torch.isfinite(t_gpu))
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert (t_gpu[fin].double() - t_cpu[fin].double()).abs().max() < tol


@pytest.mark.cuda
def test_gpu_training_step_has_no_host_sync_in_backward():
    """A training step's backward runs without synchronising the host."""
    import batsnn

    net = torch.nn.Sequential(batsnn.nn.LIFLinear(784, 64, tau_s=0.13, theta=0.2, max_spikes=5),
                              batsnn.nn.LIFLinear(64, 10, tau_s=0.13, theta=1.3, max_spikes=5)
                              ).cuda()
    x = batsnn.ttfs_encode(torch.rand(32, 784)).cuda()
    out = net(x)
    loss = batsnn.losses.spike_count_class_loss(out.times, out.counts,
                                               torch.randint(0, 10, (32,)).cuda())
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert net[0].weight.grad is not None and torch.isfinite(net[0].weight.grad).all()


def test_cpu_import_without_gpu():
    """import batsnn and the CPU path work without CUDA (this machine or any other)."""
    res = subprocess.run([sys.executable, "-c", "import batsnn, torch; "
                          "x = batsnn.ttfs_encode(torch.rand(2, 5)); "
                          "print(batsnn.lif_linear(x, torch.ones(3, 5), tau_s=0.1, theta=0.05, "
                          "max_spikes=2).counts.sum().item())"],
                         capture_output=True, text=True, env={**os.environ,
                                                             "CUDA_VISIBLE_DEVICES": ""})
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) > 0
    assert math.isfinite(float(res.stdout.strip()))


def _small_net(dtype=torch.float32):
    import batsnn

    torch.manual_seed(3)
    return torch.nn.Sequential(
        batsnn.nn.LIFLinear(784, 64, tau_s=0.13, theta=0.2, max_spikes=5, dtype=dtype),
        batsnn.nn.LIFLinear(64, 10, tau_s=0.13, theta=0.3, max_spikes=5, dtype=dtype)).cuda()


@pytest.mark.cuda
def test_gpu_training_step_has_no_host_sync():
    """Forward, loss, backward and the Adam update: no host synchronisation anywhere."""
    import batsnn

    net = _small_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = batsnn.ttfs_encode(torch.rand(32, 784)).cuda()
    y = torch.randint(0, 10, (32,)).cuda()

    def step():
        out = net(batsnn.functional.mark_valid(x))
        loss = batsnn.losses.spike_count_class_loss(out.times, out.counts, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # kernels compile, optimizer state is created
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.cuda
def test_graphed_training_matches_eager():
    """GraphedStep trains exactly as the eager loop (float64: up to atomics' summation order),
    and its warm-up leaves no trace."""
    import batsnn
    from batsnn.experiments.graphs import GraphedStep, capturable_adam

    g = torch.Generator().manual_seed(0)
    xs = [batsnn.ttfs_encode(torch.rand(16, 784, generator=g), dtype=torch.float64).cuda()
          for _ in range(4)]
    ys = [torch.randint(0, 10, (16,), generator=g).cuda() for _ in range(4)]
    nets, losses = [], []
    for graphed in (False, True):
        net = _small_net(torch.float64)
        opt = capturable_adam(net.parameters(), 3e-3, "cuda")

        def step(x, y):
            out = net(x)
            assert graphed or out.counts.sum() > 0  # the output layer spikes: weights learn
            loss = batsnn.losses.spike_count_class_loss(out.times, out.counts, y)
            loss.backward()
            opt.step()
            return loss.detach()

        if graphed:
            gs = GraphedStep(step, xs[0], ys[0], state=(net, opt))
            run = [gs(x, y).clone() for x, y in zip(xs, ys)]
        else:
            run = []
            for x, y in zip(xs, ys):
                opt.zero_grad(set_to_none=True)
                run.append(step(x, y))
        nets.append(net)
        losses.append(torch.stack(run))
    assert torch.allclose(losses[0], losses[1], rtol=1e-9, atol=1e-12), losses
    for p0, p1 in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(p0, p1, rtol=1e-9, atol=1e-12)
    assert not torch.equal(nets[0][0].weight, _small_net(torch.float64)[0].weight)


def test_graphed_step_rejects_cpu_tensors():
    from batsnn.experiments.graphs import GraphedStep

    with pytest.raises(ValueError, match="needs CUDA tensors, got device cpu"):
        GraphedStep(lambda x: x * 2, torch.ones(3))
    with pytest.raises(ValueError, match="at least one example tensor"):
        GraphedStep(lambda: None)


@pytest.mark.cuda
def test_gpu_grid_bounds_match_torch():
    from batsnn.ops.lif import cuda

    parity.check_grid_bounds(cuda, "cuda")
