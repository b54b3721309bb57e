"""Tutorial 3: what a time step does, and ``--dt-mode consistent``.

A small version of the time-step study (docs/dt-study.md) on 1,000 Fashion-MNIST images,
three epochs each, through the library's runner (``batsnn.experiments``):

1. train one network in exact time, then run that same network on grids of 1 to 20 ms;
2. train at ``dt`` = 10 ms with the seed's scheme (``dt_mode="fixed"``: resets at the
   continuous crossing) and with the consistent discrete model (``dt_mode="consistent"``:
   spikes and resets on the grid, ``reset_at="emitted"``), each evaluated at 10 ms.

Writes ``t3_time_step.png``. On the full data over 10 epochs the differences are larger and
the cliffs sharper than on this subset: see the study.
"""

import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from batsnn.experiments.config import resolve_config
from batsnn.experiments.data import load_dataset
from batsnn.experiments.runs import load_run_model
from batsnn.experiments.train import evaluate, network_params, set_network_grid, train
from tutorial_data import data_dir

settings = dict(dataset="fashion-mnist", data_dir=str(data_dir()), hidden=[200], epochs=3,
                train_samples=1000, test_samples=500, device="cpu")


def run(out, **more):
    """Train one small network; returns its test accuracy."""
    cfg = resolve_config("mnist-count", out=out, **settings, **more)
    return train(cfg, quiet=True, log=lambda *a: None)["test_accuracy"]


# 1. exact time, then the same network on grids
exact = run("exact")
cfg, model, _ = load_run_model("exact")
test = load_dataset("fashion-mnist", settings["data_dir"]).subset(1000, 500)
base = network_params(model)
grid = [0.0, 1e-3, 2e-3, 5e-3, 8e-3, 10e-3, 15e-3, 20e-3]
on_grid = []
for dt in grid:
    set_network_grid(model, base, dt or None)
    at = dataclasses.replace(cfg, dt=dt or None)
    on_grid.append(evaluate(model, at, test.test_x, test.test_y, "cpu")["test_accuracy"])
    print(f"exact-time network run at dt = {dt * 1e3:g} ms: {on_grid[-1]:.3f}")

# 2. trained at 10 ms
fixed = run("fixed-10ms", dt=10e-3, dt_mode="fixed")
consistent = run("consistent-10ms", dt=10e-3, dt_mode="consistent")
print(f"trained and run at 10 ms: fixed {fixed:.3f}, consistent {consistent:.3f}")

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot([d * 1e3 for d in grid], on_grid, "o-", label="trained in exact time, run at dt")
ax.plot([10], [fixed], "s", ms=9, label="trained at 10 ms, dt_mode fixed (seed's scheme)")
ax.plot([10], [consistent], "D", ms=9, label="trained at 10 ms, dt_mode consistent")
ax.axhline(exact, color="grey", lw=0.8, ls=":")
ax.set_xlabel("time step dt (ms)")
ax.set_ylabel("test accuracy (500 images)")
ax.set_title("Fashion-MNIST subset, 784-200-10, 3 epochs", fontsize=10)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig("t3_time_step.png", dpi=110)
print("wrote t3_time_step.png")
