"""Regenerate the documentation's figures (``docs/figures/*.png``) and say which are stale.

Each figure comes from a *source*: a training run (a config from ``experiments/configs`` with
overrides, trained into ``--workdir``; its standard figures are copied) or a measured-results
file in ``docs/data`` (the numbers on the results pages, drawn here). ``docs/figures/
manifest.json`` records, per figure, a SHA-256 of the code that draws it and one of its source
(the resolved run config, or the results file). A figure is stale when it is missing, has no
manifest entry, or either hash differs.

    python -m experiments.figures            # list the stale figures, regenerate them
    python -m experiments.figures --check    # only list them; exit status 1 if any is stale
    python -m experiments.figures --all      # regenerate every figure
    python -m experiments.figures gaussian2d # regenerate one source's figures (or a figure name)

Regenerating everything took about 1.5 minutes on 2 CPU cores (two 10-epoch gaussian2d runs
of seconds each, the 10-epoch ``pytorch_example`` run of the README's main command, and the
drawings from ``docs/data``, a few seconds), plus the 100-epoch ``pyro_vae`` run (43 min
on the busy 2-core host; 100 x 2-4 s on a quiet one). Runs need the data: set ``JVAE_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
import pathlib
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"
DATA = ROOT / "docs" / "data"
MANIFEST = FIGURES / "manifest.json"
MAX_BYTES = 300_000


@dataclass(frozen=True)
class Source:
    """Where a group of figures comes from and the code that draws them.

    ``config``/``overrides``: a training run whose figures (``outputs``: run file -> figure
    name) are copied. ``data``/``draw``: a results file in ``docs/data`` drawn by ``draw(data,
    path)`` (``outputs``: one figure name). ``code``: ``(file, function or None)`` pairs whose
    source text is hashed (``None``: the whole file).
    """

    name: str
    outputs: dict[str, str]
    code: tuple[tuple[str, str | None], ...]
    config: str | None = None
    overrides: dict = field(default_factory=dict)
    data: str | None = None
    draw: Callable | None = None


# ------------------------------------------------------------------------- drawing from results


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi: int = 100) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=dpi)


def draw_seeds(data: dict, path) -> None:
    """Strip plot: jvae's 8 seeds and the PyTorch reference's 5, mean +- std, the notebook's value."""
    import numpy as np

    fig = _figure((6.4, 4.2))
    ax = fig.add_subplot()
    groups = [("jvae\n(seeds 1-8, one program)", data["jvae"], "C0"),
              ("PyTorch reference\n(seeds 1-5)", data["pytorch"], "C1")]
    rng = np.random.default_rng(0)
    for i, (label, run, colour) in enumerate(groups):
        y = np.asarray(run["test_loss"])
        ax.scatter(i + rng.uniform(-0.08, 0.08, len(y)), y, color=colour, s=28, zorder=3)
        ax.errorbar(i + 0.22, run["mean"], yerr=run["std"], fmt="D", color="k", capsize=4,
                    markersize=5, zorder=3)
        ax.annotate(f"mean {run['mean']:.2f}\nstd {run['std']:.2f}", (i + 0.28, run["mean"]),
                    va="center", fontsize=8)
    ref = data["reference"]["test_loss"]
    ax.axhline(ref, ls="--", color="grey", lw=1)
    ax.annotate(f"notebook: {ref:.2f}", (-0.35, ref), va="bottom", fontsize=8, color="grey")
    ax.set_xticks(range(len(groups)), [g[0] for g in groups])
    ax.set_xlim(-0.4, len(groups) - 0.2)
    ax.set_ylabel("test loss, -ELBO (nats per example)")
    ax.set_title(f"pytorch_example, 10 epochs ({data['measured']})")
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def draw_rate_distortion(data: dict, path) -> None:
    """The rate-distortion experiment's plot (``experiments.rate_distortion``), from its
    measured table."""
    from jvae.plotting import save_rate_distortion

    save_rate_distortion(data["rate"], data["distortion"], data["beta"], path,
                         title="MNIST VAE, one vmapped beta sweep (dotted: D + R constant)")


