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


def _readme_commands():
    text = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.split("#")[0].strip()
                if part.startswith("batsnn "):
                    cmds.append(part)
    return cmds


def test_readme_commands_parse_and_resolve():
    """Every ``batsnn ...`` command of the README is accepted, and its settings resolve."""
    import shlex

    from batsnn import cli
    from batsnn.experiments.config import resolve_config

    cmds = _readme_commands()
    assert "batsnn train --preset mnist-count --epochs 1" in cmds
    assert {c.split()[1] for c in cmds} >= {"train", "sweep", "data", "discretization-error"}
    parser = cli.build_parser()
    for cmd in cmds:
        args = parser.parse_args(shlex.split(cmd)[1:])
        if args.command == "train":
            cfg = resolve_config(args.preset, args.config, **cli.config_overrides(args))
            assert cfg.epochs >= 1, cmd
        elif args.command == "sweep":
            resolve_config(args.preset, args.config,
                           **cli.config_overrides(args, skip=("dt", "seed", "out")))
            assert args.dt, cmd
