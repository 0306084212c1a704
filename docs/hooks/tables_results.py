"""Tables and sentences of the results pages, rendered from their data files in ``docs/data``.

Registered into :data:`data_tables.TABLES` (``docs/hooks/data_tables.py``): a page's marker
``<!-- table: NAME -->`` is replaced by ``TABLES[NAME]()``. Each name starts with its page;
each renderer reads the data file that ``experiments/provenance.py``'s ``PUBLISHED`` names for
that page, so no measured number is typed on these pages:

- ``pyro-vae-*``: ``docs/results/pyro_vae.md`` from ``pyro_vae.json``;
- ``numerics-*``: ``docs/results/numerics.md`` from ``numerics.json``;
- ``iwae-*``: ``docs/results/iwae.md`` from ``iwae_compare.json``;
- ``rate-distortion-*``: ``docs/results/rate-distortion.md`` from ``rate_distortion.json``;
- ``estimator-variance-*``: ``docs/results/estimator-variance.md`` from
  ``estimator_variance.json`` and ``estimator_report.json`` (its date from the file's
  provenance record, ``provenance.json``);
- ``linear-vae-*``: ``docs/results/linear-vae.md`` from ``linear_vae_ppca.json``;
- ``vampprior-*``: ``docs/results/vampprior.md`` from ``vampprior.json``.
- ``likelihood-table``: ``docs/results/likelihood_table.md`` from ``likelihood_table.json``.
"""

from __future__ import annotations

import pathlib
import re
import statistics

from hook_common import DATA, load as _data, row as _row  # noqa: F401


def _recorded(name: str) -> str:
    """The date (YYYY-MM-DD) ``docs/data/provenance.json`` records for data file ``name``."""
    records = _data("provenance.json")
    if name not in records:
        raise KeyError(f"docs/data/provenance.json has no record of {name}: "
                       f"python -m experiments.provenance --record docs/data/{name}")
    return records[name]["date"][:10]


def _range(values, fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}-{hi}"


# ------------------------------------------------------------------------------- pyro_vae


def pyro_vae_epochs(data: dict) -> str:
    """The benchmark's seed 0: seconds and test loss of jvae and Pyro per epoch, medians."""
    bench = data["bench"]
    rows = bench["per_epoch"]
    lines = [f"Measured {data['measured']} with `{bench['command']}` on the {data['host']}; "
             f"load averages {bench['loads'][0]} at the start and {bench['loads'][-1]} at the "
             f"end; Pyro with {bench['pyro_threads']} torch thread(s).", "",
             _row(["epoch", "jvae s", "Pyro s", "jvae test loss", "Pyro test loss"]),
             _row(["---"] * 5)]
    lines += [_row([r["epoch"], f"{r['jvae_seconds']:.2f}", f"{r['pyro_seconds']:.2f}",
                    f"{r['jvae_test_loss']:.2f}", f"{r['pyro_test_loss']:.2f}"]) for r in rows]
    lines += ["", f"Median epoch over epochs 2-{rows[-1]['epoch']}: jvae "
              f"**{bench['jvae_median_seconds']:.2f} s**, Pyro "
              f"**{bench['pyro_median_seconds']:.2f} s**, ratio jvae / Pyro "
              f"**{bench['ratio']:.2f}**."]
    return "\n".join(lines)


def pyro_vae_seeds(data: dict) -> str:
    """Test loss after the benchmark's last epoch per seed, mean and sd, and how far apart."""
    b = data["bench"]
    lines = [_row(["library", "test loss per seed (seeds "
                   + ", ".join(map(str, range(len(b["jvae_final_test_loss"])))) + ")",
                   "mean", "standard deviation"]), _row(["---"] * 4)]
    for name, key in (("jvae", "jvae"), ("Pyro", "pyro")):
        lines.append(_row([name, ", ".join(f"{v:.2f}" for v in b[f"{key}_final_test_loss"]),
                           f"**{b[f'{key}_mean']:.2f}**", f"{b[f'{key}_sd']:.2f}"]))
    diff = b["pyro_mean"] - b["jvae_mean"]
    lo, hi = b["pyro_mean"] - 2 * b["pyro_sd"], b["pyro_mean"] + 2 * b["pyro_sd"]
    lowest = min(b["pyro_final_test_loss"])
    within = lo <= b["jvae_mean"] <= hi
    lines += ["", f"jvae's mean is {abs(diff):.2f} nats {'below' if diff > 0 else 'above'} "
              f"Pyro's: {'within' if within else 'outside'} Pyro's mean +- 2 standard "
              f"deviations ({lo:.2f}-{hi:.2f}), and "
              f"{'below' if b['jvae_mean'] < lowest else 'not below'} the lowest of its "
              f"{len(b['pyro_final_test_loss'])} seeds ({lowest:.2f})."]
    return "\n".join(lines)