def draw_linear_vae(data: dict, path) -> None:
    """The linear-VAE-vs-PPCA experiment's plot (``experiments.linear_vae_ppca``), from its
    measured results: the gap curves of four cases, the posterior variances of three."""
    from jvae.plotting import save_linear_vae_ppca

    rows = {r["case"]: r for r in data["rows"]}
    gaps = {name: (rows[name]["curve"]["steps"], rows[name]["curve"]["gap_log_px"],
                   rows[name]["curve"]["gap_elbo"])
            for name in ("synthetic k=5", "MNIST k=2", "MNIST k=10", "MNIST k=10, sigma2=2")
            if name in rows}
    variances = {}
    for name in ("MNIST k=10", "MNIST k=10, sigma2=2", "MNIST k=10, sigma2=4.5"):
        if name in rows:
            col = rows[name]["collapse"]
            label = (name.split(", ")[1].replace("sigma2=", "sigma2 = ") if ", " in name
                     else "sigma2 learned")
            variances[name] = (label, col["ppca_posterior_var"], col["vae_posterior_var"],
                               col["vae"])
    save_linear_vae_ppca(gaps, variances, path, steps_label="Adam steps (batch 100)",
                         variances_title="MNIST k=10: PPCA sigma2/lambda_j (line), VAE (circles)",
                         title=f"Linear VAE vs PPCA (Lucas et al., 2019), {data['measured']}")


def draw_iwae(data: dict, path) -> None:
    """Test ELBO, IWAE bound (K=5) and log p(x) (K=5000) of the k=1 and k=5 models, +- s.e."""
    import numpy as np

    metrics = [("test_elbo", "ELBO"), ("iwae_k5", "IWAE bound\nK = 5"),
               ("log_px_k5000", "log p(x)\nK = 5000")]
    fig = _figure((6.4, 4.2))
    ax = fig.add_subplot()
    for j, row in enumerate(data["rows"]):
        x = np.arange(len(metrics)) + (j - 0.5) * 0.25
        y = [row[m][0] for m, _ in metrics]
        err = [row[m][1] for m, _ in metrics]
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=4, label=f"trained with {row['model']}",
                    color=f"C{j}")
        for xi, yi in zip(x, y):
            ax.annotate(f"{yi:.2f}", (xi, yi), textcoords="offset points", xytext=(6, -3),
                        fontsize=7)
    ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
    ax.set_xlim(-0.5, len(metrics) - 0.3)
    ax.set_ylabel("test value (nats per example)")
    ax.set_title(f"iwae_mnist, 13 epochs, all 10000 test images ({data['measured']})")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def draw_likelihood_table(data: dict, path) -> None:
    """``experiments.likelihood_table``'s figure: each row's test NLL (+- s.e.) at the epochs
    it ran, beside the paper's and pythae's numbers."""
    rows = data["rows"]
    fig = _figure((6.4, 4.0))
    ax = fig.add_subplot()
    x = range(len(rows))
    ax.errorbar(x, [r["test_nll"] for r in rows],
                yerr=[r["test_nll_se"] or 0.0 for r in rows], fmt="o", capsize=4, color="C0",
                label=f"jvae (K = {data['ll_samples']}, {data['eval_images']} test images)")
    ax.plot(x, [r["paper"] for r in rows], "s", color="C3", label="paper")
    ax.plot(x, [r["pythae"] for r in rows], "^", color="C2", label="pythae")
    for xi, r in zip(x, rows):
        ax.annotate(f"{r['test_nll']:.2f}", (xi, r["test_nll"]), textcoords="offset points",
                    xytext=(8, -3), fontsize=7)
    ax.set_xticks(list(x), [f"{r['row']}\n{r['epochs_run']}/{r['schedule_epochs']} epochs"
                            for r in rows])
    ax.set_xlim(-0.5, len(rows) - 0.3)
    ax.set_ylabel("test NLL (nats per image)")
    ax.set_title(("full schedules" if data["full_schedules"] else "CPU budget")
                 + f", {data['device'].split(' (')[0]} ({data['date'][:10]})")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def draw_estimator_variance(data: dict, path) -> None:
    """Gradient variance relative to the reparameterised estimator, log scale, two models."""
    import numpy as np

    rows = data["rows"][::-1]
    names = [r[0] for r in rows]
    fig = _figure((8.0, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, col, title in ((axes[0], 1, "MNIST VAE"), (axes[1], 3, "Fashion-MNIST 64x64 VAE")):
        v = np.asarray([r[col] for r in rows], float)
        colours = ["C2" if n.startswith("mixture posterior: mixture") or n == "reparameterised"
                   else "C0" for n in names]
        ax.barh(range(len(rows)), v, color=colours)
        ax.set_xscale("log")
        ax.set_xlim(0.5, v.max() * 8)
        for i, value in enumerate(v):
            text = f"{value:g}" if value < 1e5 else f"{value:.2g}".replace("e+0", "e")
            ax.annotate(text, (value, i), textcoords="offset points", xytext=(3, 0),
                        va="center", fontsize=7)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(rows)), names, fontsize=8)
    fig.supxlabel("variance of the inference-network gradient / reparameterised (log scale)",
                  fontsize=9)
    fig.suptitle(f"inference-network gradient variance at a fixed point ({data['measured']})",
                 fontsize=10)
    _save(fig, path)


