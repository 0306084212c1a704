"""Signal-to-noise ratio of a gradient estimator per parameter group over many points, and
its scaling law against a size (the number of importance samples K).

Rainforth et al. (2018, "Tighter variational bounds are not necessarily better") define the
SNR of one gradient coordinate as ``|E g_i| / std g_i`` and show that for the IWAE bound it
falls like ``K^(-1/2)`` for the inference network and grows like ``K^(1/2)`` for the
generative network; Tucker et al. (2019, DReG) show their doubly reparameterised estimator's
inference SNR growing with K. Both laws are slopes in log-log coordinates:

    m = gradient_moments_at_points(loss, params_at_points, x_at_points, n, key)  # [P, N]
    s = group_snr(m, param_mask(params, "posterior"))    # one group, over P points
    fit = loglog_slope(ks, [s_k.per_point for s_k in ...], resolved=[...])

:func:`group_snr` summarises a group by the root mean square of its coordinates' SNRs over
points and coordinates, with each squared SNR debiased: ``E[mean_hat^2] = mu^2 + sigma^2/n``,
so ``mean_hat^2 / var_hat - 1/n`` estimates ``SNR^2`` without the upward bias the noise of
``n`` draws gives ``|mean_hat| / std_hat`` (whose value at zero signal, its *noise floor*,
is about ``sqrt(2 / (pi n))``). Averaged over many coordinates and points, the debiased
statistic resolves SNRs far below ``1/sqrt(n)``; whether it does is decided from its spread
over points (``resolved``). :func:`loglog_slope` fits ``log SNR = a + s log K`` to the
resolved sizes and gives a bootstrap interval for ``s`` by resampling the points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jvae.testing.moments import Moments

__all__ = ["GroupSNR", "SlopeFit", "group_snr", "loglog_slope"]


class GroupSNR(NamedTuple):
    """SNR of one parameter group over ``P`` points (see :func:`group_snr`).

    Attributes:
      snr: root mean square SNR over points and coordinates, each ``SNR_i^2`` debiased
        (``nan`` when the mean debiased square is not positive).
      mean_abs: the plain statistic, ``|mean_hat| / std_hat`` averaged over points and
        coordinates (biased upwards by the draws' noise; compare with ``floor``).
      floor: ``sqrt(2 / (pi n))``, what ``mean_abs`` shows at zero signal.
      standard_error: of the mean debiased ``SNR^2`` over points (their spread / ``sqrt(P)``).
      resolved: the mean debiased ``SNR^2`` exceeds ``z`` standard errors.
      per_point: ``[P]`` each point's mean debiased ``SNR^2`` over the group's coordinates.
      draws: ``n``, the draws per point.
    """

    snr: float
    mean_abs: float
    floor: float
    standard_error: float
    resolved: bool
    per_point: np.ndarray
    draws: int


class SlopeFit(NamedTuple):
    """A log-log slope with its bootstrap interval (see :func:`loglog_slope`).

    Attributes:
      slope: least-squares slope of ``log SNR`` against ``log K`` over ``sizes``.
      low, high: the ``level`` bootstrap percentile interval of the slope.
      sizes: the sizes fitted (the resolved ones).
      level: the interval's coverage, e.g. 0.95.
      num_boot: bootstrap replicates (over points) that could be fitted.
    """

    slope: float
    low: float
    high: float
    sizes: tuple
    level: float
    num_boot: int


def group_snr(moments: Moments, mask=None, *, z: float = 3.0,
              signal: Moments | None = None) -> GroupSNR:
    """The SNR of a parameter group at ``P`` points, from their gradient moments.

    Args:
      moments: ``Moments(n, mean [P, N], m2 [P, N])`` (e.g.
        :func:`~jvae.testing.gradient_moments_at_points`) or a single point's ``[N]``.
      mask: ``[N]`` booleans selecting the group (:func:`~jvae.testing.param_mask`);
        default every coordinate. Coordinates with zero variance at a point are left out
        (a parameter the estimator never moves).
      z: standard errors the mean debiased ``SNR^2`` must exceed to count as resolved.
      signal: moments of another estimator with the same expectation at the same points
        (e.g. DReG for the IWAE gradient: both unbiased for ``grad L_K``, Tucker et al.,
        2019), whose mean (debiased by its own ``var / n``) is used as ``E g`` while
        ``moments`` gives ``std g``: the SNR of a noisy estimator resolved with the draws
        of a quiet one. ``mean_abs`` then uses ``signal``'s mean too.

    Returns:
      A :class:`GroupSNR`.
    """
    n = int(moments.count)
    if n < 2:
        raise ValueError(f"group_snr needs at least 2 draws per point, got {n}.")
    mean = np.atleast_2d(np.asarray(moments.mean, np.float64))
    var = np.atleast_2d(np.asarray(moments.m2, np.float64)) / (n - 1)
    noise = var / n                                   # the variance of the mean estimate
    if signal is not None:
        if int(signal.count) < 2 or np.shape(signal.mean) != np.shape(moments.mean):
            raise ValueError(f"signal must have >= 2 draws and the shape {np.shape(moments.mean)}"
                             f" of moments' mean, got {np.shape(signal.mean)}.")
        mean = np.atleast_2d(np.asarray(signal.mean, np.float64))
        noise = np.atleast_2d(np.asarray(signal.m2, np.float64)) / ((signal.count - 1)
                                                                    * signal.count)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != (mean.shape[1],):
            raise ValueError(f"mask must be [{mean.shape[1]}] booleans, got shape {mask.shape}.")
        if not mask.any():
            raise ValueError("mask selects no coordinate.")
        mean, var, noise = mean[:, mask], var[:, mask], noise[:, mask]
    live = var > 0
    if not live.any(axis=1).all():
        raise ValueError("a point has zero variance in every coordinate of the group.")
    with np.errstate(divide="ignore", invalid="ignore"):
        sq = np.where(live, (mean ** 2 - noise) / var, np.nan)
        plain = np.where(live, np.abs(mean) / np.sqrt(var), np.nan)
    per_point = np.nanmean(sq, axis=1)
    avg = float(per_point.mean())
    p = per_point.size
    se = float(per_point.std(ddof=1) / math.sqrt(p)) if p > 1 else float("nan")
    resolved = bool(avg > 0 and (p == 1 or avg > z * se))
    return GroupSNR(math.sqrt(avg) if avg > 0 else float("nan"), float(np.nanmean(plain)),
                    math.sqrt(2.0 / (math.pi * n)), se, resolved, per_point, n)


def loglog_slope(sizes: Sequence[float], per_point, *, resolved: Sequence[bool] | None = None,
                 num_boot: int = 2000, level: float = 0.95, seed: int = 0) -> SlopeFit:
    """Fit ``log SNR(K) = a + s log K``, with a bootstrap interval over the points.

    ``SNR(K) = sqrt(mean_p per_point[K, p])`` (:attr:`GroupSNR.per_point`, the debiased
    mean squares); the same points must be measured at every size (paired), so a bootstrap
    replicate resamples point indices once and recomputes every size's SNR from them. A
    replicate in which some fitted size's mean square is not positive is dropped.

    Args:
      sizes: ``[S]`` the sizes (e.g. K), positive.
      per_point: ``[S, P]`` per-point mean debiased squared SNRs.
      resolved: ``[S]`` which sizes to fit (default all); at least two.
      num_boot: bootstrap replicates.
      level: the interval's coverage.
      seed: the bootstrap's ``numpy.random.default_rng`` seed.

    Returns:
      A :class:`SlopeFit`.
    """
    k = np.asarray(sizes, np.float64)
    sq = np.asarray(per_point, np.float64)
    if sq.ndim != 2 or sq.shape[0] != k.size:
        raise ValueError(f"per_point must be [{k.size}, P], got shape {sq.shape}.")
    if np.any(k <= 0):
        raise ValueError("sizes must be positive.")
    use = np.ones(k.size, bool) if resolved is None else np.asarray(resolved, bool)
    if use.sum() < 2:
        raise ValueError(f"a slope needs at least two resolved sizes, got {int(use.sum())}.")
    logk, sq = np.log(k[use]), sq[use]

    def fit(rows):                                        # rows [S_used, P'] -> slope or nan
        avg = rows.mean(axis=1)
        if np.any(avg <= 0):
            return float("nan")
        return float(np.polyfit(logk, 0.5 * np.log(avg), 1)[0])

    slope = fit(sq)
    rng = np.random.default_rng(seed)
    p = sq.shape[1]
    boots = np.array([fit(sq[:, rng.integers(0, p, p)]) for _ in range(int(num_boot))])
    boots = boots[np.isfinite(boots)]
    tail = 50.0 * (1.0 - level)
    low, high = (np.percentile(boots, [tail, 100.0 - tail]) if boots.size
                 else (float("nan"), float("nan")))
    return SlopeFit(slope, float(low), float(high), tuple(float(v) for v in k[use]), level,
                    int(boots.size))
