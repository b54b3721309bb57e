"""batsnn.experiments.training.resume: the optimizer-state check passes every state Adam
makes (random gradients over many scales, weight decay, other betas, and the gradient
sequence that brings the first moment closest to its bound) and rejects moments that Adam
cannot have made."""

import pytest
import torch

from batsnn.experiments.training.resume import optimizer_state_problem


def _adam(betas, weight_decay=0.0, n=40):
    p = torch.nn.Parameter(torch.zeros(n))
    return p, torch.optim.Adam([p], lr=1e-2, betas=betas, weight_decay=weight_decay)


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9), (0.0, 0.99), (0.95, 0.9999)])
def test_every_state_adam_makes_passes(betas):
    p, opt = _adam(betas, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    for t in range(1, 301):
        scale = 10.0 ** int(torch.randint(-12, 4, (1,), generator=g))
        keep = torch.rand(p.shape, generator=g) < 0.7
        p.grad = torch.randn(p.shape, generator=g) * scale * keep
        opt.step()
        if t % 10 == 0:
            assert optimizer_state_problem(opt.state_dict(), opt, t) is None, t


def test_the_worst_gradient_sequence_passes_and_a_moment_beyond_it_fails():
    """Gradients growing as ``(b2 / b1)^i`` make ``|m| / sqrt(v)`` approach the bound."""
    b1, b2 = 0.9, 0.999
    p, opt = _adam((b1, b2), n=3)
    bound = (1 - b1) / ((1 - b2) * (1 - b1 * b1 / b2)) ** 0.5
    for t in range(1, 151):
        p.grad = torch.full((3,), (b2 / b1) ** t)
        opt.step()
    st = opt.state[p]
    ratio = float((st["exp_avg"].double() / st["exp_avg_sq"].double().sqrt()).max())
    assert 0.95 * bound < ratio <= bound * 1.0001
    assert optimizer_state_problem(opt.state_dict(), opt, 150) is None
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = st["exp_avg"] * 1.05
    assert "that Adam cannot have made" in optimizer_state_problem(sd, opt, 150)
    sd["state"][0]["exp_avg"] = st["exp_avg"].clone()
    sd["state"][0]["exp_avg_sq"] = st["exp_avg_sq"] * 0.9
    assert "that Adam cannot have made" in optimizer_state_problem(sd, opt, 150)