def draw_snr_scaling(data: dict, path) -> None:
    """SNR against K per estimator, inference and generative network, each measured setup
    (``experiments.snr_scaling``); hollow: not resolved from zero (not fitted); dashed: the
    papers' slopes."""
    from jvae.plotting import save_scaling_panels

    names = {"gaussian": "Gaussian model (Rainforth et al.)", "mnist": "MNIST VAE"}
    labels = {"iwae_dreg_signal": "iwae, signal from dreg draws"}
    panels = []
    for setup, res in data["setups"].items():
        fits = {(f["estimator"], f["group"]): f for f in res["fits"]}
        for group in ("inference", "generative"):
            lines = []
            for name, s in res["series"].items():
                if group not in s or (group == "generative" and name != "iwae"):
                    continue
                f = fits.get((name, group))
                slope = (f" slope {f['slope']:+.2f} [{f['low']:+.2f}, {f['high']:+.2f}]"
                         if f and f["slope"] is not None else " (no fit)")
                lines.append({"label": labels.get(name, name) + slope, "x": s["k"],
                              "y": [r["snr"] for r in s[group]],
                              "resolved": [r["resolved"] for r in s[group]]})
            guides = [{"slope": -0.5 if group == "inference" else 0.5,
                       "label": "Rainforth et al.: K^-1/2" if group == "inference"
                       else "Rainforth et al.: K^1/2"}]
            if group == "inference":
                guides.append({"slope": 0.5, "label": "DReG (Tucker et al.): grows, K^1/2",
                               "through": 1, "style": ":"})
            title = f"{names.get(setup, setup)}: {group} network"
            if group == "generative":
                title += " (same for all)"
            panels.append({"title": title, "lines": lines, "guides": guides})
    save_scaling_panels(panels, path, ylabel="SNR (rms over parameters and points)",
                        title=f"gradient SNR against the number of samples K "
                              f"({data['measured']}; hollow: not resolved, not fitted)")


def draw_benchmarks(data: dict, path) -> None:
    """Left: epoch time of jvae and PyTorch per host state. Right: many-seeds ratio for S = 8."""
    import numpy as np

    fig = _figure((9.6, 3.8))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    rows = data["epoch_time"]["rows"]
    x = np.arange(len(rows))
    for dx, key, label in ((-0.18, "jvae_s", "jvae"), (0.18, "pytorch_s", "PyTorch")):
        bars = left.bar(x + dx, [r[key] for r in rows], width=0.36, label=label)
        left.bar_label(bars, fmt="%.2f", fontsize=7)
    left.set_xticks(x, [f"{r['host']}\n{r['measured']}" for r in rows], fontsize=7)
    left.set_ylabel("seconds per epoch (median)")
    left.set_title("pytorch_example epoch, 60000 images", fontsize=10)
    left.legend(fontsize=8)
    runs = data["many_seeds"]["runs"]
    hosts = {"quiet": "C2", "calmer": "C8", "mostly loaded": "C1", "loaded": "C3"}
    for i, run in enumerate(runs):
        right.scatter(i, run["ratio"]["8"], color=hosts[run["host"]], s=30, zorder=3,
                      marker="s" if run["code"].startswith("earlier") else "o")
    for host, colour in hosts.items():
        right.scatter([], [], color=colour, label=f"{host} host")
    right.axhline(1.0, color="grey", lw=1, ls="--")
    right.set_xticks(range(len(runs)), [f"{r['measured'][5:]}\nx{r['command'].split('--repeats ')[1]}"
                                        for r in runs], fontsize=7)
    right.set_xlabel("run (date, repeats); square: earlier code", fontsize=8)
    right.set_ylabel("vmapped / sequential time")
    right.set_title("8 seeds as one vmapped program", fontsize=10)
    right.legend(fontsize=7, loc="upper left", ncol=2)
    right.set_ylim(0.85, 1.25)
    right.grid(alpha=0.3, axis="y")
    _save(fig, path)


