"""batsnn.experiments.augment: elastic deformation of training batches."""

import numpy as np
import pytest
import torch

from batsnn.experiments import augment as A


def _images(n=4, h=28, w=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w), generator=g, dtype=torch.int64).to(torch.uint8)


def test_zero_displacement_is_the_identity():
    x = _images()
    assert torch.equal(A.deform(x, np.zeros((2, 28, 28))), x)
    # below half a pixel everywhere, nearest-neighbour sampling keeps every pixel
    assert torch.equal(A.deform(x, np.full((2, 28, 28), 0.49)), x)


def test_a_known_displacement_moves_pixels():
    x = _images(2, 6, 5)
    d = np.zeros((2, 6, 5))
    d[0] = 1.0  # output row y reads input row y + 1: the picture moves up one row
    d[1] = -2.0  # output column x reads input column x - 2: it moves right two columns
    out = A.deform(x, d)
    assert torch.equal(out[:, :5, 2:], x[:, 1:, :3])
    assert (out[:, 5] == 0).all() and (out[:, :, :2] == 0).all()  # from outside the image
    # nearest neighbour: 0.6 of a pixel rounds to a whole pixel, 0.4 to none
    d = np.zeros((2, 6, 5))
    d[1, :, :] = 0.6
    assert torch.equal(A.deform(x, d)[:, :, :4], x[:, :, 1:])
    d[1, :, :] = 0.4
    assert torch.equal(A.deform(x, d), x)


def test_spline_interpolates_the_control_points_smoothly():
    s = A.spline_matrix(28, 2)
    u = np.linspace(0, 1, 28)
    assert np.allclose(s[:, 1], 3 * u**2 - 2 * u**3) and np.allclose(s.sum(1), 1.0)
    s5 = A.spline_matrix(29, 5)
    assert np.allclose(s5[::7], np.eye(5))  # control points on pixels 0, 7, ..., 28
    # the same as B-spline interpolation with mirrored ends (what elasticdeform describes)
    ndimage = pytest.importorskip("scipy.ndimage")
    g = np.random.default_rng(1).standard_normal((2, 3, 3))
    yy, xx = np.meshgrid(np.linspace(0, 2, 20), np.linspace(0, 2, 17), indexing="ij")
    ref = np.stack([ndimage.map_coordinates(g[a], [yy, xx], order=3, mode="mirror")
                    for a in range(2)])
    field = np.einsum("yi,aij,xj->ayx", A.spline_matrix(20, 3), g, A.spline_matrix(17, 3))
    assert np.allclose(field, ref, atol=1e-12)


def test_random_displacement_statistics():
    """Normal control displacements of std sigma per axis, smooth in between."""
    rng = np.random.default_rng(0)
    fields = np.stack([A.random_displacement(28, 28, rng) for _ in range(400)])
    corners = fields[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert abs(corners.std() - 1.0) < 0.05 and abs(corners.mean()) < 0.05
    assert np.abs(np.diff(fields, axis=2)).max() < 1.0  # no jumps between neighbours


def test_one_deformation_per_batch_shared_by_its_images():
    x = _images(1).repeat(5, 1, 1)
    out = A.augment_batch(x, "elastic", seed=3, epoch=2, batch=7)
    assert all(torch.equal(out[i], out[0]) for i in range(5))
    assert not torch.equal(out[0], x[0])


def test_deterministic_for_seed_epoch_and_batch():
    x = _images().reshape(4, 784)
    a = A.augment_batch(x, "elastic", seed=1, epoch=1, batch=0)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, A.augment_batch(x, "elastic", seed=1, epoch=1, batch=0))
    for other in (dict(seed=2, epoch=1, batch=0), dict(seed=1, epoch=2, batch=0),
                  dict(seed=1, epoch=1, batch=1)):
        assert not torch.equal(a, A.augment_batch(x, "elastic", **other)), other
    # the global RNGs are neither used nor disturbed
    torch.manual_seed(0)
    np.random.seed(0)
    want = (torch.rand(1).item(), np.random.rand())
    torch.manual_seed(0)
    np.random.seed(0)
    A.augment_batch(x, "elastic", seed=1, epoch=1, batch=0)
    assert (torch.rand(1).item(), np.random.rand()) == want
    assert A.augment_batch(x, "none", seed=1, epoch=1, batch=0) is x


def test_bad_arguments():
    with pytest.raises(ValueError, match="augment must be one of none, elastic, got 'flip'"):
        A.augment_batch(_images(), "flip", seed=1, epoch=1, batch=0)
    with pytest.raises(ValueError, match="not square"):
        A.augment_batch(torch.zeros(2, 10, dtype=torch.uint8), "elastic", seed=1, epoch=1,
                        batch=0)
    with pytest.raises(ValueError, match=r"displacement must have shape \(2, 28, 28\)"):
        A.deform(_images(), np.zeros((2, 5, 5)))
