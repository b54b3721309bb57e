"""Tutorial 4: a convolutional network.

A small version of the ``mnist-conv`` network (docs/model.md section 5): a 5x5 convolution
to 15 maps of single-spike neurons, 2x2 spike pooling (every spike of a window kept), a
flatten and a dense output layer of multi-spike neurons, trained on 600 Fashion-MNIST
images for two epochs. Every neuron is the exact neuron of the dense layers, reading only
the spikes of its receptive field. Plots the first layer's kernels, the maps' first-spike
times for one test image and the test accuracy. Writes ``t4_conv.png``.
"""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import batsnn
from batsnn.losses import count_predict, spike_count_class_loss
from batsnn.nn import Flatten, LIFConv2d, LIFLinear, SpikePool2d, SpikingSequential
from tutorial_data import small_fashion_mnist

torch.manual_seed(0)
train_x, train_y, test_x, test_y = small_fashion_mnist(600, 300)


def maps(images):
    """TTFS spike times of flat images as maps ``(B, 1, 28, 28, 1)``."""
    return batsnn.ttfs_encode(images).reshape(-1, 1, 28, 28, 1)


net = SpikingSequential(
    LIFConv2d(1, 15, 5, tau_s=0.13, theta=0.04, max_spikes=1, t_max=0.2),   # (15, 24, 24)
    SpikePool2d(2),                                                          # (15, 12, 12)
    Flatten(),                                                               # 2160
    LIFLinear(15 * 12 * 12, 10, tau_s=0.13, theta=0.3, max_spikes=30, t_max=0.2),
)
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
accuracy = []
for epoch in range(2):
    for i in range(0, len(train_x), 20):
        out = net(maps(train_x[i:i + 20]))
        loss = spike_count_class_loss(out.times, out.counts, train_y[i:i + 20],
                                      target_true=30, target_false=3)
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        test = net(maps(test_x))
    accuracy.append((count_predict(test.counts) == test_y).float().mean().item())
    print(f"epoch {epoch + 1}: test accuracy {accuracy[-1]:.3f}")

with torch.no_grad():
    conv_out = net[0](maps(test_x[:1]))          # SpikeTrains (1, 15, 24, 24, 1)
first = conv_out.times[0, :, :, :, 0]            # first spike of every neuron, +inf if silent

fig = plt.figure(figsize=(12, 4.2))
grid = fig.add_gridspec(2, 10)
kernels = net[0].weight.detach()[:, 0]
for c in range(6):
    ax = fig.add_subplot(grid[0, c])
    ax.imshow(kernels[c], cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"kernel {c}", fontsize=8)
    ax = fig.add_subplot(grid[1, c])
    shown = torch.where(torch.isfinite(first[c]), first[c] * 1e3, torch.tensor(math.nan))
    ax.imshow(shown, cmap="viridis_r", vmin=0, vmax=100)
    ax.set_axis_off()
    ax.set_title(f"map {c} (ms)", fontsize=8)
ax = fig.add_subplot(grid[:, 7:])
ax.plot(range(1, len(accuracy) + 1), accuracy, "o-")
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy (300 images)")
ax.set_xticks(range(1, len(accuracy) + 1))
fig.suptitle("Conv network: first-layer kernels (top) and first-spike times of their "
             "maps for a test image (bottom; blank: silent)", fontsize=10)
fig.savefig("t4_conv.png", dpi=110, bbox_inches="tight")
print("wrote t4_conv.png")
