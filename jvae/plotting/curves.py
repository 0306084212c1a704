"""Training curves: one panel per metric, the train and evaluation values overlaid."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jvae.plotting._common import _figure, _save

__all__ = ["save_lines", "DEFAULT_CURVE_KEYS", "save_curves"]

DEFAULT_CURVE_KEYS = ("train/elbo", "eval/elbo", "train/distortion", "eval/distortion",
                      "train/rate", "eval/rate")

_SPLIT_LABELS = {"train": "train (mean over the epoch)", "eval": "eval (end of epoch)"}

_METRIC_TITLES = {"elbo": "ELBO", "distortion": "distortion D", "rate": "rate R",
                  "loss": "loss (negative bound)", "log_likelihood": "log-likelihood L",
                  "cv_loss": "control-variate loss",
                  "cv/baseline_loss": "control-variate loss (baseline)"}


def save_curves(history, path, keys=DEFAULT_CURVE_KEYS, x_key: str = "epoch",
                units: str | None = "nats per example", title: str | None = None, *,
                split_names: Mapping[str, str] | None = None) -> Path:
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
      split_names: the data split behind each key prefix, named in the legend, e.g.
        ``{"train": "train_full", "eval": "test"}`` gives "train: train_full split (mean
        over the epoch)" and "eval: test split (end of epoch)".

    Returns:
      The path written.

    Raises:
      ValueError: if ``history`` is empty or not a sequence of dicts, or no key is present.
    """
    _check_records(history, "history", "epoch")
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)
    if (keys == DEFAULT_CURVE_KEYS and not _present(history, "train/elbo")
            and _present(history, "train/loss")):
        keys = keys + ("train/loss",)
    found = _present_keys(history, keys, "history")
    panels: dict[str, list[tuple[str, str]]] = {}
    for key in found:
        split, sep, metric = key.partition("/")
        if not sep:
            split, metric = "", key
        panels.setdefault(metric, []).append((split, key))

    fig, axes = _panel_axes(len(panels), title)
    colours: dict[str, str] = {}  # one colour per split in every panel
    in_legend: set[str] = set()
    for ax, (metric, lines) in zip(axes, panels.items()):
        for split, key in lines:
            x, mean, std = _curve_stats(history, key, x_key)
            colour = colours.setdefault(split, f"C{len(colours)}")
            label = _split_label(split, key, split_names)
            ax.plot(x, mean, marker="." if len(x) < 30 else None, label=label, color=colour)
            if np.any(std > 0):
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.25, linewidth=0)
        ax.set_title(metric_title(metric))
        ax.set_xlabel(x_key)
        if units:
            ax.set_ylabel(units)
        splits = {split for split, _ in lines if split}
        if splits - in_legend:  # a legend where a split first appears: colours hold throughout
            ax.legend(fontsize="small", loc="best")
            in_legend |= splits
        ax.grid(alpha=0.3)
    return _finish(fig, axes, len(panels), path, title)


def save_lines(panels, path, *, xlabel: str = "epoch", ylabel: str | None = None,
               title: str | None = None, ncols: int = 3) -> Path:
    """Line panels of given values: several runs, or a run beside a notebook's printed
    numbers, per panel (Lab 5's test loss of ReLU/sigmoid with Adam/Adagrad, the PyTorch
    example's log beside jvae's run).

    Args:
      panels: mapping ``panel title -> [(label, x, y), ...]`` or ``(label, x, y, std)``
        tuples; ``y`` (and ``std``, drawn as a band of +-1) as long as ``x``. A label
        starting with ``"ref:"`` is drawn as open markers without a line (reference values),
        the rest as lines with markers.
      path: output file.
      xlabel: the x axis label of every panel.
      ylabel: the y axis label (default none).
      title: optional figure title.
      ncols: panels per row at most.

    Returns:
      The path written.

    Raises:
      ValueError: no panels, a panel without lines, or ``x``/``y``/``std`` of different lengths.
    """
    if not panels:
        raise ValueError("save_lines needs at least one panel")
    fig, axes = _panel_axes(len(panels), title, ncols_max=max(1, int(ncols)))
    for ax, (name, lines) in zip(axes, panels.items()):
        if not lines:
            raise ValueError(f"panel {name!r} has no lines")
        for i, line in enumerate(lines):
            label, x, y, *rest = line
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            std = np.asarray(rest[0], np.float64) if rest and rest[0] is not None else None
            if x.shape != y.shape or (std is not None and std.shape != y.shape):
                raise ValueError(f"panel {name!r}, line {label!r}: x {x.shape}, y {y.shape}"
                                 + ("" if std is None else f", std {std.shape}")
                                 + " must have one shape")
            if str(label).startswith("ref:"):
                ax.plot(x, y, linestyle="none", marker="o", markerfacecolor="none",
                        markersize=6, color="k", label=str(label)[4:].strip())
                continue
            ax.plot(x, y, marker="o", markersize=3, linewidth=1.4, color=f"C{i}", label=label)
            if std is not None and np.any(std > 0):
                ax.fill_between(x, y - std, y + std, color=f"C{i}", alpha=0.2, linewidth=0)
        ax.set_title(str(name))
        ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    return _finish(fig, axes, len(panels), path, title)