def draw_pyro_vae(data: dict, path) -> None:
    """Lab 5's Pyro VAE: test loss per epoch of jvae and Pyro (benchmark, seed 0) and of jvae's
    100-epoch run; the benchmark's seconds per epoch."""
    fig = _figure((9.6, 3.8))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.5, 1]})
    bench, run = data["bench"], data["run"]
    rows = bench["per_epoch"]
    epochs = [r["epoch"] for r in rows]
    left.plot(run["epochs"], run["test_loss"], "-", color="C0", alpha=0.5, lw=1.2,
              label=f"jvae, {run['epochs'][-1]}-epoch run (test every 5 epochs)")
    left.plot(epochs, [r["jvae_test_loss"] for r in rows], "o-", color="C0", ms=3,
              label="jvae (benchmark)")
    left.plot(epochs, [r["pyro_test_loss"] for r in rows], "s--", color="C1", ms=3,
              label="Pyro (benchmark)")
    left.set_ylim(min(run["test_loss"]) - 2, 130)
    left.set_xlabel("epoch")
    left.set_ylabel("test loss (-ELBO, nats per image)")
    left.set_title(f"pyro_vae on MNIST ({data['measured']})", fontsize=10)
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    right.plot(epochs, [r["jvae_seconds"] for r in rows], "o-", color="C0", ms=3, label="jvae")
    right.plot(epochs, [r["pyro_seconds"] for r in rows], "s--", color="C1", ms=3,
               label=f"Pyro ({bench['pyro_threads']} torch thread(s))")
    right.set_yscale("log")
    right.set_xlabel("epoch")
    right.set_ylabel("seconds per epoch")
    right.set_title(f"median jvae / Pyro: {bench['ratio']:.2f} (busy 2-core host)", fontsize=10)
    right.legend(fontsize=7)
    right.grid(alpha=0.3, which="both")
    _save(fig, path)


def draw_flows(data: dict, path) -> None:
    """``experiments.flows``' figure: each row's test-ELBO and log-likelihood gain over the
    diagonal Gaussian, mean and standard deviation over seeds."""
    from jvae.plotting import save_gain_bars

    others = [r for r in data["rows"] if r["row"] != "gaussian"]
    gains = {label: ([r[f"{short}_gain_mean"] for r in others],
                     [r[f"{short}_gain_std"] for r in others])
             for short, label in (("elbo", "test ELBO"), ("ll", "test log p(x)"))}
    save_gain_bars([r["row"] for r in others], gains, path,
                   ylabel="gain over diagonal Gaussian (nats)")


