"""Tutorial 6: event-stream data at library level.

``batsnn.experiments.datasets`` holds datasets as ``(time, channel)`` events per sample and
batches them into batsnn spike trains. Two of them need no download:

1. Yin-Yang (generated; 5 input channels: ``x, y, 1 - x, 1 - y`` as one spike each plus a
   bias spike; 3 classes): a 5-60-3 multi-spike network is trained on it for a few epochs.
2. A synthetic file in the published SHD layout (HDF5, 700 channels; ``h5py`` needed),
   written with ``write_synthetic_shd`` and read back through the same loader as the real
   Spiking Heidelberg Digits.

Writes ``t6_events.png``: the Yin-Yang test points coloured by the predicted class, and a
raster of one synthetic SHD sample.
"""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from batsnn.experiments.datasets import (format_info, info, iterate_batches,
                                         load_event_dataset)
from batsnn.experiments.datasets.heidelberg import write_synthetic_shd
from batsnn.losses import count_predict, spike_count_class_loss
from batsnn.nn import LIFLinear, SpikingSequential

torch.manual_seed(0)

# 1. Yin-Yang: the published encoding, in units of tau_s (here 1 s)
tau_s = 1.0
ds = load_event_dataset("yin-yang", tau_s=tau_s,
                        sizes={"train": 1500, "valid": 100, "test": 500})
print(format_info(info(ds)))
net = SpikingSequential(
    LIFLinear(5, 60, tau_s=tau_s, theta=0.1, max_spikes=5, t_max=5 * tau_s),
    # output weights start positive: an output neuron that never spikes gets no gradient
    LIFLinear(60, 3, tau_s=tau_s, theta=1.0, max_spikes=10, t_max=5 * tau_s, init=(0.0, 1.0)),
)
opt = torch.optim.Adam(net.parameters(), lr=1e-2)
for epoch in range(6):
    for batch in iterate_batches(ds, "train", 50, shuffle=True, seed=epoch,
                                 dtype=torch.float32):
        out = net(batch.trains)
        loss = spike_count_class_loss(out.times, out.counts, batch.labels,
                                      target_true=8, target_false=1)
        opt.zero_grad(); loss.backward(); opt.step()
    test = next(iterate_batches(ds, "test", 500, dtype=torch.float32))
    with torch.no_grad():
        pred = count_predict(net(test.trains).counts)
    print(f"epoch {epoch + 1}: Yin-Yang test accuracy "
          f"{(pred == test.labels).float().mean():.3f}")

# the points: x and y are the first two channels' spike times, mapped back to [0, 1]
first = test.trains.times[:, :2, 0].numpy() / tau_s
xy = (first - 0.15) / (2.0 - 0.15)

# 2. a synthetic SHD file, read like the published one
pathlib.Path("shd").mkdir(exist_ok=True)
write_synthetic_shd("shd", n_train=40, n_test=20, seed=0)
shd = load_event_dataset("shd", "shd")
print(format_info(info(shd)))
sample = next(iterate_batches(shd, "train", 1, t_stop=1.4))
times = sample.trains.times[0]                     # (700, S), +inf padded
channel, slot = torch.nonzero(torch.isfinite(times), as_tuple=True)

fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4))
acc = (pred == test.labels).float().mean().item()
for c in range(3):
    m = pred.numpy() == c
    a1.scatter(xy[m, 0], xy[m, 1], s=6, label=f"predicted class {c}")
a1.set_aspect("equal")
a1.set_title(f"Yin-Yang test set, 5-60-3, 6 epochs: {acc:.1%}", fontsize=10)
a1.legend(fontsize=8, loc="upper right")
a2.plot(times[channel, slot].numpy() * 1e3, channel.numpy(), "|", ms=2)
a2.set_xlabel("time (ms)")
a2.set_ylabel("channel")
a2.set_title(f"a synthetic SHD sample (label {int(sample.labels[0])}, "
             f"{int(sample.trains.counts.sum())} spikes)", fontsize=10)
fig.tight_layout()
fig.savefig("t6_events.png", dpi=110)
print("wrote t6_events.png")
