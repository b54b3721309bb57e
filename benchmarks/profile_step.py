"""Where a training step's (or with ``--infer`` an inference pass's) time goes:
torch.profiler table of one configuration of ``bench_lif.py``.

    python benchmarks/profile_step.py --device cuda --config 800-b256
    python benchmarks/profile_step.py --device cuda --config conv-b50 --infer
"""

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from bench_lif import CONFIGS, build, make_input
from batsnn.losses import spike_count_class_loss


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", default="800-b50", choices=list(CONFIGS))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--infer", action="store_true", help="profile the forward pass only")
    args = p.parse_args()
    device = torch.device(args.device)
    sizes, thetas, spikes, batch = CONFIGS[args.config]
    torch.manual_seed(0)
    net = build(sizes, thetas, spikes, device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = make_input(batch, 0, device)
    if isinstance(sizes, str):  # a conv preset: 28 x 28 maps
        x = x.reshape(batch, 1, 28, 28, 1)
    y = torch.randint(0, 10, (batch,)).to(device)

    def step():
        if args.infer:
            with torch.no_grad():
                return net(x)
        out = net(x)
        loss = spike_count_class_loss(out.times, out.counts, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=50))


if __name__ == "__main__":
    main()
