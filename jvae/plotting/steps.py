"""Curves against the global step: every training step's metrics, and the dev assessments.

The DPM2 notebook's two figures of a training log: the training ELBO, distortion D, rate R
(and the control variate's loss when there is one) of every optimiser step, and the dev
ELBO, D, R and importance-sampled log-likelihood L at the assessment points. The records are
those of ``steps.jsonl`` and ``dev.jsonl`` (:mod:`jvae.runs.steplog`): one dict per line with a
``"step"`` and ``"train/..."`` or ``"dev/..."`` values (scalars, or lists over seeds, which are
averaged). The per-epoch figure is :func:`jvae.plotting.save_curves`; both share its helpers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.transforms
import numpy as np

from jvae.plotting.curves import (_check_records, _curve_stats, _finish, _panel_axes, _present,
                                  _present_keys, metric_title)

__all__ = ["DEFAULT_STEP_KEYS", "DEFAULT_DEV_KEYS", "save_step_curves", "save_dev_curves",
           "save_compared_curves"]

# jvae's names (jvae.objectives aux, prefixed by jvae.runs.steplog); "train/cv_loss" is the
# notebook's name of the control-variate loss, kept for logs written in its style.
DEFAULT_STEP_KEYS = ("train/elbo", "train/distortion", "train/rate", "train/cv/baseline_loss",
                     "train/cv_loss")
DEFAULT_DEV_KEYS = ("dev/elbo", "dev/distortion", "dev/rate", "dev/log_likelihood")

_MAX_RAW_POINTS = 4000   # longer runs draw the raw values as a min-max band (fast to render)
_NATS = {"elbo", "distortion", "rate", "loss", "log_likelihood"}


def save_step_curves(records, path, keys=DEFAULT_STEP_KEYS, *, x_key: str = "step",
                     smooth: int | None = None, clip_quantile: float = 0.01,
                     title: str | None = None) -> Path:
    """Per-step training curves, one panel per key: a light raw line and a smoothed line.

    The smoothed line is a centred moving average over ``smooth`` steps (shorter windows at
    the ends). The y axis spans the ``clip_quantile`` to ``1 - clip_quantile`` quantiles of
    the raw values (plus a margin), so the first steps' large losses do not flatten the rest
    of the run; every point outside is marked on the axis edge at its step, and the panel
    says how many there are and the most extreme value. Arrays are built once
    per key, and past 4,000 steps the raw values are drawn as their range (minimum to
    maximum) over 2,000 consecutive buckets, so long runs plot quickly.

    Args:
      records: sequence of dicts, one per step, e.g. ``{"step": 12, "train/elbo": -101.3,
        "train/distortion": 90.2, "train/rate": 11.1}``; values may be lists over seeds
        (their mean is drawn). Records without a key's value are skipped in its panel.
      path: output file.
      keys: the keys to plot, in panel order; keys absent from every record are skipped.
      x_key: the step's name in each record (records without it use their 1-based index).
      smooth: moving-average window in steps; default ``max(1, N // 50)`` for ``N`` points;
        1 draws no smoothed line.
      clip_quantile: in ``[0, 0.5)``; 0 shows every point.
      title: optional figure title.

    Returns:
      The path written.

    Raises:
      ValueError: ``records`` is not a non-empty sequence of dicts, no key is present, or
        ``smooth``/``clip_quantile`` is out of range.
    """
    _check_records(records, "records", "step")
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if smooth is not None and (isinstance(smooth, bool) or int(smooth) != smooth or smooth < 1):
        raise ValueError(f"smooth must be a positive integer or None, got {smooth!r}")
    if not 0.0 <= clip_quantile < 0.5:
        raise ValueError(f"clip_quantile must lie in [0, 0.5), got {clip_quantile!r}")
    found = _present_keys(records, keys, "records")
    fig, axes = _panel_axes(len(found), title)
    for ax, key in zip(axes, found):
        x, y, _ = _curve_stats(records, key, x_key)
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        window = max(1, len(y) // 50) if smooth is None else int(smooth)
        ok = np.isfinite(y)          # a diverged step's NaN must not poison the average
        if ok.sum() > _MAX_RAW_POINTS:   # the raw line as its min-max envelope per bucket
            xb, lo, hi = _envelope(x[ok], y[ok], _MAX_RAW_POINTS // 2)
            ax.fill_between(xb, lo, hi, color="C0", alpha=0.3, linewidth=0,
                            label="per step (range)")
        else:
            ax.plot(x, y, color="C0", alpha=0.3 if window > 1 else 1.0, linewidth=0.6,
                    label="per step")
        if window > 1 and ok.any():
            ax.plot(x[ok], moving_average(y[ok], window), color="C0", linewidth=1.6,
                    label=f"moving average ({window} steps)")
        _robust_ylim(ax, y, clip_quantile, x, x_key)
        _label(ax, key, x_key)
    axes[0].legend(fontsize="small", loc="best")
    return _finish(fig, axes, len(found), path, title)


def save_dev_curves(records, path, keys=DEFAULT_DEV_KEYS, *, x_key: str = "step",
                    title: str | None = None) -> Path:
    """Dev-set assessments against the step: ELBO, D, R and L, one panel each, a marker at
    every evaluation point (a band of +- one standard deviation for lists over seeds).

    Args:
      records: sequence of dicts, one per assessment, e.g. ``{"step": 500, "dev/elbo": -98.2,
        "dev/distortion": 80.1, "dev/rate": 18.1, "dev/log_likelihood": -93.4}``.
      path: output file.
      keys: the keys to plot; keys absent from every record are skipped (a run without
        importance sampling has no ``dev/log_likelihood``).
      x_key: the step's name in each record.
      title: optional figure title.

    Returns:
      The path written.

    Raises:
      ValueError: ``records`` is not a non-empty sequence of dicts, or no key is present.
    """
    _check_records(records, "records", "assessment")
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    found = _present_keys(records, keys, "records")
    fig, axes = _panel_axes(len(found), title)
    for ax, key in zip(axes, found):
        x, mean, std = _curve_stats(records, key, x_key)
        order = np.argsort(x, kind="stable")
        x, mean, std = x[order], mean[order], std[order]
        ax.plot(x, mean, marker="o", markersize=3.5, linewidth=1.2, color="C1")
        if np.any(std > 0):
            ax.fill_between(x, mean - std, mean + std, color="C1", alpha=0.25, linewidth=0)
        _label(ax, key, x_key)
    return _finish(fig, axes, len(found), path, title)


def save_compared_curves(runs, path, metrics=("elbo", "distortion", "rate"), *,
                         x_key: str = "step", smooth: int | None = None,
                         clip_quantile: float = 0.01, title: str | None = None) -> Path:
    """Several runs' curves on shared panels, one panel per metric: Homework 2's comparison
    of the KL (rate) curves of the univariate and the multivariate data.

    Each run gives its per-step training records (``steps.jsonl``: ``"train/METRIC"``, drawn
    as a moving average over ``smooth`` steps) and optionally its per-epoch evaluation
    records (``metrics.jsonl``: ``"eval/METRIC"``, drawn as markers at each epoch's last
    step), as the homework's ``plot_training_curves`` draws training losses per batch and
    test losses per epoch. The y axis spans the ``clip_quantile`` to ``1 - clip_quantile``
    quantiles of all values shown (the first steps' losses are far off).

    Args:
      runs: mapping ``label -> (step_records, epoch_records or None)``.
      path: output file.
      metrics: metric names, one panel each (``"rate"`` is the KL term).
      x_key: the step's name in the records.
      smooth: moving-average window in steps (default ``max(1, N // 50)``).
      clip_quantile: in ``[0, 0.5)``.
      title: optional figure title.

    Returns:
      The path written.

    Raises:
      ValueError: no runs, a run without step records, or no metric present in any run.
    """
    if not runs:
        raise ValueError("save_compared_curves needs at least one run")
    for label, (steps, _) in runs.items():
        _check_records(steps, f"the step records of {label!r}", "step")
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    found = [m for m in metrics if any(_present(steps, f"train/{m}") for steps, _ in runs.values())]
    if not found:
        raise ValueError(f"none of the metrics {metrics} is present in the runs' step records")
    fig, axes = _panel_axes(len(found), title)
    for ax, metric in zip(axes, found):
        shown = []
        for i, (label, (steps, epochs)) in enumerate(runs.items()):
            colour = f"C{i}"
            if _present(steps, f"train/{metric}"):
                x, y, _ = _curve_stats(steps, f"train/{metric}", x_key)
                ok = np.isfinite(y)
                window = max(1, ok.sum() // 50) if smooth is None else int(smooth)
                ax.plot(x[ok], moving_average(y[ok], window), color=colour, linewidth=1.4,
                        label=f"{label}: train (per step, {window}-step average)")
                shown.append(y[ok])
            if epochs and _present(epochs, f"eval/{metric}"):
                x, y, _ = _curve_stats(epochs, f"eval/{metric}", x_key)
                ax.plot(x, y, color=colour, marker="o", markersize=4, linestyle="--",
                        linewidth=0.8, label=f"{label}: test (per epoch)")
                shown.append(y)
        _robust_ylim(ax, np.concatenate(shown) if shown else np.zeros(0), clip_quantile)
        _label(ax, metric, x_key)
    axes[0].legend(fontsize="x-small", loc="best")
    return _finish(fig, axes, len(found), path, title)


def moving_average(y, window: int) -> np.ndarray:
    """Centred moving average of ``y [N]`` over ``window`` points, shorter at the ends.

    Point ``i`` averages ``y[max(0, i - (window - 1) // 2) : i + window // 2 + 1]``; one
    cumulative sum, ``O(N)``; ``y`` must be finite.
    """
    y = np.asarray(y, np.float64)
    n = len(y)
    window = int(min(max(window, 1), max(n, 1)))
    lo = np.maximum(np.arange(n) - (window - 1) // 2, 0)
    hi = np.minimum(np.arange(n) + window // 2 + 1, n)
    c = np.concatenate([[0.0], np.cumsum(y)])
    return (c[hi] - c[lo]) / (hi - lo)


def _envelope(x: np.ndarray, y: np.ndarray, buckets: int):
    """``(x_mid, min, max)`` of ``y`` over ``buckets`` consecutive runs of (sorted) points."""
    starts = np.linspace(0, len(y), buckets + 1).astype(int)[:-1]
    starts = np.unique(starts)
    ends = np.append(starts[1:], len(y)) - 1
    return (0.5 * (x[starts] + x[ends]), np.minimum.reduceat(y, starts),
            np.maximum.reduceat(y, starts))


def _label(ax, key: str, x_key: str) -> None:
    split, sep, metric = key.partition("/")
    metric = metric if sep else key
    name = metric_title(metric)
    ax.set_title(f"{split} {name}" if sep else name)
    ax.set_xlabel(x_key)
    if metric in _NATS:
        ax.set_ylabel("nats per example")
    ax.grid(alpha=0.3)


def _robust_ylim(ax, y: np.ndarray, q: float, x: np.ndarray | None = None,
                 x_key: str = "step") -> None:
    """Limit the y axis to the ``q`` to ``1 - q`` quantiles of ``y`` (plus 10% of their span)
    and show what falls outside: a marker on the top (bottom) edge at the ``x`` of every
    point above (below) the axis, and a note of how many there are and the most extreme
    value (and its ``x``)."""
    keep = np.isfinite(y)
    finite = y[keep]
    if q <= 0 or finite.size < 20:
        return
    lo, hi = np.quantile(finite, [q, 1.0 - q])
    span = max(hi - lo, 1e-9)
    lo, hi = lo - 0.1 * span, hi + 0.1 * span
    xs = None if x is None else np.asarray(x, np.float64)[keep]
    outside = [(finite > hi, 1.0, "^", "above", np.argmax, "max"),
               (finite < lo, 0.0, "v", "below", np.argmin, "min")]
    if not any(mask.any() for mask, *_ in outside):
        return
    ax.set_ylim(lo, hi)
    edge = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
    for mask, at, marker, where, pick, word in outside:
        if not mask.any():
            continue
        values = finite[mask]
        k = int(pick(values))
        note = f"{int(mask.sum())} of {finite.size} points {where} the axis, {word} {values[k]:.4g}"
        if xs is not None:
            ax.plot(xs[mask], np.full(int(mask.sum()), at), linestyle="none", marker=marker,
                    markersize=4, color="C3", transform=edge, clip_on=False, zorder=5)
            note += f" ({x_key} {xs[mask][k]:g})"
        ax.text(0.98, 0.94 if at else 0.06, ("\u25b2 " if at else "\u25bc ") + note,
                transform=ax.transAxes, ha="right", va="top" if at else "bottom", fontsize=7,
                color="C3", bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0,
                                  "pad": 1.5}, zorder=6)
