"""Tutorial 2: training from the command line and reading a run directory.

Runs ``batsnn train`` (as ``python -m batsnn train``) on 1,000 Fashion-MNIST images for
three epochs, then reads what the run wrote: ``config.json`` (the resolved settings),
``metrics.csv`` (one row per epoch), ``summary.json`` and the checkpoints. Plots the
accuracies and the spikes per layer from ``metrics.csv``. Writes ``t2_command_line.png``.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tutorial_data import data_dir

run = Path("fm-run")
command = [sys.executable, "-m", "batsnn", "train", "--preset", "mnist-count",
           "--dataset", "fashion-mnist", "--data-dir", str(data_dir()),
           "--hidden", "200", "--epochs", "3", "--train-samples", "1000",
           "--test-samples", "500", "--device", "cpu", "--quiet", "--out", str(run)]
print("$", " ".join(command[1:]).replace("-m batsnn", "batsnn", 1))
subprocess.run(command, check=True)

# What the run directory holds
print(sorted(p.name for p in run.iterdir()))
config = json.loads((run / "config.json").read_text())
print("network:", config["network"], "seed:", config["seed"],
      "version:", config["batsnn_version"])
rows = list(csv.DictReader(open(run / "metrics.csv", newline="")))
print("metrics.csv columns:", list(rows[0]))
summary = json.loads((run / "summary.json").read_text())
print("summary:", {k: summary[k] for k in list(summary)[:6]})

# Rerunning the same command would be refused (the directory holds a run); to continue a
# stopped run: batsnn train ... --resume --out fm-run

epochs = [int(r["epoch"]) for r in rows]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
for key in ("train_accuracy", "test_accuracy", "accuracy_by_100ms"):
    if key in rows[0]:
        a1.plot(epochs, [float(r[key]) for r in rows], "o-", label=key)
a1.set_xlabel("epoch")
a1.set_ylabel("accuracy")
a1.set_title("accuracy (metrics.csv)")
a1.legend()
spike_cols = [c for c in rows[0] if c.startswith("spikes_per_sample")]
for key in spike_cols:
    a2.plot(epochs, [float(r[key]) for r in rows], "o-", label=key)
a2.set_xlabel("epoch")
a2.set_ylabel("spikes per sample")
a2.set_title("spikes per layer (metrics.csv)")
a2.legend(fontsize=8)
fig.tight_layout()
fig.savefig("t2_command_line.png", dpi=110)
print("wrote t2_command_line.png")
