"""Each loss delivers exactly the BATS errors to the spike times (model.md section 3)."""

import math

import pytest
import torch

from batsnn import losses


def _outputs():
    times = torch.tensor([[[0.01, 0.02, math.inf], [0.03, math.inf, math.inf]],
                          [[math.inf, math.inf, math.inf], [0.005, 0.006, 0.007]]],
                         dtype=torch.float64, requires_grad=True)
    counts = torch.isfinite(times.detach()).sum(-1)
    return times, counts


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_count_class_loss_errors(reduction):
    times, counts = _outputs()
    labels = torch.tensor([0, 0])
    loss = losses.spike_count_class_loss(times, counts, labels, target_true=5, target_false=1,
                                         reduction=reduction)
    targets = torch.tensor([[5.0, 1.0], [5.0, 1.0]], dtype=torch.float64)
    diff = targets - counts
    expect = 0.5 * (diff ** 2).sum(1)
    expect = expect.mean() if reduction == "mean" else expect.sum()
    assert loss.item() == pytest.approx(expect.item())
    loss.backward()
    scale = 0.5 if reduction == "mean" else 1.0
    err = (diff.unsqueeze(-1) * torch.isfinite(times.detach())) * scale
    assert torch.equal(times.grad, err)
    # the label neuron of sample 0 is below target: its spikes get a positive error (earlier)
    assert times.grad[0, 0, 0] > 0 and times.grad[1, 1, 0] < 0


def test_count_loss_with_free_targets():
    times, counts = _outputs()
    targets = torch.tensor([[2.0, 3.0], [0.0, 3.0]], dtype=torch.float64)
    losses.SpikeCountLoss(reduction="sum")(times, counts, targets).backward()
    assert torch.equal(times.grad, (targets - counts).unsqueeze(-1) * torch.isfinite(times.detach()))
    assert losses.count_predict(counts).tolist() == [0, 1]


def test_spike_time_loss():
    times, _ = _outputs()
    target = torch.full_like(times, math.inf)
    target[0, 0, 0] = 0.015
    target[1, 0, 0] = 0.01  # no spike there: no error
    loss = losses.spike_time_loss(times, target.detach(), reduction="sum")
    assert loss.item() == pytest.approx(0.5 * 0.005 ** 2)
    loss.backward()
    expect = torch.zeros_like(times)
    expect[0, 0, 0] = 0.01 - 0.015
    assert torch.allclose(times.grad, expect)


def test_ttfs_cross_entropy_errors():
    t = torch.tensor([[[0.010], [0.012], [math.inf]], [[0.02], [0.015], [0.03]]],
                     dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2])
    tau = 0.005
    loss = losses.ttfs_cross_entropy(t, labels, tau_loss=tau, reduction="sum")
    loss.backward()
    first = t.detach()[..., 0]
    p = torch.softmax(-first / tau, 1)
    onehot = torch.nn.functional.one_hot(labels, 3).double()
    assert torch.allclose(t.grad[..., 0], (onehot - p) / tau)
    assert t.grad[0, 2, 0] == 0  # silent neuron: probability 0, no error
    assert losses.ttfs_predict(t.detach()).tolist() == [0, 1]
    assert loss.item() == pytest.approx(-(torch.log(p[0, 0]) + torch.log(p[1, 2])).item())


def test_loss_errors_for_bad_labels():
    times, counts = _outputs()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        losses.spike_count_class_loss(times, counts, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="reduction"):
        losses.spike_count_class_loss(times, counts, torch.tensor([0, 1]), reduction="avg")
