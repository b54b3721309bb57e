"""The README's Python example runs as written and trains."""

import pathlib
import re

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
