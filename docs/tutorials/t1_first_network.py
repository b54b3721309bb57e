"""Tutorial 1: a first network in ten lines.

Trains a 784-200-10 network of exact multi-spike LIF neurons on 1,000 Fashion-MNIST images
for three epochs with the BATS spike-count loss, then plots the test accuracy per epoch and
the output layer's spikes for a few test images. Writes ``t1_first_network.png``.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import batsnn
from batsnn.losses import count_predict, spike_count_class_loss
from batsnn.nn import LIFLinear, SpikingSequential
from tutorial_data import small_fashion_mnist

torch.manual_seed(0)
train_x, train_y, test_x, test_y = small_fashion_mnist(1000, 500)

# --8<-- [start:ten-lines]
net = SpikingSequential(LIFLinear(784, 200, tau_s=0.13, theta=0.2, max_spikes=30, t_max=0.2),
                        LIFLinear(200, 10, tau_s=0.13, theta=1.3, max_spikes=30, t_max=0.2))
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
for epoch in range(3):
    for i in range(0, len(train_x), 50):
        out = net(batsnn.ttfs_encode(train_x[i:i + 50]))    # exact spike times
        loss = spike_count_class_loss(out.times, out.counts, train_y[i:i + 50])
        opt.zero_grad(); loss.backward(); opt.step()         # exact BATS gradients
    with torch.no_grad():
        test = net(batsnn.ttfs_encode(test_x))
    print(f"epoch {epoch + 1}: test accuracy "
          f"{(count_predict(test.counts) == test_y).float().mean():.3f}")
# --8<-- [end:ten-lines]

accuracy = (count_predict(test.counts) == test_y).float().mean().item()
fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), sharey=True)
for ax, k in zip(axes, range(4)):
    n = int(test.counts[k].sum())
    for neuron in range(10):
        t = test.times[k, neuron]
        t = t[torch.isfinite(t)]
        ax.plot(t * 1e3, [neuron] * len(t), "|", ms=9,
                color="C3" if neuron == test_y[k] else "C0")
    ax.set_title(f"test image {k}: label {int(test_y[k])}, {n} spikes", fontsize=9)
    ax.set_xlabel("time (ms)")
axes[0].set_ylabel("output neuron")
axes[0].set_yticks(range(10))
fig.suptitle(f"Output spikes after 3 epochs (test accuracy {accuracy:.1%}); "
             "red: the label neuron", fontsize=10)
fig.tight_layout()
fig.savefig("t1_first_network.png", dpi=110)
print("wrote t1_first_network.png")