def draw_vampprior(data: dict, path) -> None:
    """``experiments.vampprior``'s figure: per row, each seed's test rate and IS log p(x)
    (collapsed seeds, rate under the threshold, drawn as crosses)."""
    fig = _figure((9.0, 3.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    names = [r["row"] for r in data["rows"]]
    threshold = data["budget"]["collapsed_rate"]
    for i, r in enumerate(data["rows"]):
        for ax, key in ((left, "test_rate"), (right, "test_log_likelihood")):
            for v, gone in zip(r[key], r["collapsed"]):
                ax.plot(i, v, "x" if gone else "o", color="C3" if gone else "C0", ms=6)
    left.axhline(threshold, color="grey", ls="--", lw=1, label=f"collapse ({threshold} nats)")
    left.set_ylabel("test rate KL(q || p) (nats)")
    left.legend(fontsize=7)
    right.set_ylabel("test log p(x) (nats)")
    for ax in (left, right):
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.grid(alpha=0.3)
    left.set_title("rate per seed (x: collapsed)", fontsize=10)
    right.set_title("importance-sampled log p(x) per seed", fontsize=10)
    _save(fig, path)


def draw_numerics(data: dict, path) -> None:
    """``experiments.numerics``' figure: the VampPrior's float32 error against float64 by
    posterior sd (jvae and the expanded square), and the planar flow's non-finite log-dets by
    parameter scale (jvae and the product form)."""
    fig = _figure((9.0, 3.4))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sds = [r["sd"] for r in data["vamp"]]
    for key, label, marker in (("max_error", "jvae (direct form, chunked)", "o"),
                               ("expanded_max_error", "expanded square (before)", "s")):
        left.plot(sds, [r[key] for r in data["vamp"]], marker=marker, label=label)
    left.axhline(1e-3, color="grey", ls="--", lw=1, label="1e-3 nats")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("posterior sd")
    left.set_ylabel("max |float32 - float64| (nats)")
    left.set_title("VampPrior log p(z)", fontsize=10)
    left.legend(fontsize=7)
    scales = [f"{r['scale']:g}" for r in data["planar"]]
    x = [float(i) for i in range(len(scales))]
    right.bar([v - 0.2 for v in x], [r["non_finite_log_det"] for r in data["planar"]], 0.4,
              label="jvae (log space)")
    right.bar([v + 0.2 for v in x], [r["product_form_non_finite"] for r in data["planar"]], 0.4,
              label="product form (before)")
    right.set_xticks(x, scales)
    right.set_xlabel("parameter scale")
    right.set_ylabel(f"non-finite log-dets of {data['planar'][0]['points']:.0e}")
    right.set_title("planar flow", fontsize=10)
    right.legend(fontsize=7)
    _save(fig, path)


DPM2_GROUPS = (("nvil_", "NVIL, mixture posterior (the notebook's SFE)"),
               ("", "reparameterised, binarised"),
               ("continuous", "grey levels (ContinuousBernoulli)"),
               ("extra_sfe_gaussian_", "extra: SFE forced on the Gaussian posterior"))


def _dpm2_group(name: str) -> int:
    """Row of a DPM2 variant in the figures (the index into ``DPM2_GROUPS``)."""
    if name.startswith("nvil_"):
        return 0
    if name.startswith("extra_sfe_gaussian_"):
        return 3
    return 2 if "continuous" in name else 1


def _dpm2_panel(ax, curves: dict, names: list[str], x: str, key: str, *, skip: int,
                partial=()) -> None:
    """One panel: ``key`` against ``x`` for ``names``, the y range from the ``skip``-th point
    on (the first assessments dwarf the rest); runs named in ``partial`` (stopped before
    their end) dashed."""
    later = []
    for i, name in enumerate(names):
        c = curves[name]
        pts = [(s, v) for s, v in zip(c[x], c.get(key) or []) if v is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        stopped = f", stopped at step {xs[-1]}" if name in partial else ""
        ax.plot(xs, ys, lw=1.1, marker="." if x == "dev_step" else None, ms=3, color=f"C{i}",
                ls="--" if stopped else "-", label=f"{name} ({ys[-1]:.1f}{stopped})")
        later += list(ys[skip:])
    if later:       # robust: a diverged run's values stay off the axes (its label says them)
        lo, hi = sorted(later)[len(later) // 5], sorted(later)[-1 - len(later) // 5]
        ax.set_ylim(lo - 0.15 * (hi - lo + 1), hi + 0.15 * (hi - lo + 1))
        ax.legend(fontsize=6, loc="best")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(alpha=0.3)


def draw_dpm2(data: dict, path) -> None:
    """The DPM2 notebook's dev curves: ELBO, D, R and L (K = 10 importance samples) against
    steps, one row per group of variants (NVIL on the mixture posterior, the reparameterised
    runs, the grey-level runs, the extras)."""
    curves = data["curves"]
    partial = {r["variant"] for r in data.get("partial", [])}
    rows = [(title, [v for v in curves if _dpm2_group(v) == g])
            for g, (_, title) in enumerate(DPM2_GROUPS)]
    rows = [(t, names) for t, names in rows if names]
    keys = (("dev_elbo", "dev ELBO"), ("dev_distortion", "dev D"), ("dev_rate", "dev R"),
            ("dev_log_likelihood", "dev L (K = 10)"))
    fig = _figure((15.0, 3.1 * len(rows) + 0.6))
    for r, (title, names) in enumerate(rows):
        for c, (key, label) in enumerate(keys):
            ax = fig.add_subplot(len(rows), 4, 4 * r + c + 1)
            _dpm2_panel(ax, curves, names, "dev_step", key, skip=2, partial=partial)
            ax.set_title(f"{label}: {title}", fontsize=8)
            ax.set_xlabel("training step", fontsize=8)
    fig.suptitle(f"DPM2 notebook experiment, dev split of 1000 images ({data['measured']}"
                 f"{', --quick' if data.get('quick') else ''})", fontsize=11)
    _save(fig, path, dpi=100 if len(rows) <= 2 else 58)   # under the docs' 300 KB per figure


def draw_dpm2_training(data: dict, path) -> None:
    """The DPM2 notebook's training curves: every step's ELBO, D, R (23-step trailing means)
    and the learned baseline's squared error (the notebook's ``cv_loss``) of the NVIL runs,
    with the classic VAE for reference."""
    curves = data["curves"]
    names = [v for v in curves if v.startswith("nvil_")] + [v for v in ("vae_mlp",)
                                                             if v in curves]
    keys = (("train_elbo", "training ELBO"), ("train_distortion", "training D"),
            ("train_rate", "training R"), ("train_cv_baseline_loss", "cv loss (baseline)"))
    fig = _figure((15.0, 3.6))
    for c, (key, label) in enumerate(keys):
        ax = fig.add_subplot(1, 4, c + 1)
        _dpm2_panel(ax, curves, names, "step", key, skip=40,
                    partial={r["variant"] for r in data.get("partial", [])})
        if key == "train_cv_baseline_loss":     # log scale: the whole positive range
            ax.set_yscale("log")
            values = [v for n in names for v in (curves[n].get(key) or [])
                      if v is not None and v > 0]
            if values:
                ax.set_ylim(min(values) / 1.5, max(values) * 1.5)
        ax.set_title(label + " (23-step mean)", fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
    fig.suptitle(f"DPM2 notebook experiment, training curves ({data['measured']})",
                 fontsize=11)
    _save(fig, path)


# ----------------------------------------------------------------------------------- the sources

_RUN_CODE = (("jvae/plotting/_common.py", None), ("jvae/plotting/images.py", None),
             ("jvae/plotting/curves.py", None), ("jvae/plotting/latents.py", None),
             ("jvae/runs/figures.py", None),
             ("experiments/figures.py", "_regenerate_run"))

SOURCES = (
    Source("gaussian2d_univariate", {"samples_2d.png": "gaussian2d_univariate.png"}, _RUN_CODE,
           config="gaussian2d", overrides={"dataset.mode": "univariate"}),
    Source("gaussian2d_multivariate", {"samples_2d.png": "gaussian2d_multivariate.png"},
           _RUN_CODE, config="gaussian2d", overrides={"dataset.mode": "multivariate"}),
    Source("pytorch_example", {"reconstructions.png": "pytorch_example_reconstructions.png",
                               "samples.png": "pytorch_example_samples.png",
                               "curves.png": "pytorch_example_curves.png"},
           _RUN_CODE, config="pytorch_example"),
    Source("pyro_vae", {"samples.png": "pyro_vae_samples.png",
                        "reconstructions.png": "pyro_vae_reconstructions.png",
                        "latents_tsne.png": "pyro_vae_tsne.png"},
           _RUN_CODE + (("jvae/plotting/latent_space.py", "save_latent_tsne"),
                        ("jvae/evaluation/embedding.py", None)),
           config="pyro_vae"),
    Source("pyro_vae_curves", {"": "pyro_vae_test_loss.png"},
           (("experiments/figures.py", "draw_pyro_vae"), ("experiments/figures.py", "_figure")),
           data="pyro_vae.json", draw=draw_pyro_vae),
    Source("seeds", {"": "pytorch_example_seeds.png"},
           (("experiments/figures.py", "draw_seeds"), ("experiments/figures.py", "_figure")),
           data="pytorch_example_seeds.json", draw=draw_seeds),
    Source("rate_distortion", {"": "rate_distortion.png"},
           (("experiments/figures.py", "draw_rate_distortion"),
            ("jvae/plotting/rate_distortion.py", "save_rate_distortion")),
           data="rate_distortion.json", draw=draw_rate_distortion),
    Source("linear_vae", {"": "linear_vae_ppca.png"},
           (("experiments/figures.py", "draw_linear_vae"),
            ("jvae/plotting/linear_vae.py", "save_linear_vae_ppca")),
           data="linear_vae_ppca.json", draw=draw_linear_vae),
    Source("iwae", {"": "iwae_vs_elbo.png"},
           (("experiments/figures.py", "draw_iwae"), ("experiments/figures.py", "_figure")),
           data="iwae_compare.json", draw=draw_iwae),
    Source("likelihood_table", {"": "likelihood_table.png"},
           (("experiments/figures.py", "draw_likelihood_table"),
            ("experiments/figures.py", "_figure")),
           data="likelihood_table.json", draw=draw_likelihood_table),
    Source("estimator_variance", {"": "estimator_variance.png"},
           (("experiments/figures.py", "draw_estimator_variance"),
            ("experiments/figures.py", "_figure")),
           data="estimator_variance.json", draw=draw_estimator_variance),
    Source("dpm2", {"": "dpm2_dev_curves.png"},
           (("experiments/figures.py", "draw_dpm2"), ("experiments/figures.py", "_dpm2_panel"),
            ("experiments/figures.py", "_dpm2_group"), ("experiments/figures.py", "_figure")),
           data="dpm2.json", draw=draw_dpm2),
    Source("dpm2_training", {"": "dpm2_training_curves.png"},
           (("experiments/figures.py", "draw_dpm2_training"),
            ("experiments/figures.py", "_dpm2_panel"), ("experiments/figures.py", "_figure")),
           data="dpm2.json", draw=draw_dpm2_training),
    Source("flows", {"": "flows_gain.png"},
           (("experiments/figures.py", "draw_flows"),
            ("jvae/plotting/gains.py", "save_gain_bars")),
           data="flows.json", draw=draw_flows),
    Source("vampprior", {"": "vampprior.png"},
           (("experiments/figures.py", "draw_vampprior"), ("experiments/figures.py", "_figure")),
           data="vampprior.json", draw=draw_vampprior),
    Source("numerics", {"": "numerics.png"},
           (("experiments/figures.py", "draw_numerics"), ("experiments/figures.py", "_figure")),
           data="numerics.json", draw=draw_numerics),
    Source("snr_scaling", {"": "snr_scaling.png"},
           (("experiments/figures.py", "draw_snr_scaling"),
            ("jvae/plotting/scaling.py", "save_scaling_panels")),
           data="snr_scaling.json", draw=draw_snr_scaling),
    Source("benchmarks", {"": "benchmarks.png"},
           (("experiments/figures.py", "draw_benchmarks"), ("experiments/figures.py", "_figure")),
           data="benchmarks.json", draw=draw_benchmarks),
)


# ----------------------------------------------------------------------------------- staleness


def code_hash(source: Source) -> str:
    """SHA-256 over the source text of every ``(file, function)`` that draws ``source``'s figures."""
    h = hashlib.sha256()
    for rel, name in source.code:
        text = (ROOT / rel).read_text()
        if name is not None:
            segment = None
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                    segment = ast.get_source_segment(text, node)
                    break
            if segment is None:
                raise LookupError(f"{rel} defines no function {name!r} (figure {source.name}); "
                                  f"update SOURCES in experiments/figures.py")
            text = segment
        h.update(f"{rel}:{name}\n".encode())
        h.update(text.encode())
    return h.hexdigest()


def _run_config(source: Source):
    import importlib

    config = importlib.import_module(f"experiments.configs.{source.config}").get_config()
    for dotted, value in source.overrides.items():
        *parents, leaf = dotted.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def source_hash(source: Source) -> str:
    """SHA-256 of the resolved run config (as JSON), or of the results file's bytes."""
    if source.data is not None:
        return hashlib.sha256((DATA / source.data).read_bytes()).hexdigest()
    resolved = json.dumps(_run_config(source).to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(resolved.encode()).hexdigest()


def read_manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def stale(sources=SOURCES) -> list[tuple[Source, list[str]]]:
    """``(source, reasons)`` for every source with a figure that needs regenerating."""
    manifest = read_manifest()
    out = []
    for source in sources:
        code, src = code_hash(source), source_hash(source)
        reasons = []
        for figure in source.outputs.values():
            entry = manifest.get(figure)
            if not (FIGURES / figure).exists():
                reasons.append(f"{figure}: missing")
            elif entry is None:
                reasons.append(f"{figure}: not in the manifest")
            else:
                if entry.get("code_sha256") != code:
                    reasons.append(f"{figure}: the code that draws it changed")
                if entry.get("source_sha256") != src:
                    what = "results file" if source.data else "run config"
                    reasons.append(f"{figure}: its {what} changed")
        if reasons:
            out.append((source, reasons))
    return out


# -------------------------------------------------------------------------------- regeneration


def _regenerate_run(source: Source, workdir: pathlib.Path) -> dict:
    """Train the source's config afresh in ``workdir``; copy its figures; return a summary."""
    from jvae import train_and_evaluate

    if workdir.exists():
        shutil.rmtree(workdir)
    record = train_and_evaluate(_run_config(source), workdir, progress=False)
    for produced, figure in source.outputs.items():
        shutil.copyfile(workdir / produced, FIGURES / figure)
    keys = ("epoch", "eval/elbo", "eval/distortion", "eval/rate", "train/elbo")
    return {k: round(record[k], 4) if isinstance(record.get(k), float) else record.get(k)
            for k in keys if k in record}


def regenerate(source: Source, workdir_root: pathlib.Path) -> list[str]:
    FIGURES.mkdir(parents=True, exist_ok=True)
    if source.data is not None:
        (figure,) = source.outputs.values()
        source.draw(json.loads((DATA / source.data).read_text()), FIGURES / figure)
        summary, origin = None, f"docs/data/{source.data}"
    else:
        workdir = workdir_root / source.name
        summary = _regenerate_run(source, workdir)
        over = " ".join(f"--config.{k}={v}" for k, v in source.overrides.items())
        origin = (f"python -m jvae.train --config experiments/configs/{source.config}.py "
                  f"--workdir {workdir.relative_to(ROOT) if workdir.is_relative_to(ROOT) else workdir}"
                  + (f" {over}" if over else ""))
    manifest = read_manifest()
    code, src = code_hash(source), source_hash(source)
    written = []
    for figure in source.outputs.values():
        size = (FIGURES / figure).stat().st_size
        entry = {"source": origin, "code_sha256": code, "source_sha256": src,
                 "generated": datetime.date.today().isoformat(), "bytes": size}
        if summary:
            entry["run_summary"] = summary
        manifest[figure] = entry
        warn = f"  (over {MAX_BYTES // 1000} KB: shrink it)" if size > MAX_BYTES else ""
        written.append(f"wrote docs/figures/{figure} ({size / 1000:.0f} KB){warn}")
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return written


def record_script_figures(pngs, *, command: str, code: tuple[str, ...], source: dict,
                          generated: str | None = None) -> list[str]:
    """Copy a script's figures into ``docs/figures`` and record them in the manifest.

    For figures that a script draws itself (the notebook ports, ``experiments.lecture``), which
    have no :class:`Source` here: each entry names ``command`` (how to redraw it), a SHA-256 of
    the ``code`` files (paths from the repository root) and of ``source`` (the configs and
    settings, as JSON). Returns one line per figure written, with its size.
    """
    h = hashlib.sha256()
    for rel in code:
        h.update(f"{rel}\n".encode() + (ROOT / rel).read_bytes())
    src = hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()
    manifest = read_manifest()
    written = []
    for png in map(pathlib.Path, pngs):
        shutil.copyfile(png, FIGURES / png.name)
        size = png.stat().st_size
        manifest[png.name] = {"source": command, "code_sha256": h.hexdigest(),
                              "source_sha256": src, "bytes": size,
                              "generated": generated or datetime.date.today().isoformat()}
        warn = f"  (over {MAX_BYTES // 1000} KB: shrink it)" if size > MAX_BYTES else ""
        written.append(f"wrote docs/figures/{png.name} ({size / 1000:.0f} KB){warn}")
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="sources or figure names (default: the stale ones)")
    parser.add_argument("--check", action="store_true",
                        help="list the stale figures without regenerating; exit 1 if any")
    parser.add_argument("--all", action="store_true", help="regenerate every figure")
    parser.add_argument("--list", action="store_true", help="list the sources and their figures")
    parser.add_argument("--workdir", default=str(ROOT / "runs" / "figures"),
                        help="where the figure runs train (default runs/figures)")
    args = parser.parse_args(argv)
    if args.list:
        for s in SOURCES:
            print(f"{s.name}: {', '.join(s.outputs.values())}")
        return 0
    chosen = list(SOURCES)
    if args.names:
        known = {s.name for s in SOURCES} | {f for s in SOURCES for f in s.outputs.values()}
        unknown = [n for n in args.names if n not in known]
        if unknown:
            parser.error(f"unknown source or figure {unknown}; --list shows them")
        chosen = [s for s in SOURCES
                  if s.name in args.names or set(s.outputs.values()) & set(args.names)]
    out_of_date = stale(chosen)
    if not out_of_date:
        print("all figures are up to date" if not args.names else "the chosen figures are up to date")
    for source, reasons in out_of_date:
        for reason in reasons:
            print(f"stale: {reason} (source {source.name})")
    if args.check:
        return 1 if out_of_date else 0
    todo = chosen if (args.all or args.names) else [s for s, _ in out_of_date]
    for source in todo:
        print(f"regenerating {source.name} ...", flush=True)
        for line in regenerate(source, pathlib.Path(args.workdir)):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
