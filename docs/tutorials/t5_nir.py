"""Tutorial 5: export to NIR and run the network in another simulator.

Trains a small 784-200-10 network (three epochs on 1,000 Fashion-MNIST images), writes it as a
NIR file (``batsnn.export.save_nir``: ``nir.Linear`` + ``nir.CubaLIF`` nodes, docs/nir.md),
reads the file back with the ``nir`` package alone and runs it in a clock-driven simulator
written below from NIR's CubaLIF equations (no batsnn code), with a 0.1 ms step. Compares the
simulator's spike counts and predicted classes with batsnn's exact ones, and checks the round
trip ``from_nir`` (weights bit for bit). Writes ``t5_nir.png``. Needs ``pip install nir``.
"""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nir
import numpy as np
import torch

import batsnn
from batsnn.export import from_nir, save_nir
from batsnn.losses import count_predict, spike_count_class_loss
from batsnn.nn import LIFLinear, SpikingSequential
from tutorial_data import small_fashion_mnist

torch.manual_seed(0)
train_x, train_y, test_x, test_y = small_fashion_mnist(1000, 200)
net = SpikingSequential(LIFLinear(784, 200, tau_s=0.13, theta=0.2, max_spikes=30, t_max=0.2),
                        LIFLinear(200, 10, tau_s=0.13, theta=1.3, max_spikes=30, t_max=0.2))
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
for epoch in range(3):
    for i in range(0, len(train_x), 50):
        out = net(batsnn.ttfs_encode(train_x[i:i + 50]))
        loss = spike_count_class_loss(out.times, out.counts, train_y[i:i + 50])
        opt.zero_grad(); loss.backward(); opt.step()

save_nir(net, "net.nir", overwrite=True)          # replaces only a NIR file batsnn wrote
assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                             from_nir("net.nir").state_dict().values()))


def simulate_nir(graph, input_times, h=1e-4, t_end=0.2):
    """Clock-driven simulation of a chain of ``Linear`` + ``CubaLIF`` nodes (time unit:
    seconds), from NIR's equations:

        tau_syn dI/dt = -I + w_in W S(t),   tau_mem dv/dt = (v_leak - v) + r I,
        v > v_threshold -> spike, v = v_reset.

    Each step propagates (I, v) exactly over ``h``, adds the input spikes of the step
    (a Dirac of weight W raises I by w_in W / tau_syn), then fires and resets. batsnn's
    spike buffer and horizon come from the CubaLIF metadata. Returns the spike counts of
    every CubaLIF layer."""
    succ = dict(graph.edges)
    node = next(k for k, v in graph.nodes.items() if isinstance(v, nir.Input))
    chain = []
    while node in succ:
        node = succ[node]
        chain.append(graph.nodes[node])
    layers = [(chain[i].weight, chain[i + 1]) for i in range(0, len(chain) - 1, 2)]
    steps = int(round(t_end / h))
    # input spikes, as the step in which each arrives: (B, N_in) -> step index or -1
    arrive = torch.where(torch.isfinite(input_times[..., 0]),
                         torch.ceil(input_times[..., 0] / h - 1e-9), -1).long()
    B = input_times.shape[0]
    state = []
    for w, lif in layers:
        n = w.shape[0]
        f = {k: torch.as_tensor(np.asarray(getattr(lif, k), np.float64)) for k in
             ("tau_syn", "tau_mem", "r", "w_in", "v_leak", "v_threshold", "v_reset")}
        a_s, a_m = torch.exp(-h / f["tau_syn"]), torch.exp(-h / f["tau_mem"])
        gain = f["r"] * f["tau_syn"] * (a_m - a_s) / (f["tau_mem"] - f["tau_syn"])
        state.append(dict(W=torch.as_tensor(np.asarray(w, np.float64)), f=f, a_s=a_s,
                          a_m=a_m, gain=gain, I=torch.zeros(B, n, dtype=torch.float64),
                          v=f["v_leak"].expand(B, n).clone(),
                          count=torch.zeros(B, n, dtype=torch.long),
                          K=int(lif.metadata["max_spikes"]),
                          t_max=float(lif.metadata["t_max"])))
    for k in range(steps + 1):
        spikes = (arrive == k).double()                        # (B, N_in)
        for L in state:
            f = L["f"]
            L["v"] = f["v_leak"] + (L["v"] - f["v_leak"]) * L["a_m"] + L["gain"] * L["I"]
            L["I"] = L["I"] * L["a_s"] + spikes @ L["W"].T * (f["w_in"] / f["tau_syn"])
            fire = (L["v"] > f["v_threshold"]) & (L["count"] < L["K"]) & (k * h <= L["t_max"])
            L["v"] = torch.where(fire, f["v_reset"].expand_as(L["v"]), L["v"])
            L["count"] += fire.long()
            spikes = fire.double()
    return [L["count"] for L in state]


graph = nir.read("net.nir")
x = batsnn.ttfs_encode(test_x)
sim_hidden, sim_out = simulate_nir(graph, x)
with torch.no_grad():
    hidden, out = net.forward_all(x)
agree = (count_predict(sim_out) == count_predict(out.counts)).float().mean().item()
same_counts = (sim_hidden == hidden.counts).float().mean().item()
acc = (count_predict(out.counts) == test_y).float().mean().item()
print(f"batsnn test accuracy {acc:.3f}; the NIR simulator predicts the same class on "
      f"{agree:.1%} of {len(test_y)} images; hidden spike counts equal on {same_counts:.1%}")

fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
a1.plot(hidden.counts.flatten(), sim_hidden.flatten(), ".", alpha=0.2)
top = int(max(hidden.counts.max(), sim_hidden.max())) + 1
a1.plot([0, top], [0, top], "k-", lw=0.6)
a1.set_xlabel("batsnn (exact)")
a1.set_ylabel("NIR simulator (0.1 ms step)")
a1.set_title(f"hidden spike counts: equal on {same_counts:.1%}", fontsize=10)
a2.plot(out.counts.flatten(), sim_out.flatten(), ".", alpha=0.3)
top = int(max(out.counts.max(), sim_out.max())) + 1
a2.plot([0, top], [0, top], "k-", lw=0.6)
a2.set_xlabel("batsnn (exact)")
a2.set_ylabel("NIR simulator (0.1 ms step)")
a2.set_title(f"output spike counts; same class on {agree:.1%}", fontsize=10)
fig.tight_layout()
fig.savefig("t5_nir.png", dpi=110)
print("wrote t5_nir.png")
