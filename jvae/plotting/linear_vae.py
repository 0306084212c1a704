"""A linear VAE against probabilistic PCA: its gap to the PPCA optimum, its posterior variances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["save_linear_vae_ppca"]


def save_linear_vae_ppca(
        gaps: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
        variances: Mapping[str, tuple[str, Sequence[float], Sequence[float], int]], path, *,
        steps_label: str = "Adam steps",
        variances_title: str = "PPCA sigma2/lambda_j (line), VAE (circles)",
        title: str | None = None) -> Path:
    """Plots how close a linear VAE gets to PPCA (Lucas et al., 2019), in two panels.

    Left, per case on a log scale (floored at 1e-4): the PPCA optimum's log-likelihood minus
    the VAE's exact log-likelihood (solid) and minus its ELBO (dotted), per example on the
    training data, during training. Right, per case: the mean posterior variance of each
    latent dimension, PPCA's ``sigma2 / lambda_j`` (line) and the VAE's (circles; a collapsed
    dimension sits at 1, the prior's). A case keeps its colour in both panels (``C0``,
    ``C1``, ... in the order of ``gaps``, then of the cases only in ``variances``).

    Args:
      gaps: ``{case: (steps [T], gap_log_px [T], gap_elbo [T])}``: the gaps after ``steps``
        optimiser steps, in nats per example; the case is the legend label.
      variances: ``{case: (label, ppca_var [k], vae_var [k], collapsed)}``: the posterior
        variances in the latent dimensions' order, the legend label of the PPCA line and
        the number of the VAE's collapsed dimensions (in the legend of its circles).
      path: output PNG (100 dpi); parent directories are created.
      steps_label: the left panel's x-axis label.
      variances_title: the right panel's title.
      title: optional title of the whole figure.

    Returns:
      The path written.
    """
    colours = {case: f"C{i}" for i, case in enumerate(dict.fromkeys([*gaps, *variances]))}
    fig = Figure(figsize=(10.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for case, (steps, gap_log_px, gap_elbo) in gaps.items():
        steps = np.asarray(steps)
        left.plot(steps, np.maximum(np.asarray(gap_log_px), 1e-4), color=colours[case],
                  label=case)
        left.plot(steps, np.maximum(np.asarray(gap_elbo), 1e-4), color=colours[case], ls=":")
    left.set_yscale("log")
    left.set_xlabel(steps_label)
    left.set_ylabel("PPCA optimum - VAE (nats per example)")
    left.set_title("training data: solid exact log p(x), dotted ELBO", fontsize=10)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    for case, (label, ppca_var, vae_var, collapsed) in variances.items():
        j = np.arange(1, len(vae_var) + 1)
        right.plot(j, ppca_var, color=colours[case], lw=1.5, label=f"{label}: PPCA")
        right.plot(j, vae_var, "o", color=colours[case], ms=5, mfc="none",
                   label=f"VAE ({collapsed} collapsed)")
    right.set_yscale("log")
    right.set_xlabel("latent dimension (by decoder column norm)")
    right.set_ylabel("mean posterior variance")
    right.set_title(variances_title, fontsize=10)
    right.legend(fontsize=7, ncol=1, loc="lower right")
    right.grid(alpha=0.3)
    if title is not None:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path