def _curve_stats(history, key: str, x_key: str):
    """Returns ``(x, mean, std)`` arrays for one metric; ``std`` is 0 for scalar values.

    Entries whose values are all scalars, or all lists of one length, are converted in one
    array operation (tens of thousands of per-step records take milliseconds); anything else
    (lists of different lengths, empty lists) entry by entry.
    """
    rows = [(entry.get(x_key, i + 1), entry[key]) for i, entry in enumerate(history)
            if entry.get(key) is not None]
    try:
        xs = np.asarray([r[0] for r in rows], dtype=np.float64).reshape(len(rows), -1)
        vs = np.asarray([r[1] for r in rows], dtype=np.float64).reshape(len(rows), -1)
    except (TypeError, ValueError):   # ragged: the general path below
        xs = vs = None
    if vs is not None and len(rows) and xs.shape[1] > 0 and vs.shape[1] > 0:
        std = vs.std(axis=1) if vs.shape[1] > 1 else np.zeros(len(rows))
        return xs.mean(axis=1), vs.mean(axis=1), std
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


# ------------------------------------------------ shared with jvae.plotting.steps (per-step curves)


def metric_title(metric: str) -> str:
    """A panel title for a metric name (``"elbo"`` -> ``"ELBO"``); unknown names as given."""
    return _METRIC_TITLES.get(metric, metric)


def _check_records(records, name: str, unit: str) -> None:
    """Raises a one-line ``ValueError`` unless ``records`` is a non-empty sequence of dicts."""
    if isinstance(records, Mapping) or not isinstance(records, Sequence) or len(records) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of dicts (one per {unit})")
    if not all(isinstance(entry, Mapping) for entry in records):
        raise ValueError(f"every {name} entry must be a dict")


def _present(records, key: str) -> bool:
    return any(entry.get(key) is not None for entry in records)


def _present_keys(records, keys, name: str) -> list[str]:
    """The keys with a value in some record, in order; a ``ValueError`` if there is none."""
    found = [k for k in keys if _present(records, k)]
    if not found:
        raise ValueError(f"none of the keys {tuple(keys)} is present in the {name}")
    return found


def _panel_axes(count: int, title: str | None, ncols_max: int = 4):
    """A figure with ``count`` panels, at most ``ncols_max`` per row: ``(fig, axes [n])``."""
    ncols = min(count, ncols_max)
    nrows = math.ceil(count / ncols)
    fig = _figure((4.0 * ncols, 3.2 * nrows + (0.4 if title else 0.0)))
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel()


def _finish(fig, axes, used: int, path, title: str | None) -> Path:
    """Hides the unused panels, adds the title, lays out and writes the figure."""
    for ax in axes[used:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _split_label(split: str, key: str, names: Mapping[str, str] | None) -> str:
    """A curve's legend entry: its key prefix, the data split it names and when it is taken."""
    label = _SPLIT_LABELS.get(split, split or key)
    if names and split in names:
        when = {"train": " (mean over the epoch)", "eval": " (end of epoch)"}.get(split, "")
        label = f"{split}: {names[split]} split{when}"
    return label
