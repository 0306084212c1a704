"""Synthetic data: Homework 2's 2-D Gaussian sets."""

from __future__ import annotations

import numpy as np

from jvae.data.validate import _check_choice, _check_positive

__all__ = ["gaussian2d"]


def gaussian2d(mode: str = "univariate", count: int = 15000,
               seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 2-D Gaussian data of the homework (its ``generate_2d_data``).

    ``x = [2, 3] + (eps * [3, 1]) @ R`` with ``eps ~ N(0, I)``; ``R`` is the identity
    (``"univariate"``: independent coordinates) or a 45 degree rotation (``"multivariate"``:
    correlated coordinates). Uses a local ``np.random.RandomState(seed)``, so the result
    equals the notebook's (which calls ``np.random.seed(42)``) without touching global state.

    Args:
        mode: ``"univariate"`` or ``"multivariate"``.
        count: total number of points.
        seed: random seed.

    Returns:
        ``(train [int(0.7 * count), 2], test [count - int(0.7 * count), 2])``, float32.
    """
    _check_choice("mode", mode, ("univariate", "multivariate"))
    _check_positive("count", count)
    mean, sigma = [[2.0, 3.0]], [[3.0, 1.0]]
    if mode == "univariate":
        rotate = [[1.0, 0.0], [0.0, 1.0]]
    else:
        rotate = [[np.sqrt(2) / 2, np.sqrt(2) / 2], [-np.sqrt(2) / 2, np.sqrt(2) / 2]]
    rng = np.random.RandomState(seed)
    data = (mean + (rng.randn(count, 2) * sigma).dot(rotate)).astype("float32")
    cut = int(0.7 * count)
    return data[:cut], data[cut:]
