"""The README's Python example runs as written and trains."""

import pathlib
import re

import pytest
import torch


def test_readme_example_runs():
    text = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), scope)
    net = scope["net"]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert scope["pred"].shape == (50,)


@pytest.mark.cuda
def test_readme_cuda_graph_example_runs():
    """The GPU section's GraphedStep example, on a small network and four batches."""
    import batsnn

    text = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[1]
    assert "GraphedStep" in code
    torch.manual_seed(0)
    model = batsnn.nn.SpikingSequential(
        batsnn.nn.LIFLinear(784, 64, tau_s=0.13, theta=0.2, max_spikes=5),
        batsnn.nn.LIFLinear(64, 10, tau_s=0.13, theta=0.3, max_spikes=5)).cuda()
    batches = [(batsnn.ttfs_encode(torch.rand(16, 784)).cuda(),
                torch.randint(0, 10, (16,)).cuda()) for _ in range(4)]
    scope = {"batsnn": batsnn, "model": model, "x0": batches[0][0], "y0": batches[0][1],
             "batches": batches}
    before = model[1].weight.detach().clone()
    exec(compile(code, "README.md", "exec"), scope)
    assert torch.isfinite(scope["loss"]).all()
    assert not torch.equal(before, model[1].weight)
