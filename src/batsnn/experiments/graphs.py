"""Whole training steps as CUDA graphs.

A BATS step on a GPU is a few dozen small kernels; at small batch sizes launching them costs
more than running them. :class:`GraphedStep` records a step (forward, loss, backward and the
optimizer update) once as a CUDA graph and replays it, so that a step costs one launch.

    step = GraphedStep(train_step, x, y, state=(model, optimizer))
    for x, y in batches:               # same shapes, dtypes and device as the examples
        loss, pred = step(x, y)        # outputs live in static buffers: read or clone them

The optimizer must be able to run inside a graph (``torch.optim.Adam(..., capturable=True)``;
a learning rate that changes during training must then be a tensor, see
:func:`capturable_adam`). Everything batsnn runs on a GPU inside a step is free of host
synchronisation, which is what capture requires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

__all__ = ["GraphedStep", "capturable_adam"]


def capturable_adam(params, lr: float, device, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` that can run inside a CUDA graph, with its learning rate held in a
    device tensor (so that learning-rate schedulers keep working after capture)."""
    return torch.optim.Adam(params, lr=torch.tensor(float(lr), device=device), capturable=True,
                            **kwargs)


class GraphedStep:
    """Capture ``fn(*args)`` as a CUDA graph; calling the object replays it on new arguments.

    Args:
        fn: the step; takes tensors, returns a tensor or a tuple of tensors. It may change
            module parameters and optimizer state in place (that is what a training step
            does); it must not synchronise with the host or change shapes between calls.
        *example_args: tensors with the shapes, dtypes and device of every later call.
        state: modules and optimizers that ``fn`` changes. Capture needs ``warmup`` eager
            runs of ``fn``; their effect on these objects is undone afterwards, so a graphed
            run trains exactly as the eager one would (the example arguments are not trained
            on).
        warmup: eager runs before capture (kernels compile, lazy state is created).

    Raises:
        ValueError: no CUDA device, or arguments on another device.
    """

    def __init__(self, fn: Callable, *example_args: torch.Tensor,
                 state: Iterable = (), warmup: int = 2):
        if not example_args or any(not isinstance(a, torch.Tensor) for a in example_args):
            raise ValueError("GraphedStep needs at least one example tensor argument")
        device = example_args[0].device
        if device.type != "cuda":
            raise ValueError(f"GraphedStep needs CUDA tensors, got device {device}")
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1, got {warmup!r}")
        self.fn = fn
        self.state = list(state)
        saved = [_snapshot(obj) for obj in self.state]
        self.static_args = [a.detach().clone() for a in example_args]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                _zero_grads(self.state)
                fn(*self.static_args)
        torch.cuda.current_stream(device).wait_stream(side)
        _zero_grads(self.state)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            out = fn(*self.static_args)
        self.static_out = out
        for obj, snap in zip(self.state, saved):
            _restore(obj, snap)

    def __call__(self, *args: torch.Tensor):
        if len(args) != len(self.static_args):
            raise ValueError(f"expected {len(self.static_args)} arguments, got {len(args)}")
        for i, (dst, src) in enumerate(zip(self.static_args, args)):
            if src.shape != dst.shape or src.dtype != dst.dtype:
                raise ValueError(f"argument {i} has shape {tuple(src.shape)} {src.dtype}; the "
                                 f"graph was captured for {tuple(dst.shape)} {dst.dtype}")
            dst.copy_(src, non_blocking=True)
        self.graph.replay()
        return self.static_out


def _zero_grads(objs) -> None:
    for obj in objs:
        if isinstance(obj, torch.optim.Optimizer):
            obj.zero_grad(set_to_none=True)
        elif isinstance(obj, torch.nn.Module):
            obj.zero_grad(set_to_none=True)


def _snapshot(obj):
    if isinstance(obj, torch.nn.Module):
        return {k: v.detach().clone() for k, v in obj.state_dict().items()}
    if isinstance(obj, torch.optim.Optimizer):
        return {"state": {p: {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v)
                              for k, v in st.items()} for p, st in obj.state.items()},
                "groups": [{k: v for k, v in g.items() if k != "params"}
                           for g in obj.param_groups]}
    raise TypeError(f"state must hold modules and optimizers, got {type(obj).__name__}")


@torch.no_grad()
def _restore(obj, snap) -> None:
    """Put ``obj`` back to ``snap`` in place (the graph holds the tensors' addresses)."""
    if isinstance(obj, torch.nn.Module):
        for k, v in obj.state_dict().items():
            v.copy_(snap[k])
        return
    for p, st in obj.state.items():
        old = snap["state"].get(p, {})
        for k, v in st.items():
            if not isinstance(v, torch.Tensor):
                if k in old:
                    st[k] = old[k]
                continue
            if k in old:
                v.copy_(old[k])
            else:  # created by the warm-up: a fresh optimizer starts from zeros
                v.zero_()
    for g, old in zip(obj.param_groups, snap["groups"]):
        for k, v in old.items():
            if isinstance(g.get(k), torch.Tensor) and isinstance(v, torch.Tensor):
                g[k].copy_(v)
