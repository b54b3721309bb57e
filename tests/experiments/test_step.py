"""batsnn.experiments.training.step: the CUDA-graph step's bookkeeping, checked on the CPU
with a stand-in for the graph (the GPU tests in test_train.py compare real graphs with eager
steps): one recording before the first epoch and one more whenever an epoch's time step
differs, full batches replayed, a last smaller batch eager, the recording's warm-up kept
out of the counters, and the same training as the eager step."""

import copy

import torch

from batsnn.experiments import graphs
from batsnn.experiments.config import resolve_config
from batsnn.experiments.distributed import Shard
from batsnn.experiments.model import build_model
from batsnn.experiments.training.grid import TrainingGrid
from batsnn.experiments.training.loop import TrainState, fit
from batsnn.experiments.training.step import GraphedTrainStep, TrainStep
from tests.experiments.test_sources import SpikeTimes


class StandInGraph:
    """Records like :class:`batsnn.experiments.graphs.GraphedStep` (a warm-up step whose
    effect on the counters must not stay) and replays by running the step eagerly."""

    made = []

    def __init__(self, fn, *args, state):
        self.fn, self.model, self.opt = fn, *state
        self.calls = 0
        saved = copy.deepcopy((self.model.state_dict(), self.opt.state_dict()))
        fn(*args)  # warm-up: changes weights, optimizer state and counters
        self.model.load_state_dict(saved[0])
        self.opt.load_state_dict(saved[1])
        StandInGraph.made.append(self)

    def __call__(self, *args):
        self.calls += 1
        self.opt.zero_grad(set_to_none=True)
        return self.fn(*args)


def _run(graphed, mode, monkeypatch, epochs=3):
    cfg = resolve_config("mnist-count", hidden=[8], theta=[0.2, 0.05], max_spikes=[4, 6],
                         init=[-0.2, 1.0], batch_size=6, dt=0.004, dt_mode=mode,
                         dt_warmup_epochs=2 if mode == "anneal" else 0, target_true=4,
                         target_false=1)
    return run_steps(cfg, graphed, monkeypatch, epochs)


def run_steps(cfg, graphed, monkeypatch, epochs, *, edit_model=None, evaluate=None):
    """``epochs`` epochs of ``cfg``'s network on 27 samples of :class:`SpikeTimes` in
    batches of 6 (the last one of 3, eager), with the eager step or (``graphed``) the
    CUDA-graph step whose graph is :class:`StandInGraph`; ``edit_model(model)`` runs on the
    seeded network before training, ``evaluate(step)`` gives each epoch's metrics.
    Returns the final state and the step's log lines."""
    src = SpikeTimes(n_train=27)
    torch.manual_seed(0)
    model = build_model(cfg, src.n_inputs, src.n_classes)
    if edit_model is not None:
        edit_model(model)
    state = TrainState(model, torch.optim.Adam(model.parameters(), lr=0.01), "cpu",
                       config=cfg)
    grid = TrainingGrid(model, cfg)
    grid.train_at(1)

    def order_of(epoch):
        return torch.randperm(27, generator=torch.Generator().manual_seed(epoch))

    lines = []
    if graphed:
        monkeypatch.setattr(graphs, "GraphedStep", StandInGraph)
        StandInGraph.made = []
        step = GraphedTrainStep(state, model, src, grid, order_of, 6, log=lines.append)
        step.prepare(1)
    else:
        step = TrainStep(state, model, src, grid)

    def batches(epoch):
        order = order_of(epoch)
        return [Shard(order[i:i + 6], len(order[i:i + 6]) / 6, len(order[i:i + 6]),
                      len(order[i:i + 6]) == 6) for i in range(0, 27, 6)]

    fit(state, epochs=epochs, batches=batches, step=step, callbacks=[grid, step],
        evaluate=None if evaluate is None else (lambda st: evaluate(step)))
    step.release()
    return state, lines


def test_graph_recorded_per_time_step_replayed_for_full_batches(monkeypatch):
    eager, _ = _run(False, "anneal", monkeypatch)
    state, lines = _run(True, "anneal", monkeypatch)
    made = StandInGraph.made
    assert len(made) == 3  # the time step grows in epochs 1 and 2, then stays at dt
    assert [g.calls for g in made] == [4, 4, 4]  # 5 batches an epoch, the last one eager
    assert len(lines) == 3 and all("captured as a CUDA graph" in ln for ln in lines)
    # the warm-up steps are not counted; the training is the eager one
    assert [r["train_loss"] for r in state.history] == [r["train_loss"] for r in
                                                        eager.history]
    assert state.step == eager.step == 15
    for a, b in zip(state.model.parameters(), eager.model.parameters()):
        assert torch.equal(a, b)


def test_graph_recorded_once_on_a_fixed_grid(monkeypatch):
    state, _ = _run(True, "fixed", monkeypatch)
    assert len(StandInGraph.made) == 1 and StandInGraph.made[0].calls == 12
    state, _ = _run(True, "fixed", monkeypatch, epochs=0)  # nothing to train: one recording
    assert state.history == []
