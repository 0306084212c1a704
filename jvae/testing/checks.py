"""Statistical checks on gradient draws, each returning a small report.

Every check returns a frozen dataclass with the statistic, its standard error, whether it
passed and the worst coordinate (or pair). A report is truthy when it passed, so it works as
an assertion inside pytest, and ``report.assert_()`` raises ``AssertionError`` with the
report's text:

    assert check_unbiased(draws, exact)            # pytest shows the report on failure
    variance_ratio(a, b, below=1.0).assert_()

The standard errors are those of Monte Carlo averages over i.i.d. draws: the mean's
``std / sqrt(n)`` per coordinate, and for a total variance the standard error of the mean of
the per-draw squared deviations (delta method for ratios).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from jvae.data.arguments import check_number
__all__ = ["UnbiasedReport", "VarianceReport", "SNRReport", "OrderingReport", "check_unbiased",
           "variance_ratio", "snr", "check_bound_ordering", "total_variance"]


class _Report:
    """Truthiness, ``assert_()`` and a readable ``__str__`` for the report dataclasses."""

    passed: bool

    def __bool__(self) -> bool:
        return bool(self.passed)

    def assert_(self) -> "_Report":
        """Raise ``AssertionError(str(self))`` unless the check passed; returns ``self``."""
        if not self.passed:
            raise AssertionError(str(self))
        return self

    def __repr__(self) -> str:     # what pytest prints for ``assert report``
        return str(self)


def _as_draws(draws, name="draws") -> np.ndarray:
    try:
        d = np.asarray(draws, np.float64)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} must be an array [n, P] of numbers, got "
                         f"{type(draws).__name__} ({' '.join(str(e).split())[:120]}).") from None
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2 or d.shape[0] < 2:
        raise ValueError(f"{name} must be [n, P] with n >= 2 draws, got shape {np.shape(draws)}.")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"{name} contain non-finite values (at draws "
                         f"{np.flatnonzero(~np.isfinite(d).all(1))[:5].tolist()}).")
    return d


def _finite(values, name: str) -> np.ndarray:
    """``values`` as a float64 array, or one line naming ``name`` (not numbers, NaN/Inf)."""
    try:
        a = np.asarray(values, np.float64)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be numbers, got {type(values).__name__}.") from None
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf (at {np.flatnonzero(~np.isfinite(a))[:5].tolist()}).")
    return a


def _bounds(below, above) -> None:
    for name, value in (("below", below), ("above", above)):
        if value is not None:
            check_number(value, name)


def _columns(mask, p: int) -> np.ndarray:
    if mask is None:
        return np.arange(p)
    m = np.asarray(mask, bool)
    if m.shape != (p,):
        raise ValueError(f"mask must be [P={p}] booleans, got shape {m.shape}.")
    if not m.any():
        raise ValueError("mask selects no coordinate.")
    return np.flatnonzero(m)


@dataclasses.dataclass(frozen=True, repr=False)
class UnbiasedReport(_Report):
    """Result of :func:`check_unbiased`.

    Attributes:
      statistic: ``max_i |mean_i - reference_i| / se_i`` (z-score of the worst coordinate).
      standard_error: the standard error at the worst coordinate.
      passed: every coordinate within ``z * se + atol * (1 + |reference|)`` and the test
        informative (``relative_se < max_relative_se``).
      worst: index (in the flattened parameters) of the worst coordinate.
      z: the threshold in standard errors.
      num_failed: coordinates outside the bound.
      relative_se: median of ``se / |reference|`` over the coordinates whose reference is
        at least 5% of the largest (how informative the check is).
      max_relative_se: its threshold.
      num_draws: n.
      mean: the draws' mean at the worst coordinate; reference: the reference there.
    """

    statistic: float
    standard_error: float
    passed: bool
    worst: int
    z: float
    num_failed: int
    relative_se: float
    max_relative_se: float
    num_draws: int
    mean: float
    reference: float

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        why = ""
        if self.num_failed:
            why = f"; {self.num_failed} coordinate(s) beyond {self.z:g} se"
        if not self.relative_se < self.max_relative_se:
            why += (f"; uninformative: median se/|reference| {self.relative_se:.3g} >= "
                    f"{self.max_relative_se:g}")
        return (f"unbiased {verdict}: max |bias|/se = {self.statistic:.2f} (threshold "
                f"{self.z:g}) at coordinate {self.worst} (mean {self.mean:.5g}, reference "
                f"{self.reference:.5g}, se {self.standard_error:.3g}); median se/|reference| "
                f"{self.relative_se:.3g}; n = {self.num_draws}{why}")


def check_unbiased(draws, reference, *, reference_se=0.0, z: float = 4.5, atol: float = 1e-4,
                   max_relative_se: float = 0.5, mask=None) -> UnbiasedReport:
    """Is the draws' mean the reference, within ``z`` standard errors per coordinate?

    A coordinate fails when ``|mean - reference| > z * se + atol * (1 + |reference|)`` with
    ``se = sqrt(var / n + reference_se^2)`` (``atol`` absorbs float32 rounding where the
    variance is ~0). With P coordinates a correct estimator fails with probability about
    ``P * 2 Phi(-z)`` (z = 4.5, P = 40: ~3e-4). The check also requires that it means
    something: on the coordinates whose reference is at least 5% of the largest, the median
    ``se / |reference|`` is below ``max_relative_se`` (draw more otherwise).

    Args:
      draws: ``[n, P]`` gradient draws (:func:`jvae.testing.gradient_draws`).
      reference: ``[P]`` the expected gradient (exact, or another estimator's mean).
      reference_se: ``[P]`` or scalar standard error of the reference (0 if exact).
      z: threshold in standard errors.
      atol: relative slack, see above.
      max_relative_se: threshold of the informativeness condition.
      mask: optional ``[P]`` booleans, the coordinates to check.

    Returns:
      An :class:`UnbiasedReport` (truthy when it passed).
    """
    d = _as_draws(draws)
    ref = _finite(reference, "reference").reshape(-1)
    if ref.shape != (d.shape[1],):
        raise ValueError(f"reference must be [P={d.shape[1]}], got shape {np.shape(reference)}.")
    z = check_number(z, "z", low=0.0, low_open=True)
    atol = check_number(atol, "atol", low=0.0)
    max_relative_se = check_number(max_relative_se, "max_relative_se", low=0.0, low_open=True)
    ref_se = _finite(reference_se, "reference_se")
    if np.any(ref_se < 0):
        raise ValueError("reference_se must be >= 0 (a standard error).")
    try:
        ref_se = np.broadcast_to(ref_se, ref.shape)
    except ValueError:
        raise ValueError(f"reference_se must be a scalar or [P={ref.shape[0]}], got shape "
                         f"{ref_se.shape}.") from None
    cols = _columns(mask, d.shape[1])
    d, ref, ref_se = d[:, cols], ref[cols], ref_se[cols]
    mean = d.mean(0)
    se = np.sqrt(d.var(0) / len(d) + ref_se**2)
    err = np.abs(mean - ref)
    bad = err > z * se + atol * (1 + np.abs(ref))
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(se > 0, err / se, np.where(err > 0, np.inf, 0.0))
    worst = int(np.argmax(np.where(bad, zs, -1.0))) if bad.any() else int(np.argmax(zs))
    big = np.abs(ref) > 0.05 * np.abs(ref).max()
    rel = float(np.median(se[big] / np.abs(ref[big]))) if big.any() else math.inf
    passed = bool(not bad.any() and rel < max_relative_se)
    return UnbiasedReport(float(zs[worst]), float(se[worst]), passed, int(cols[worst]), float(z),
                          int(bad.sum()), rel, float(max_relative_se), int(len(d)),
                          float(mean[worst]), float(ref[worst]))


def total_variance(draws, mask=None) -> tuple[float, float]:
    """``tr Cov[g]`` over the (masked) coordinates and its standard error.

    ``T = mean_i |g_i - mean g|^2`` (the sum of per-coordinate population variances) with
    the standard error ``std_i |g_i - mean g|^2 / sqrt(n)``.
    """
    d = _as_draws(draws)
    d = d[:, _columns(mask, d.shape[1])]
    sq = np.sum((d - d.mean(0)) ** 2, axis=1)                       # [n]
    return float(sq.mean()), float(sq.std() / math.sqrt(len(sq)))


def _verdict(passed: bool, above: float | None, below: float | None) -> str:
    """`` PASS (wanted > a and < b)`` for a bounded report, ``""`` for an unbounded one."""
    bounds = " and ".join(b for b in (f"> {above:g}" if above is not None else "",
                                      f"< {below:g}" if below is not None else "") if b)
    return f" {'PASS' if passed else 'FAIL'} (wanted {bounds})" if bounds else ""


@dataclasses.dataclass(frozen=True, repr=False)
class VarianceReport(_Report):
    """Result of :func:`variance_ratio`.

    Attributes:
      statistic: ``tr Cov[a] / tr Cov[b]`` over the selected coordinates.
      standard_error: its standard error (delta method, independent ``a`` and ``b``).
      passed: within the requested bounds (``below``, ``above``; True if none).
      worst: the coordinate with the largest (or, with only ``above``, the smallest)
        per-coordinate variance ratio.
      below, above: the bounds (``None`` when not requested).
      variance_a, variance_b: the two total variances.
      num_draws: ``(n_a, n_b)``.
    """

    statistic: float
    standard_error: float
    passed: bool
    worst: int
    below: float | None
    above: float | None
    variance_a: float
    variance_b: float
    num_draws: tuple[int, int]

    def __str__(self) -> str:
        verdict = _verdict(self.passed, self.above, self.below)
        return (f"variance ratio{verdict}: {self.statistic:.4g} +- {self.standard_error:.2g} "
                f"(tr Cov {self.variance_a:.4g} / {self.variance_b:.4g}); worst coordinate "
                f"{self.worst}; n = {self.num_draws[0]}, {self.num_draws[1]}")


def variance_ratio(draws_a, draws_b, *, mask=None, below: float | None = None,
                   above: float | None = None) -> VarianceReport:
    """The ratio of total variances ``tr Cov[a] / tr Cov[b]``, optionally bounded.

    Args:
      draws_a: ``[n_a, P]`` draws of one estimator.
      draws_b: ``[n_b, P]`` draws of another (the reference, e.g. reparameterised).
      mask: optional ``[P]`` booleans (e.g. the inference network, :func:`param_mask`).
      below: pass only if the ratio is below this (``below=1``: ``a`` has lower variance).
      above: pass only if the ratio is above this.

    Returns:
      A :class:`VarianceReport` (truthy when within the bounds).
    """
    _bounds(below, above)
    a, b = _as_draws(draws_a, "draws_a"), _as_draws(draws_b, "draws_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"draws_a and draws_b have {a.shape[1]} and {b.shape[1]} coordinates.")
    cols = _columns(mask, a.shape[1])
    va, sa = total_variance(a, mask)
    vb, sb = total_variance(b, mask)
    if not vb > 0:
        raise ValueError("draws_b have zero variance on the selected coordinates.")
    ratio = va / vb
    se = ratio * math.sqrt((sa / va) ** 2 + (sb / vb) ** 2) if va > 0 else sb * 0.0
    passed = (below is None or ratio < below) and (above is None or ratio > above)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = a[:, cols].var(0) / b[:, cols].var(0)
    per = np.nan_to_num(per, nan=1.0, posinf=np.inf)
    worst = int(cols[np.argmin(per) if (above is not None and below is None) else np.argmax(per)])
    return VarianceReport(float(ratio), float(se), bool(passed), worst, below, above, va, vb,
                          (len(a), len(b)))


@dataclasses.dataclass(frozen=True, repr=False)
class SNRReport(_Report):
    """Result of :func:`snr`.

    Attributes:
      statistic: the median over the selected coordinates of ``|mean_i| / std_i``.
      standard_error: the median of the per-coordinate standard errors,
        ``sqrt((1 + snr_i^2 / 2) / n)`` (delta method for Gaussian draws).
      passed: within the requested bounds (True if none).
      worst: the coordinate with the lowest SNR.
      values: ``[P']`` the per-coordinate SNRs of the selected coordinates.
      below, above: the bounds; num_draws: n.
    """

    statistic: float
    standard_error: float
    passed: bool
    worst: int
    values: np.ndarray
    below: float | None
    above: float | None
    num_draws: int

    def __str__(self) -> str:
        verdict = _verdict(self.passed, self.above, self.below)
        return (f"SNR{verdict}: median |mean|/std {self.statistic:.4g} +- "
                f"{self.standard_error:.2g} over {len(self.values)} coordinates; lowest at "
                f"coordinate {self.worst}; n = {self.num_draws}")


def snr(draws, *, mask=None, below: float | None = None,
        above: float | None = None) -> SNRReport:
    """Signal-to-noise ratio of a gradient estimator, ``|E g_i| / std g_i`` per coordinate.

    The median over coordinates is the statistic of Rainforth et al. (2018, "Tighter
    variational bounds are not necessarily better"), whose IWAE inference-gradient SNR
    decays like ``1/sqrt(K)``.

    Args:
      draws: ``[n, P]``.
      mask: optional ``[P]`` booleans.
      below: pass only if the median is below this.
      above: pass only if the median is above this.

    Returns:
      An :class:`SNRReport`.
    """
    _bounds(below, above)
    d = _as_draws(draws)
    cols = _columns(mask, d.shape[1])
    d = d[:, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.abs(d.mean(0)) / d.std(0)
    values = np.nan_to_num(values, nan=0.0)
    stat = float(np.median(values))
    se = float(np.median(np.sqrt((1 + np.minimum(values, 1e12) ** 2 / 2) / len(d))))
    passed = (below is None or stat < below) and (above is None or stat > above)
    return SNRReport(stat, se, bool(passed), int(cols[np.argmin(values)]), values, below, above,
                     int(len(d)))


@dataclasses.dataclass(frozen=True, repr=False)
class OrderingReport(_Report):
    """Result of :func:`check_bound_ordering`.

    Attributes:
      statistic: the smallest margin ``(mean_{i+1} - mean_i) / se_i`` over consecutive pairs
        (for the ``upper`` limit: ``(upper - mean_last) / se_last``).
      standard_error: ``se_i`` of that pair's lower bound.
      passed: every pair ordered by more than ``z`` standard errors of its lower member and
        every mean below ``upper``.
      worst: the label of the lower member of the tightest pair.
      labels, means, standard_errors: the bounds as given.
      z: the threshold; upper: the limit (or ``None``).
    """

    statistic: float
    standard_error: float
    passed: bool
    worst: str
    labels: tuple
    means: tuple
    standard_errors: tuple
    z: float
    upper: float | None

    def __str__(self) -> str:
        chain = " < ".join(f"{lab}: {m:.4f} (se {s:.2g})" for lab, m, s in
                           zip(self.labels, self.means, self.standard_errors))
        if self.upper is not None:
            chain += f" < limit {self.upper:.4f}"
        return (f"bound ordering {'PASS' if self.passed else 'FAIL'}: {chain}; tightest "
                f"margin {self.statistic:.2f} se after {self.worst} (threshold {self.z:g})")


def check_bound_ordering(bounds: Mapping | Sequence, *, z: float = 3.0,
                         upper: float | None = None) -> OrderingReport:
    """Are Monte Carlo estimates of bounds ordered, ``L_1 < L_2 < ... (< upper)``?

    Pair ``(i, i+1)`` passes when ``mean_i + z * se_i < mean_{i+1}``; with ``upper`` (an
    exact limit such as ``log p(x)``) every mean must also be below it. For the IWAE bounds,
    ``ELBO = L_1 <= L_k <= L_K <= log p(x)`` for ``k < K`` (Burda et al., 2016).

    Args:
      bounds: in increasing order: a mapping ``label -> value`` or a sequence of values,
        each value either a pair ``(mean, se)`` or a 1-D array of i.i.d. estimates (its
        mean and ``std / sqrt(n)`` are used).
      z: threshold in standard errors.
      upper: optional exact upper limit.

    Returns:
      An :class:`OrderingReport`.
    """
    z = check_number(z, "z", low=0.0)
    items = list(bounds.items()) if isinstance(bounds, Mapping) else list(enumerate(bounds))
    if len(items) < (1 if upper is not None else 2):
        raise ValueError("check_bound_ordering needs at least two bounds (or one and upper=).")
    labels, means, ses = [], [], []
    for label, value in items:
        if isinstance(value, tuple) and len(value) == 2:
            m, s = (check_number(v, f"bound {label!r}") for v in value)
        else:
            v = _finite(value, f"bound {label!r}")
            if v.ndim != 1 or len(v) < 2:
                raise ValueError(f"bound {label!r}: give (mean, se) or a 1-D array of "
                                 f"estimates, got shape {v.shape}.")
            m, s = float(v.mean()), float(v.std() / math.sqrt(len(v)))
        if not (math.isfinite(m) and math.isfinite(s) and s >= 0):
            raise ValueError(f"bound {label!r}: mean {m} and se {s} must be finite, se >= 0.")
        labels.append(str(label))
        means.append(m)
        ses.append(s)
    margins, ok = [], True
    for i in range(len(means) - 1):
        ok &= means[i] + z * ses[i] < means[i + 1]
        margins.append((means[i + 1] - means[i]) / ses[i] if ses[i] > 0 else
                       math.copysign(math.inf, means[i + 1] - means[i]))
    if upper is not None:
        ok &= all(m < upper for m in means)
        margins.append((upper - means[-1]) / ses[-1] if ses[-1] > 0 else
                       math.copysign(math.inf, upper - means[-1]))
    i = int(np.argmin(margins))
    return OrderingReport(float(margins[i]), float(ses[i]), bool(ok), labels[i], tuple(labels),
                          tuple(means), tuple(ses), float(z),
                          None if upper is None else float(upper))
