"""Training curves: one panel per metric, the train and evaluation values overlaid."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jvae.plotting._common import _figure, _save

__all__ = ["DEFAULT_CURVE_KEYS", "save_curves"]

DEFAULT_CURVE_KEYS = ("train/elbo", "eval/elbo", "train/distortion", "eval/distortion",
                      "train/rate", "eval/rate")

_SPLIT_LABELS = {"train": "train (mean over the epoch)", "eval": "eval (end of epoch)"}

_METRIC_TITLES = {"elbo": "ELBO", "distortion": "distortion D", "rate": "rate R",
                  "loss": "loss (negative bound)"}


def save_curves(history, path, keys=DEFAULT_CURVE_KEYS, x_key: str = "epoch",
                units: str | None = "nats per example", title: str | None = None) -> Path:
    """Plots training curves, one panel per metric, the splits of a metric overlaid.

    A key ``"SPLIT/METRIC"`` (``"train/elbo"``, ``"eval/elbo"``) is drawn in the panel of
    ``METRIC`` as a line labelled by its split, so the train and evaluation ELBO share axes and
    over-fitting shows as the two lines parting. Train values are means over the epoch's
    batches (the parameters move during the epoch), evaluation values are taken at the end of
    the epoch. With the default keys, a history without ``train/elbo`` (an objective that
    reports only its loss) gets a ``loss`` panel from ``train/loss`` instead.

    Values may be scalars or lists of per-seed values (multi-seed runs); for lists the mean is
    drawn with a shaded band of +- one standard deviation across seeds. ``None`` and missing
    values are skipped.

    Args:
      history: sequence of dicts, one per epoch, as read from ``metrics.jsonl``.
      path: output file.
      keys: metric names to plot; those absent from every entry are skipped.
      x_key: name of the x value in each entry; entries without it use their 1-based index.
      units: y-axis label of every panel (jvae's losses, ELBOs, distortions and rates are all
        in nats per example); ``None`` for none.
      title: optional figure title.

    Returns:
      The path written.

    Raises:
      ValueError: if ``history`` is empty or not a sequence of dicts, or no key is present.
    """
    if isinstance(history, Mapping) or not isinstance(history, Sequence) or len(history) == 0:
        raise ValueError("history must be a non-empty sequence of dicts (one per epoch)")
    if not all(isinstance(entry, Mapping) for entry in history):
        raise ValueError("every history entry must be a dict")
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)

    def present(key):
        return any(entry.get(key) is not None for entry in history)

    if keys == DEFAULT_CURVE_KEYS and not present("train/elbo") and present("train/loss"):
        keys = keys + ("train/loss",)
    found = [k for k in keys if present(k)]
    if not found:
        raise ValueError(f"none of the keys {tuple(keys)} is present in the history")
    panels: dict[str, list[tuple[str, str]]] = {}
    for key in found:
        split, sep, metric = key.partition("/")
        if not sep:
            split, metric = "", key
        panels.setdefault(metric, []).append((split, key))

    ncols = min(len(panels), 4)
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure((4.0 * ncols, 3.2 * nrows + (0.4 if title else 0.0)))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colours: dict[str, str] = {}  # one colour per split in every panel
    in_legend: set[str] = set()
    for ax, (metric, lines) in zip(axes, panels.items()):
        for split, key in lines:
            x, mean, std = _curve_stats(history, key, x_key)
            colour = colours.setdefault(split, f"C{len(colours)}")
            label = _SPLIT_LABELS.get(split, split or key)
            ax.plot(x, mean, marker="." if len(x) < 30 else None, label=label, color=colour)
            if np.any(std > 0):
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.25, linewidth=0)
        ax.set_title(_METRIC_TITLES.get(metric, metric))
        ax.set_xlabel(x_key)
        if units:
            ax.set_ylabel(units)
        splits = {split for split, _ in lines if split}
        if splits - in_legend:  # a legend where a split first appears: colours hold throughout
            ax.legend(fontsize="small", loc="best")
            in_legend |= splits
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _curve_stats(history, key: str, x_key: str):
    """Returns ``(x, mean, std)`` arrays for one metric; ``std`` is 0 for scalar values."""
    xs, means, stds = [], [], []
    for i, entry in enumerate(history):
        value = entry.get(key)
        if value is None:
            continue
        v = np.asarray(value, dtype=np.float64).ravel()
        if v.size == 0:
            continue
        xv = entry.get(x_key, i + 1)
        xs.append(float(np.mean(np.asarray(xv, dtype=np.float64))))
        means.append(float(np.mean(v)))
        stds.append(float(np.std(v)) if v.size > 1 else 0.0)
    return np.asarray(xs), np.asarray(means), np.asarray(stds)