def pyro_vae_run(data: dict) -> str:
    """The 100-epoch jvae run: test loss every few epochs, final D and R, median epoch."""
    run = data["run"]
    f = run["final"]
    seconds = run["train_seconds"]
    lines = [_row(["epoch", *run["epochs"]]), _row(["---"] * (len(run["epochs"]) + 1)),
             _row(["test loss (nats per image)", *(f"{v:.2f}" for v in run["test_loss"])]),
             "", f"After epoch {f['epoch']}: **{-f['eval/elbo']:.2f} nats** (distortion "
             f"{f['eval/distortion']:.2f}, rate {f['eval/rate']:.2f}); the median epoch (epochs "
             f"2-{len(seconds)}) took {statistics.median(seconds[1:]):.1f} s on the "
             f"{data['host']}."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- numerics


def numerics_vamp(data: dict) -> str:
    """Errors in nats of the VampPrior density, float32 against float64, by posterior sd."""
    lines = [_row(["sd", "max error", "mean error", "expanded: max", "expanded: mean"]),
             _row(["---"] * 5)]
    lines += [_row([f"{r['sd']:g}", f"{r['max_error']:.1e}", f"{r['mean_error']:.1e}",
                    f"{r['expanded_max_error']:.1e}", f"{r['expanded_mean_error']:.1e}"])
              for r in data["vamp"]]
    v = data["vamp"][0]
    lines += ["", f"A mixture of {v['components']} components in {v['dim']} dimensions at "
              f"{v['points']} points."]
    return "\n".join(lines)


def numerics_planar(data: dict) -> str:
    """Non-finite counts of the planar flow's log-determinant by parameter scale."""
    lines = [_row(["scale", "points", "non-finite log-det", "non-finite output", "`c < -1`",
                   "product form: non-finite"]), _row(["---"] * 6)]
    lines += [_row([f"{r['scale']:g}", f"{r['points']:.0e}", r["non_finite_log_det"],
                    r["non_finite_output"], r["c_below_minus_one"],
                    r["product_form_non_finite"]]) for r in data["planar"]]
    return "\n".join(lines)


def numerics_em(data: dict) -> str:
    """``jvae.fit_gmm`` against scikit-learn from one start: iterations and the difference."""
    lines = [_row(["D", "seed", "tol", "tol used", "jvae iterations", "scikit-learn iterations",
                   "difference"]), _row(["---"] * 7)]
    lines += [_row([r["dim"], r["seed"], r["tol"], f"{r['tol_used']:.2e}", r["n_iter"],
                    r["sklearn_n_iter"], f"{r['difference']:+.1e}"]) for r in data["em"]]
    return "\n".join(lines)


def numerics_restarts(data: dict) -> str:
    """Best of ``n_init`` k-means++ starts of jvae against scikit-learn's."""
    lines = [_row(["D", "C", "n_init", "jvae starts short by > 1e-3", "worst start",
                   "jvae best", "scikit-learn best", "difference"]), _row(["---"] * 8)]
    lines += [_row([r["dim"], r["components"], r["n_init"], r["starts_short_by_1e-3"],
                    f"{min(r['restarts']):.4f}", f"{r['best']:.4f}", f"{r['sklearn_best']:.4f}",
                    f"{r['difference']:+.1e}"]) for r in data["restarts"]]
    return "\n".join(lines)


def numerics_measured(data: dict) -> str:
    """When, where and by which command the numbers were measured."""
    return (f"Measured {data['date'][:10]} ({data['machine']}, jax {data['jax']}) with "
            f"`{data['command']}`.")


# ----------------------------------------------------------------------------------- iwae


def _pm(pair) -> str:
    return f"{pair[0]:.2f} +- {pair[1]:.2f}"


def iwae_table(data: dict) -> str:
    """Test ELBO, IWAE bound and log p(x) of the ELBO- and IWAE-trained models, the paper's."""
    rows = data["rows"]
    best = max(rows, key=lambda r: r["log_px_k5000"][0])
    lines = [f"Measured {data['measured']} on the {data['machine']}: {data['total_minutes']:.1f} "
             f"minutes in all. Test values in nats per example, +- the "
             f"{data['uncertainty']}:", "",
             _row(["model", "train s", "test ELBO", "IWAE bound K=5", "log p(x), K=5000"]),
             _row(["---", "---:", "---:", "---:", "---:"])]
    for r in rows:
        ll = _pm(r["log_px_k5000"])
        lines.append(_row([r["model"], f"{r['train_seconds']:.1f}", _pm(r["test_elbo"]),
                           _pm(r["iwae_k5"]), f"**{ll}**" if r is best else ll]))
    for model, v in data["paper"]["log_px"].items():
        lines.append(_row([f"paper, {model}, 3280 epochs", "", "", "", f"{v:.2f}"]))
    d, se = data["log_px_difference"]
    vae, iwae = rows
    lines += ["", f"The IWAE-trained model's test log-likelihood is "
              f"{'higher' if d > 0 else 'lower'} by {abs(d):.2f} +- {se:.2f} nats (paired "
              f"standard error) while its ELBO is "
              f"{'lower' if iwae['test_elbo'][0] < vae['test_elbo'][0] else 'higher'} "
              f"({iwae['test_elbo'][0]:.2f} against {vae['test_elbo'][0]:.2f}). Paper: "
              f"{data['paper']['source']}."]
    return "\n".join(lines)


# ------------------------------------------------------------------------ rate-distortion


def rate_distortion_table(data: dict) -> str:
    """Rate, distortion and -ELBO per beta, the time per epoch and the best ELBOs."""
    beta = data["beta"]
    lines = [f"Measured {data['measured']} on the {data['machine']}: "
             f"{data['seconds_per_epoch_all_models']:.1f} s per epoch for all {len(beta)} "
             f"models together.", "",
             _row(["beta", *(f"{b:g}" for b in beta)]), _row(["---"] * (len(beta) + 1))]
    for label, key in (("rate R", "rate"), ("distortion D", "distortion"),
                       ("-ELBO = D + R", "neg_elbo")):
        lines.append(_row([label, *(f"{v:.2f}" for v in data[key])]))
    order = sorted(range(len(beta)), key=lambda i: data["neg_elbo"][i])
    lines += ["", "The best ELBOs: " + ", ".join(
        f"{data['neg_elbo'][i]:.2f} at beta = {beta[i]:g}" for i in order[:2]) + "."]
    return "\n".join(lines)


# --------------------------------------------------------------------- estimator-variance


def _ratio(v: float) -> str:
    """A variance ratio as the experiment prints it: ``9150``, ``24.7``, ``2.9e6``."""
    if v < 1e5:
        return f"{v:g}"
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def estimator_variance_table(data: dict) -> str:
    """Variance relative to the reparameterised estimator and short-run test ELBO per
    estimator, on MNIST and Fashion-MNIST 64x64, and what the rows say."""
    cols = data["columns"]
    rows = {r[0]: dict(zip(cols, r[1:])) for r in data["rows"]}
    lines = [f"Measured {data['measured']} on the {data['machine']} in {data['seconds']:.0f} s "
             f"(`{data['command']}`).", "",
             _row(["estimator", "MNIST: variance / reparam", "MNIST short-run test ELBO",
                   "Fashion 64x64: variance / reparam", "Fashion short-run test ELBO"]),
             _row(["---", "---:", "---:", "---:", "---:"])]
    lines += [_row([name, _ratio(r["mnist_variance"]), f"{r['mnist_short_run_elbo']:.2f}",
                    _ratio(r["fashion_variance"]), f"{r['fashion_short_run_elbo']:.2f}"])
              for name, r in rows.items()]
    mix = rows["mixture posterior: mixture estimator"]
    sfe = rows["mixture posterior: SFE"]
    critic = rows["SFE + self-critic"]
    chain = rows["SFE + self-critic + centred + baseline + scaled"]
    lines += ["", f"The mixture estimator's variance is {_ratio(mix['mnist_variance'])}x "
              f"(MNIST) and {_ratio(mix['fashion_variance'])}x (Fashion) the reparameterised "
              f"one; plain SFE on the same mixture model {_ratio(sfe['mnist_variance'])}x and "
              f"{_ratio(sfe['fashion_variance'])}x. Short-run test ELBO of the full chain "
              f"against self-critic alone: {chain['fashion_short_run_elbo']:.2f} vs "
              f"{critic['fashion_short_run_elbo']:.2f} on Fashion, "
              f"{chain['mnist_short_run_elbo']:.2f} vs {critic['mnist_short_run_elbo']:.2f} on "
              f"MNIST."]
    return "\n".join(lines)


def _g(v: float) -> str:
    return f"{v:.3g}" if v < 1e4 else f"{v:.2e}"


def _running_std(row: dict) -> float | None:
    match = re.search(r"running std s = ([0-9.]+)", row.get("note") or "")
    return float(match.group(1)) if match else None


def estimator_report_table(data: dict) -> str:
    """``jvae.testing.estimator_report`` of every built-in estimator on the PPCA reference:
    the table ``jvae.testing.report_table`` prints, and what its rows say."""
    settings = data["settings"]
    lines = [f"Measured {_recorded('estimator_report.json')} (the date of its provenance "
             f"record) in {data['seconds']:.0f} s on {data['host']['machine']} "
             f"({', '.join(data['host']['devices'])}, jax {data['host']['jax']}), mostly "
             f"compilation; n = {settings['num_draws']} gradient draws per row, batch "
             f"{settings['batch']}, seed {settings['seed']}.", "",
             _row(["estimator", "bias / se", "unbiased", "variance / reparam (inference)",
                   "variance / reparam (all)", "SNR (inference)", "s / 1000 draws"]),
             "|---|---:|:---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        bias = "n/a" if r["bias_z"] is None else f"{r['bias_z']:.2f}"
        ok = "n/a" if r["unbiased"] is None else ("yes" if r["unbiased"] else "**no**")
        lines.append(_row([r["name"], bias, ok, _g(r["variance_ratio_inference"]),
                           _g(r["variance_ratio_all"]), f"{r['snr_inference']:.3g}",
                           f"{r['seconds_per_1000_draws']:.3g}"]))
    scaled = [(r["name"], s) for r in data["rows"] if (s := _running_std(r)) is not None]
    biased = [r["name"] for r in data["rows"] if r["unbiased"] is False]
    sfe = [r["variance_ratio_inference"] for r in data["rows"] if r["name"].startswith("SFE")]
    by_name = {r["name"]: r for r in data["rows"]}
    iwae = by_name.get("IWAE (K=5)")
    k5 = [by_name[n] for n in ("DReG (K=5)", "STL (K=5)") if n in by_name]
    lines += ["", "Biased for their target: " + (", ".join(biased) or "none") + "; every "
              "other row with a reference is unbiased for it. The score-function rows' "
              f"inference-gradient variance is {_g(min(sfe))}-{_g(max(sfe))}x the "
              "reparameterised estimator's."
              + (" Against IWAE (K=5)'s " + _g(iwae["variance_ratio_inference"]) + ": "
                 + ", ".join(f"{r['name']} {_g(r['variance_ratio_inference'])}" for r in k5)
                 + "." if iwae and k5 else "")
              + (" The running std s of the `scaled` rows: "
                 + ", ".join(f"{name} {s:g}" for name, s in scaled) + "." if scaled else "")]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- linear-vae


def _linear_rows(data: dict) -> dict:
    return {r["case"]: r for r in data["rows"]}


def linear_vae_timing(data: dict) -> str:
    """Training seconds and steps per case, and the script's wall time."""
    return (f"Measured {data['measured']} (`{data['command']}`): {data['wall_seconds']:.0f} s "
            "in the script; training " + ", ".join(
                f"{r['case']} {r['train_seconds']:.0f} s ({r['steps']} steps)"
                for r in data["rows"]) + ".")


def linear_vae_table(data: dict) -> str:
    """Per case and split: PPCA's optimum, the VAE's exact log p(x) and ELBO, the gaps and
    the collapsed dimensions."""
    lines = [_row(["case", "sigma2 (VAE / PPCA)", "split", "PPCA optimum", "VAE log p(x)",
                   "VAE ELBO", "optimum - log p(x)", "optimum - ELBO",
                   "collapsed (VAE / PPCA)"]), _row(["---"] * 9)]
    for r in data["rows"]:
        sigma2 = (f"{r['sigma2_vae']:g} / {r['sigma2_ppca']:g} (fixed)" if r["noise"] == "fixed"
                  else f"{r['sigma2_vae']:.4g} / {r['sigma2_ppca']:.4g}")
        for split in ("train", "test"):
            s = r[split]
            first = split == "train"
            lines.append(_row([r["case"] if first else "", sigma2 if first else "", split,
                               f"{s['ppca']:.3f}", f"{s['vae_log_px']:.3f}",
                               f"{s['vae_elbo']:.3f}", f"{s['gap_log_px']:.4f}",
                               f"{s['gap_elbo']:.4f}",
                               f"{r['collapse']['vae']} / {r['collapse']['ppca']} of {r['k']}"
                               if first else ""]))
    return "\n".join(lines)


def linear_vae_mc_check(data: dict) -> str:
    """How far jvae's Monte Carlo ELBO is from the closed form on the test split."""
    rows = data["rows"]
    worst = max(rows, key=lambda r: abs(r["test"]["vae_elbo_mc"] - r["test"]["vae_elbo"]))
    t = worst["test"]
    return (f"jvae's Monte Carlo ELBO (4 samples per test example) is within "
            f"{abs(t['vae_elbo_mc'] - t['vae_elbo']):.4f} nats of the closed form on every "
            f"row (the farthest: {worst['case']}, {t['vae_elbo_mc']:.3f} vs "
            f"{t['vae_elbo']:.3f}).")


def _eigenvalues(r: dict) -> list[float]:
    """The sample-covariance eigenvalues of a learned-noise case: PPCA's squared column norm
    ``lambda_j - sigma2`` plus its ``sigma2``."""
    return [n + r["sigma2_ppca"] for n in r["collapse"]["ppca_col_sq_norm"]]


def linear_vae_claim1(data: dict) -> str:
    """Claim 1 in numbers: the largest gaps to the optimum, sigma2's agreement, no gap < 0."""
    rows = data["rows"]
    gap = max(rows, key=lambda r: r["train"]["gap_log_px"])
    elbo = max(max(r[s]["gap_elbo"] for s in ("train", "test")) for r in rows)
    sigma = max(abs(r["sigma2_vae"] / r["sigma2_ppca"] - 1) for r in rows)
    below = min(r["train"]["gap_log_px"] for r in rows)
    curve = min(min(r["curve"]["gap_elbo"]) for r in rows)
    return (f"On every case the trained VAE comes within {gap['train']['gap_log_px']:.3f} "
            f"nats per example of the optimum on the training data ({gap['case']}: "
            f"{100 * gap['train']['gap_log_px'] / abs(gap['train']['ppca']):.3f}% of its "
            f"{abs(gap['train']['ppca']):.1f} nats), its ELBO within {elbo:.3f} on either "
            f"split, and its learned `sigma2` matches PPCA's to within {100 * sigma:.2f}%. "
            f"The smallest training gap of the exact log-likelihood is {below:.2g} "
            f"({'never above' if below >= 0 else 'ABOVE'} the optimum, as it must be), and "
            f"the smallest gap of the ELBO after any epoch is {curve:.2g} "
            f"({'below the optimum throughout' if curve > 0 else 'NOT below it throughout'}).")


def linear_vae_plateau(data: dict) -> str:
    """The gap's plateau while the learning rate is high, and MNIST k = 10's eigenvalues."""
    rows = _linear_rows(data)
    plateau = {name: statistics.median(r["curve"]["gap_log_px"][len(r["curve"]["steps"]) // 10:
                                                                 len(r["curve"]["steps"]) // 2])
               for name, r in rows.items() if r["data"] == "mnist" and r["noise"] == "learned"}
    k10 = rows["MNIST k=10"]
    lam = _eigenvalues(k10)
    ratio = [v / p for v, p in zip(k10["collapse"]["vae_col_sq_norm"],
                                   k10["collapse"]["ppca_col_sq_norm"])]
    return ("Median gap of the exact log-likelihood between a tenth and half of the steps: "
            + ", ".join(f"{n} {v:.1f} nats" for n, v in plateau.items())
            + f". MNIST k = 10's eigenvalues 5 to 10: "
            + ", ".join(f"{v:.2f}" for v in lam[4:]) + f"; its VAE's squared decoder column "
            f"norms are {100 * (min(ratio) - 1):+.0f}% to {100 * (max(ratio) - 1):+.0f}% of "
            "PPCA's `lambda_j - sigma2`.")


def linear_vae_claim2(data: dict) -> str:
    """Claim 2 in numbers: which eigenvalues are below each fixed sigma2, what collapses."""
    rows = _linear_rows(data)
    lam = _eigenvalues(rows["MNIST k=10"])
    out = []
    for r in data["rows"]:
        if r["noise"] != "fixed":
            continue
        c, s2 = r["collapse"], r["sigma2_ppca"]
        below = [j + 1 for j, v in enumerate(lam) if v <= s2]
        gone = c["vae"]
        text = (f"At `sigma2` = {s2:g}, {len(below)} of the k = {r['k']} eigenvalues are at "
                "most `sigma2`")
        if below:
            text += (f" (`lambda_{below[0]}..{below[-1]}` = {lam[below[0] - 1]:.2f} to "
                     f"{lam[below[-1] - 1]:.2f})")
        text += f"; PPCA zeroes {c['ppca']} columns and the VAE collapses {gone}"
        if gone:
            text += (f", with posterior variances "
                     f"{_range(sorted(c['vae_posterior_var'])[-gone:], '.3f')} and "
                     f"`|w_j|^2` <= {sorted(c['vae_col_sq_norm'])[gone - 1]:.2g}")
        out.append(text)
    ml = [r for r in data["rows"] if r["noise"] == "learned"]
    k5 = rows["synthetic k=5"]
    extra = k5["k"] - 3
    out.append("At the maximum-likelihood `sigma2` the counts are "
               + ", ".join(f"{r['collapse']['vae']} / {r['collapse']['ppca']} ({r['case']})"
                           for r in ml)
               + f"; the {extra} surplus dimensions of synthetic k = 5 have posterior variances "
               + " and ".join(f"{v:.2f}" for v in k5["collapse"]["vae_posterior_var"][-extra:])
               + " (VAE), "
               + " and ".join(f"{v:.2f}" for v in k5["collapse"]["ppca_posterior_var"][-extra:])
               + " (PPCA)")
    return ". ".join(out) + "."


def linear_vae_figure(data: dict) -> str:
    """The right panel's numbers: MNIST k = 10's posterior variances per noise setting."""
    out = []
    for r in data["rows"]:
        if r["data"] != "mnist" or r["k"] != 10:
            continue
        c = r["collapse"]
        used = r["k"] - c["vae"]
        label = ("`sigma2` learned" if r["noise"] == "learned"
                 else f"`sigma2` = {r['sigma2_ppca']:g}")
        variances = c["vae_posterior_var"] + c["ppca_posterior_var"]
        out.append(f"{label}: {used} dimension{'s' * (used != 1)} used, {c['vae']} collapsed"
                   + (f" (variances {_range(variances, '.3f')})" if not c["vae"] else ""))
    return "In numbers: " + "; ".join(out) + "."


#: ``budget.likelihood_bias`` of vampprior.json, in words.
_BIAS_START = {"zero": "zero", "marginal": "the training pixels' log-odds"}


def vampprior_table(data: dict) -> str:
    """Per row and seed: test ELBO, IS log p(x), rate, collapse; the budget against the paper's."""
    b, paper = data["budget"], data["paper"]
    lines = [_row(["row", "prior", "KL weight", "seed", "test ELBO", "test log p(x)",
                   "test rate (nats)", "collapsed"]), _row(["---"] * 8)]
    for r in data["rows"]:
        weight = ("1 (constant)" if r["beta_schedule"] == "constant" else
                  f"{r['beta_schedule']} 0 -> 1 over {r['kl_warmup_steps']} steps")
        for i, seed in enumerate(r["seeds"]):
            lines.append(_row([r["row"], r["prior"], weight, seed, f"{r['test_elbo'][i]:.2f}",
                               f"{r['test_log_likelihood'][i]:.2f}", f"{r['test_rate'][i]:.2f}",
                               "**yes**" if r["collapsed"][i] else "no"]))
    lines.append("")
    collapsed = [f"`{r['row']}` in {sum(r['collapsed'])} of {len(r['seeds'])} seeds"
                 for r in data["rows"] if any(r["collapsed"])]
    lines.append(
        f"Collapse: a test rate under {b['collapsed_rate']} nats. "
        + ("Collapsed: " + ", ".join(collapsed) + "." if collapsed else "No seed collapsed."))
    lines.append("")
    lines.append(
        f"Budget: {b['epochs']} epochs over {b['train_size']} training images (batches of "
        f"{b['batch_size']}, Adam at {b['learning_rate']:g}), the warm-up over the first "
        f"{b['warmup_epochs']:g} epochs, {b['pseudo_inputs']} pseudo-inputs, the decoder's "
        f"output bias starting at {_BIAS_START[b.get('likelihood_bias', 'zero')]}; test on "
        f"{b['test_size']} images, log p(x) with K = {b['ll_samples']}. The paper: warm-up "
        f"over {paper['warmup_epochs']} epochs of up to {paper['max_epochs']} on all 60000 "
        f"images, {paper['pseudo_inputs']} pseudo-inputs, Adam at {paper['learning_rate']:g}, "
        f"batches of {paper['batch_size']}, K = 5000. Measured {data['date'][:10]} "
        f"({data['machine']}) with `{data['command']}`.")
    return "\n".join(lines)


def vampprior_epochs(data: dict) -> str:
    """Training rate (mean over seeds) and KL weight after chosen epochs, per row."""
    n = len(data["rows"][0]["train_rate_by_epoch"])
    epochs = sorted({e for e in (1, 2, 3, 5, 10, 20, n) if e <= n})
    lines = [_row(["row", *(f"epoch {e}" for e in epochs)]), _row(["---"] * (len(epochs) + 1))]
    for r in data["rows"]:
        lines.append(_row([r["row"], *(f"{r['train_rate_by_epoch'][e - 1]:.2f} "
                                       f"(beta {r['beta_by_epoch'][e - 1]:.2f})"
                                       for e in epochs)]))
    return "\n".join(lines)


def vampprior_means(data: dict) -> str:
    """Mean over seeds of each row, and the warm-up's effect on the VampPrior."""
    lines = [_row(["row", "test ELBO", "test log p(x)", "test rate", "s / epoch"]),
             _row(["---"] * 5)]
    for r in data["rows"]:
        lines.append(_row([r["row"], f"{statistics.mean(r['test_elbo']):.2f}",
                           f"{statistics.mean(r['test_log_likelihood']):.2f}",
                           f"{statistics.mean(r['test_rate']):.2f}",
                           f"{r['seconds_per_epoch']:.1f}"]))
    rows = {r["row"]: r for r in data["rows"]}
    lines.append("")
    for row, ref in (("vamp_warm", "gaussian"), ("vamp_warm", "gaussian_warm"),
                     ("vamp_warm", "vamp")):
        if row not in rows or ref not in rows:
            continue
        a, b = rows[row], rows[ref]
        ll = [x - y for x, y in zip(a["test_log_likelihood"], b["test_log_likelihood"])]
        el = [x - y for x, y in zip(a["test_elbo"], b["test_elbo"])]
        lines.append(f"`{row}` minus `{ref}`, per seed: test log p(x) "
                     + "/".join(f"{v:+.2f}" for v in ll) + ", test ELBO "
                     + "/".join(f"{v:+.2f}" for v in el) + " nats.  ")
    return "\n".join(lines)


# ------------------------------------------------------------------------ likelihood_table


def likelihood_table(data: dict) -> str:
    """The binarised-MNIST table: per row how far its schedule ran, the test NLL with its
    K and number of test images, the papers' and pythae's numbers, times and device."""
    scope = (f"K = {data['ll_samples']}, " + ("all 10000 test images" if data["eval_images"]
                                              == 10000 else
                                              f"the first {data['eval_images']} of the 10000 "
                                              "test images"))
    lines = [_row(["row", "epochs run / schedule", f"test NLL ({scope}), nats",
                   "paper", "pythae", "train time", "evaluation time"]), _row(["---"] * 7)]
    for r in data["rows"]:
        se = f" +- {r['test_nll_se']:.2f}" if r.get("test_nll_se") is not None else ""
        warm = " (no KL warm-up)" if r["row"] == "vampprior" and not r["warmup"] else ""
        lines.append(_row([r["label"] + warm, f"{r['epochs_run']} / {r['schedule_epochs']}",
                           f"**{r['test_nll']:.2f}**{se}", f"{r['paper']:.2f}",
                           f"{r['pythae']:.2f}", f"{r['train_seconds'] / 60:.1f} min",
                           f"{r['eval_seconds'] / 60:.1f} min"]))
    budget = data["budget"]
    how = (f"about {budget['minutes_per_row']:g} minutes of training per row"
           if budget.get("minutes_per_row") else f"{budget['fraction']:g} of each schedule")
    lines += ["", f"Measured {data['date'][:10]} on {data['device']} (JAX {data['jax']}, load "
              f"average {data['load_average_end']:.1f} at the end) with `{data['command']}`: "
              + ("the full schedules" if data["full_schedules"] else
                 f"a budget of {how}, so every row is far from its paper's number")
              + ("." if data["all_test_images"] else
                 f"; scored with {scope}, not the papers' K = 5000 on all 10000 images.")
              + " Train time: the epochs alone, without compilation; evaluation time: the "
              "scoring, its compilation included."]
    return "\n".join(lines)


TABLES = {
    "vampprior-table": lambda: vampprior_table(_data("vampprior.json")),
    "vampprior-means": lambda: vampprior_means(_data("vampprior.json")),
    "vampprior-epochs": lambda: vampprior_epochs(_data("vampprior.json")),
    "likelihood-table": lambda: likelihood_table(_data("likelihood_table.json")),
    "pyro-vae-epochs": lambda: pyro_vae_epochs(_data("pyro_vae.json")),
    "pyro-vae-seeds": lambda: pyro_vae_seeds(_data("pyro_vae.json")),
    "pyro-vae-run": lambda: pyro_vae_run(_data("pyro_vae.json")),
    "numerics-vamp": lambda: numerics_vamp(_data("numerics.json")),
    "numerics-planar": lambda: numerics_planar(_data("numerics.json")),
    "numerics-em": lambda: numerics_em(_data("numerics.json")),
    "numerics-restarts": lambda: numerics_restarts(_data("numerics.json")),
    "numerics-measured": lambda: numerics_measured(_data("numerics.json")),
    "iwae-table": lambda: iwae_table(_data("iwae_compare.json")),
    "rate-distortion-table": lambda: rate_distortion_table(_data("rate_distortion.json")),
    "estimator-variance-table": lambda: estimator_variance_table(
        _data("estimator_variance.json")),
    "estimator-variance-ppca": lambda: estimator_report_table(_data("estimator_report.json")),
    "linear-vae-timing": lambda: linear_vae_timing(_data("linear_vae_ppca.json")),
    "linear-vae-table": lambda: linear_vae_table(_data("linear_vae_ppca.json")),
    "linear-vae-mc-check": lambda: linear_vae_mc_check(_data("linear_vae_ppca.json")),
    "linear-vae-claim1": lambda: linear_vae_claim1(_data("linear_vae_ppca.json")),
    "linear-vae-plateau": lambda: linear_vae_plateau(_data("linear_vae_ppca.json")),
    "linear-vae-claim2": lambda: linear_vae_claim2(_data("linear_vae_ppca.json")),
    "linear-vae-figure": lambda: linear_vae_figure(_data("linear_vae_ppca.json")),
}
