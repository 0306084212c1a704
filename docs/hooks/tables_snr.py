"""Tables of ``docs/results/snr_scaling.md``, rendered from ``docs/data/snr_scaling.json``
(written by ``python -m experiments.snr_scaling``); registered into
:data:`data_tables.TABLES`, so no number on that page is typed:

- ``snr-scaling-run``: when, how and with which sizes the data were measured;
- ``snr-scaling-slopes``: the fitted log-log slopes with their bootstrap intervals, beside
  the papers' slopes;
- ``snr-scaling-gaussian`` / ``snr-scaling-mnist``: the SNR of every estimator and K.
"""

from __future__ import annotations

from hook_common import load as _data, row as _row

FILE = "snr_scaling.json"
SETUPS = {"gaussian": "Gaussian model", "mnist": "MNIST VAE"}
LABELS = {"iwae_dreg_signal": "iwae (signal from the dreg draws)"}


def snr_run(data: dict) -> str:
    """One paragraph: date, command, host, time, and the sizes of each setup."""
    o = data["options"]
    lines = [f"Measured {data['measured']} with `{data['command'].strip()}` ({data['host']}; "
             f"{data['seconds'] / 60:.1f} minutes on the shared 2-core host, seed "
             f"{data['seed']}). K = {', '.join(map(str, o['ks']))}."]
    g = data["setups"].get("gaussian")
    if g:
        lines.append(f"Gaussian model: {g['points']} points (each the optimum perturbed by "
                     f"N(0, {g['perturbation_sd']}^2) on every parameter, with one observation "
                     f"each: {len(set(g['datapoints']))} distinct ones);"
                     f" {o['draws']} draws per point for iwae and vimco ({o['big_k_draws']} at "
                     f"their largest K), {o['quiet_draws']} for dreg and stl (rounded up to "
                     f"whole chunks: the tables give the counts); vimco up to K = "
                     f"{o['vimco_max_k']}.")
    m = data["setups"].get("mnist")
    if m:
        lines.append(f"MNIST VAE: trained {m['train_epochs']} epoch(s) on {m['train_images']} "
                     f"statically binarised training images (mean loss of the last 20 steps "
                     f"{m['train_loss_last_20_steps']:.2f} nats), measured at {m['points']} "
                     f"test images with {o['mnist_draws']} draws each, K up to "
                     f"{o['mnist_max_k']} (vimco up to {min(o['vimco_max_k'], o['mnist_max_k'])}).")
    return " ".join(lines)


def snr_slopes(data: dict) -> str:
    """Per setup, estimator and group: the fitted slope [interval] over the resolved K and
    the paper's slope."""
    lines = [_row(["setup", "estimator", "network", "fitted slope", "95% bootstrap interval",
                   "K fitted", "paper"]), _row(["---"] * 7)]
    for setup, res in data["setups"].items():
        for f in res["fits"]:
            name = LABELS.get(f["estimator"], f["estimator"])
            if f["slope"] is None:
                slope, ci = "not fitted (fewer than 2 resolved K)", ""
            else:
                slope = f"**{f['slope']:+.3f}**"
                ci = f"[{f['low']:+.3f}, {f['high']:+.3f}]"
            ks = ", ".join(map(str, f["resolved_k"]))
            paper = (f"{f['paper_slope']:+.1f} ({f['paper_source']})"
                     if f["paper_slope"] is not None else "none stated")
            lines.append(_row([SETUPS.get(setup, setup), name, f["group"], slope, ci, ks, paper]))
    return "\n".join(lines)


def snr_values(data: dict, setup: str) -> str:
    """SNR per estimator and network against K; an unresolved value is marked."""
    res = data["setups"][setup]
    ks = sorted({k for s in res["series"].values() for k in s["k"]})
    lines = [_row(["estimator", "network", *(f"K = {k}" for k in ks)]),
             _row(["---"] * (len(ks) + 2))]
    for name, s in res["series"].items():
        for group in ("inference", "generative"):
            if group not in s:
                continue
            by_k = dict(zip(s["k"], s[group]))
            cells = []
            for k in ks:
                r = by_k.get(k)
                if r is None:
                    cells.append("")
                elif r["snr"] is None or not r["resolved"]:
                    value = "<= 0" if r["snr"] is None else f"{r['snr']:.3g}"
                    cells.append(f"{value} (unresolved)")
                else:
                    cells.append(f"{r['snr']:.3g}")
            lines.append(_row([LABELS.get(name, name), group, *cells]))
    draws = {}
    for s in res["series"].values():
        for k, n in zip(s["k"], s.get("draws", [])):
            draws[k] = max(n, draws.get(k, 0))
    lines += ["", "Draws per point, largest over the estimators: "
              + ", ".join(f"K = {k}: {draws[k]}" for k in ks if k in draws) + "."]
    return "\n".join(lines)


TABLES = {
    "snr-scaling-run": lambda: snr_run(_data(FILE)),
    "snr-scaling-slopes": lambda: snr_slopes(_data(FILE)),
    "snr-scaling-gaussian": lambda: snr_values(_data(FILE), "gaussian"),
    "snr-scaling-mnist": lambda: snr_values(_data(FILE), "mnist"),
}
