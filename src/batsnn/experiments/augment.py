"""Elastic deformation of training images (model.md section 5: the conv experiment).

One random deformation per batch, shared by all of its images: a coarse grid of
``points x points`` control points, evenly spread over the image (the first and last on its
edges), each displaced by normal noise of standard deviation ``sigma`` pixels along each
axis; the displacements are interpolated to every pixel with a cubic spline (a tensor
product of 1-D interpolating cubic splines with zero slope at the ends: the spline of the
control values mirrored at the edges, as B-spline interpolation with mirrored boundaries
gives), and each output pixel takes the input pixel nearest to its displaced position
(nearest-neighbour sampling, zero outside the image). This follows what
``elasticdeform.deform_random_grid(images, sigma=1.0, points=2, order=0)`` describes; it is
written here with numpy and torch.

The randomness of a batch comes from its own generator, seeded from the run's seed, the
epoch and the batch's index in the epoch (:func:`batch_generator`): the same run makes the
same deformations, and a resumed run continues exactly. Only training batches are
deformed, before encoding; test data never is. The deformation of a batch is computed on
the images' device from its control displacements (:func:`deform_by_grid`), so a training
step that deforms its batch can run as a CUDA graph, the control displacements being one of
its inputs.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["AUGMENTATIONS", "augment_batch", "batch_generator", "batch_grid", "deform",
           "deform_by_grid", "grid_displacement", "random_displacement", "random_grid",
           "spline_matrix"]

#: the values of the ``augment`` setting
AUGMENTATIONS = ("none", "elastic")
#: the conv experiment's deformation: displacement std (pixels) and control points per axis
SIGMA = 1.0
POINTS = 2


def spline_matrix(length: int, points: int) -> np.ndarray:
    """``(length, points)`` float64 matrix ``S``: ``S @ v`` is the cubic spline through the
    values ``v`` of ``points`` evenly spread control points (the first at pixel 0, the last
    at pixel ``length - 1``) evaluated at every pixel; the spline interpolates the control
    values, is twice continuously differentiable and has zero slope at both ends (two
    points: ``v0 + (v1 - v0) (3 s^2 - 2 s^3)``, ``s = y / (length - 1)``)."""
    if points < 2 or length < 1:
        raise ValueError(f"need points >= 2 and length >= 1, got points={points}, "
                         f"length={length}")
    n = points
    # knot slopes m = A^-1 D v: m_0 = m_{n-1} = 0, m_{i-1} + 4 m_i + m_{i+1} = 3 (v_{i+1} - v_{i-1})
    a = np.eye(n)
    d = np.zeros((n, n))
    for i in range(1, n - 1):
        a[i, i - 1:i + 2] = (1.0, 4.0, 1.0)
        d[i, i + 1], d[i, i - 1] = 3.0, -3.0
    slopes = np.linalg.solve(a, d)  # (n, n): slopes of the spline of each unit vector
    u = np.linspace(0.0, n - 1.0, length) if length > 1 else np.zeros(1)
    seg = np.minimum(np.floor(u).astype(int), n - 2)
    s = u - seg
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    out = np.zeros((length, n))
    rows = np.arange(length)
    out[rows, seg] += h00
    out[rows, seg + 1] += h01
    out += h10[:, None] * slopes[seg] + h11[:, None] * slopes[seg + 1]
    return out


def random_grid(gen: np.random.Generator, *, sigma: float = SIGMA,
                points: int = POINTS) -> np.ndarray:
    """The control displacements of one deformation: ``(2, points, points)`` float64 drawn
    from ``N(0, sigma^2)`` with ``gen`` (rows, then columns)."""
    return gen.standard_normal((2, points, points)) * sigma


_SPLINES: dict = {}


def _spline(length: int, points: int, device) -> torch.Tensor:
    key = (length, points, str(device))
    s = _SPLINES.get(key)
    if s is None:
        s = _SPLINES[key] = torch.as_tensor(spline_matrix(length, points),
                                            dtype=torch.float64).to(device)
    return s


def grid_displacement(grid, height: int, width: int) -> torch.Tensor:
    """The displacement field ``(2, height, width)`` float64 of control displacements
    ``grid (2, P, P)``, interpolated by :func:`spline_matrix` along both axes; on the
    device of ``grid`` when it is a tensor (no host synchronisation: a step that deforms its
    batch this way can be recorded as a CUDA graph)."""
    g = torch.as_tensor(grid, dtype=torch.float64)
    if g.dim() != 3 or g.shape[0] != 2 or g.shape[1] != g.shape[2] or g.shape[1] < 2:
        raise ValueError(f"grid must have shape (2, P, P) with P >= 2, got {tuple(g.shape)}")
    points = g.shape[1]
    return torch.einsum("yi,aij,xj->ayx", _spline(height, points, g.device), g,
                        _spline(width, points, g.device))


def random_displacement(height: int, width: int, gen: np.random.Generator, *,
                        sigma: float = SIGMA, points: int = POINTS) -> np.ndarray:
    """A random displacement field ``(2, height, width)`` float64 in pixels (rows, then
    columns): :func:`random_grid` interpolated by :func:`grid_displacement`."""
    grid = random_grid(gen, sigma=sigma, points=points)
    return grid_displacement(torch.from_numpy(grid), height, width).numpy()


def deform(images: torch.Tensor, displacement) -> torch.Tensor:
    """Apply one displacement field to every image, nearest-neighbour: output pixel
    ``(y, x)`` is the input pixel at ``(round(y + dy), round(x + dx))`` (halves round up),
    zero when that lies outside the image. Computed on the images' device.

    Args:
        images: ``(B, H, W)`` images of any dtype, on any device.
        displacement: ``(2, H, W)`` array or tensor of ``(dy, dx)`` in pixels.

    Returns:
        ``(B, H, W)``, the dtype and device of ``images``.
    """
    n_batch, h, w = images.shape
    dev = images.device
    d = torch.as_tensor(displacement, dtype=torch.float64).to(dev)
    if d.shape != (2, h, w):
        raise ValueError(f"displacement must have shape (2, {h}, {w}), got {tuple(d.shape)}")
    yy = torch.arange(h, dtype=torch.float64, device=dev).view(h, 1)
    xx = torch.arange(w, dtype=torch.float64, device=dev).view(1, w)
    sy = torch.floor(yy + d[0] + 0.5).long()
    sx = torch.floor(xx + d[1] + 0.5).long()
    inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    src = torch.where(inside, sy * w + sx, 0).reshape(-1)
    flat = images.reshape(n_batch, h * w)[:, src]
    return torch.where(inside.reshape(-1), flat, torch.zeros_like(flat)).reshape(n_batch, h, w)


def batch_generator(seed: int, epoch: int, batch: int) -> np.random.Generator:
    """The generator of one training batch's deformation: seeded from the run's ``seed``,
    the ``epoch`` (1-based) and the ``batch`` index in the epoch (0-based) only."""
    return np.random.default_rng([int(seed) % 2**63, int(epoch), int(batch)])


def _check_kind(kind: str) -> None:
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {kind!r}")


def batch_grid(kind: str, *, seed: int, epoch: int, batch: int) -> torch.Tensor | None:
    """The control displacements ``(2, P, P)`` float64 (CPU) of one training batch's
    deformation (:func:`random_grid` from :func:`batch_generator`), or ``None`` for
    ``kind == "none"``."""
    _check_kind(kind)
    if kind == "none":
        return None
    return torch.from_numpy(random_grid(batch_generator(seed, epoch, batch)))


def _image_shape(images: torch.Tensor, image_shape) -> tuple[int, int]:
    if images.dim() == 3:
        return tuple(images.shape[1:])
    if image_shape is None:
        side = int(round(images.shape[1] ** 0.5))
        if side * side != images.shape[1]:
            raise ValueError(f"images of {images.shape[1]} pixels are not square: give "
                             "image_shape")
        image_shape = (side, side)
    return tuple(image_shape)


def deform_by_grid(images: torch.Tensor, grid,
                   image_shape: tuple[int, int] | None = None) -> torch.Tensor:
    """``images`` (``(B, H, W)`` or flat ``(B, H * W)``, square unless ``image_shape``)
    deformed by the control displacements ``grid (2, P, P)``, every image alike, on the
    images' device; returns them in their own shape and dtype."""
    h, w = _image_shape(images, image_shape)
    grid = torch.as_tensor(grid, dtype=torch.float64).to(images.device)
    out = deform(images.reshape(images.shape[0], h, w), grid_displacement(grid, h, w))
    return out.reshape(images.shape)


def augment_batch(images: torch.Tensor, kind: str, *, seed: int, epoch: int, batch: int,
                  image_shape: tuple[int, int] | None = None) -> torch.Tensor:
    """One training batch, deformed per ``kind`` (:data:`AUGMENTATIONS`): ``"none"`` returns
    ``images`` itself; ``"elastic"`` draws one deformation (:func:`batch_grid`, ``sigma`` 1
    pixel, 2 x 2 control points) and applies it to every image (:func:`deform_by_grid`).

    Args:
        images: ``(B, H, W)`` or flat ``(B, H * W)`` images (uint8 pixels, say).
        kind: ``"none"`` or ``"elastic"``.
        seed, epoch, batch: the run's seed, the epoch and the batch's index in it.
        image_shape: ``(H, W)`` of flat images (default: square).

    Returns:
        the images in their own shape, dtype and device.
    """
    grid = batch_grid(kind, seed=seed, epoch=epoch, batch=batch)
    if grid is None:
        return images
    return deform_by_grid(images, grid, image_shape)
