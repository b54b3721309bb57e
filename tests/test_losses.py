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


def _ttfs_cross_entropy_before(times, labels, tau_loss):
    """The TTFS loss as batsnn computed it before silent neurons got a finite value: plain
    autograd through log_softmax with t = inf for silent neurons (the reference gradient)."""
    logits = -times[..., 0] / tau_loss
    silent = torch.isinf(times[..., 0]).all(1, keepdim=True)
    logits = torch.where(silent, torch.zeros_like(logits), logits)
    logp = torch.log_softmax(logits, dim=1)
    return -logp.gather(1, labels.long().unsqueeze(1)).squeeze(1).mean()


def _silent_label_case():
    # sample 0: label 2 silent; sample 1: all silent; sample 2: label 0 spikes, neuron 1 silent
    t = torch.tensor([[[0.010], [0.012], [math.inf]],
                      [[math.inf], [math.inf], [math.inf]],
                      [[0.020], [math.inf], [0.030]]], dtype=torch.float64, requires_grad=True)
    return t, torch.tensor([2, 1, 0])


def test_ttfs_cross_entropy_silent_label_value_is_finite_at_the_horizon():
    t, labels = _silent_label_case()
    tau, t_max = 0.005, 0.2
    loss = losses.ttfs_cross_entropy(t, labels, tau_loss=tau, t_max=t_max, reduction="sum")
    assert math.isfinite(loss.item())
    # by hand: silent neurons take t_max in the value; the all-silent sample is uniform
    first = torch.where(torch.isinf(t.detach()[..., 0]), t_max, t.detach()[..., 0])
    logp = torch.log_softmax(-first / tau, 1)
    expect = -(logp[0, 2] + math.log(1 / 3) + logp[2, 0])
    assert loss.item() == pytest.approx(expect.item(), rel=1e-12)
    # without a horizon the value is +inf, as before
    assert losses.ttfs_cross_entropy(t, labels, tau_loss=tau).item() == math.inf
    assert losses.TTFSCrossEntropyLoss(tau, t_max=t_max)(t, labels).item() == pytest.approx(
        expect.item() / 3, rel=1e-12)


@pytest.mark.parametrize("t_max", [0.2, 1.0, math.inf], ids=["tmax0.2", "tmax1", "inf"])
def test_ttfs_cross_entropy_gradient_unchanged_by_the_horizon(t_max):
    t, labels = _silent_label_case()
    losses.ttfs_cross_entropy(t, labels, tau_loss=0.005, t_max=t_max).backward()
    ref = t.detach().clone().requires_grad_(True)
    _ttfs_cross_entropy_before(ref, labels, 0.005).backward()
    assert torch.allclose(t.grad, ref.grad, rtol=1e-12, atol=0)
    # the BATS errors: a silent label neuron is pulled earlier with 1/tau (mean over 3)
    assert t.grad[0, 2, 0] == pytest.approx(1 / 0.005 / 3)
    assert torch.all(t.grad[1] == 0) and t.grad[2, 1, 0] == 0


def test_ttfs_cross_entropy_gradient_on_random_spiking_outputs():
    """With every neuron spiking, the loss equals the plain autograd reference (value and
    gradient) and passes a float64 gradient check."""
    g = torch.Generator().manual_seed(0)
    t = (torch.rand(5, 4, 2, generator=g, dtype=torch.float64) * 0.05).sort(-1).values
    t.requires_grad_(True)
    labels = torch.randint(0, 4, (5,), generator=g)
    fn = lambda x: losses.ttfs_cross_entropy(x, labels, tau_loss=0.01, t_max=0.2)  # noqa: E731
    ref = t.detach().clone().requires_grad_(True)
    a, b = fn(t), _ttfs_cross_entropy_before(ref, labels, 0.01)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    a.backward()
    b.backward()
    assert torch.allclose(t.grad, ref.grad, rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(fn, (t,))


def test_ttfs_cross_entropy_bad_horizon():
    t, labels = _silent_label_case()
    with pytest.raises(ValueError, match="t_max must be a number > 0"):
        losses.ttfs_cross_entropy(t, labels, t_max=0.0)
