"""Linear VAE vs probabilistic PCA (Lucas et al., 2019, "Don't blame the ELBO!").

For each case, fits PPCA in closed form (:func:`jvae.fit_ppca`, the maximum-likelihood
optimum; for a fixed noise variance :func:`jvae.ppca_fixed_noise`) and trains the linear VAE
(:func:`jvae.fit_linear_vae`: linear encoder, decoder ``W z + mu``, one shared noise variance,
jvae's reparameterised ELBO with Adam) on the same data, then reports per example, on the
training and the test data: the PPCA optimum's log-likelihood, the VAE's exact log-likelihood
(:func:`jvae.linear_vae_log_likelihood`) and its ELBO (closed form,
:func:`jvae.linear_vae_elbo`), the gaps, and the number of collapsed latent dimensions of
each (Lucas et al.'s (epsilon, delta)-collapse, epsilon = delta = 0.01). The cases: synthetic
PPCA data (D = 20, 3 true factors; k = 3 and k = 5), MNIST grey levels (the first 10000
training images, all 10000 test images; k = 2 and k = 10 with the noise learned) and MNIST
with k = 10 and the noise variance fixed above some eigenvalues, where PPCA's optimum has
zero columns and the VAE, trained by the ELBO, collapses the same dimensions.

    JVAE_DATA_DIR=../shared/data python -m experiments.linear_vae_ppca \\
        --json docs/data/linear_vae_ppca.json --figure docs/figures/linear_vae_ppca.png

``--quick`` runs a few epochs per case (a smoke test of the script).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import pathlib
import sys
import time

import numpy as np


EPS, DELTA = 0.01, 0.01          # Lucas et al.'s (epsilon, delta)-collapse thresholds

# name, data, k, fixed sigma2 (None: learned), epochs
CASES = (
    ("synthetic k=3", "synthetic", 3, None, 100),
    ("synthetic k=5", "synthetic", 5, None, 100),
    ("MNIST k=2", "mnist", 2, None, 100),
    ("MNIST k=10", "mnist", 10, None, 200),
    ("MNIST k=10, sigma2=2", "mnist", 10, 2.0, 100),
    ("MNIST k=10, sigma2=4.5", "mnist", 10, 4.5, 100),
)
# The figure's cases: the gap curves (left) and the posterior variances (right).


def load(name: str, seed: int = 0):
    """``(train [N, D], test [M, D])`` float32."""
    import jax
    import jax.numpy as jnp

    import jvae

    if name == "mnist":
        train = np.asarray(jvae.load_dataset("mnist", "train", limit=10000)).reshape(10000, -1)
        test = np.asarray(jvae.load_dataset("mnist", "test")).reshape(10000, -1)
        return jnp.asarray(train), jnp.asarray(test)
    rng = np.random.default_rng(seed)                # D = 20, 3 factors, noise sd 0.5
    q, _ = np.linalg.qr(rng.normal(size=(20, 3)))
    truth = jvae.PPCA(W=jnp.asarray(q * [3.0, 2.0, 1.0] @ _rotation(rng, 3), jnp.float32),
                      mu=jnp.asarray(rng.normal(size=20), jnp.float32),
                      sigma2=jnp.float32(0.25))
    _, x = jvae.ppca_sample(truth, jax.random.key(seed), 20000)
    return x[:10000], x[10000:]


def run_case(name, data, k, sigma2, epochs, train, test, seed=0) -> dict:
    import jax
    import jax.numpy as jnp

    import jvae

    start = time.perf_counter()
    ppca = jvae.fit_ppca(train, k)
    if sigma2 is not None:
        ppca = jvae.ppca_fixed_noise(ppca, sigma2)
    fit = jvae.fit_linear_vae(jax.random.key(seed), train, k,
                              noise="learned" if sigma2 is None else "fixed",
                              noise_scale=1.0 if sigma2 is None else math.sqrt(sigma2),
                              num_epochs=epochs)
    model, params = fit.model, fit.params
    seconds = time.perf_counter() - start
    opt_model, opt_params = jvae.ppca_to_vae(ppca)   # q = the exact posterior (orthogonal W)
    row = {"case": name, "data": data, "k": k, "epochs": epochs,
           "steps": int(fit.steps[-1]), "train_seconds": round(seconds, 1),
           "sigma2_vae": float(jvae.linear_vae_to_ppca(model, params).sigma2),
           "sigma2_ppca": float(ppca.sigma2), "noise": "learned" if sigma2 is None else "fixed"}
    for split, x in (("train", train), ("test", test)):
        opt = float(jnp.mean(jvae.ppca_log_likelihood(ppca, x)))
        exact = float(jnp.mean(jvae.linear_vae_log_likelihood(model, params, x)))
        elbo = float(jnp.mean(jvae.linear_vae_elbo(model, params, x)))
        row[split] = {"ppca": opt, "vae_log_px": exact, "vae_elbo": elbo,
                      "gap_log_px": opt - exact, "gap_elbo": opt - elbo}
    # jvae's own Monte Carlo ELBO (4 samples per test example) against the closed form.
    d, r = jvae.elbo_terms(model, params, jax.random.key(seed + 1), test, num_samples=4)
    row["test"]["vae_elbo_mc"] = float(-jnp.mean(d + r))
    var, col2, kl = jvae.latent_usage(model, params, train)
    pvar, pcol2, pkl = jvae.latent_usage(opt_model, opt_params, train)
    order, porder = np.argsort(-np.asarray(col2)), np.argsort(-np.asarray(pcol2))
    row["collapse"] = {
        "vae": int(jnp.sum(jnp.mean(kl < EPS, 0) >= 1 - DELTA)),
        "ppca": int(jnp.sum(jnp.mean(pkl < EPS, 0) >= 1 - DELTA)),
        "vae_posterior_var": np.asarray(var)[order].round(5).tolist(),
        "ppca_posterior_var": np.asarray(pvar)[porder].round(5).tolist(),
        "vae_col_sq_norm": np.asarray(col2)[order].round(5).tolist(),
        "ppca_col_sq_norm": np.asarray(pcol2)[porder].round(5).tolist(),
    }
    opt_train = row["train"]["ppca"]
    row["curve"] = {"steps": np.asarray(fit.steps).tolist(),
                    "gap_log_px": _rounded(opt_train - np.asarray(fit.train_log_likelihood)),
                    "gap_elbo": _rounded(opt_train - np.asarray(fit.train_elbo))}
    return row


def table(rows) -> str:
    lines = ["| case | sigma2 (VAE / PPCA) | split | PPCA optimum | VAE log p(x) | VAE ELBO "
             "| optimum - log p(x) | optimum - ELBO | collapsed (VAE / PPCA) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s2 = f"{r['sigma2_vae']:.4g} / {r['sigma2_ppca']:.4g}" + (
            " (fixed)" if r["noise"] == "fixed" else "")
        for split in ("train", "test"):
            v = r[split]
            first = split == "train"
            lines.append(
                f"| {r['case'] if first else ''} | {s2 if first else ''} | {split} "
                f"| {v['ppca']:.3f} | {v['vae_log_px']:.3f} | {v['vae_elbo']:.3f} "
                f"| {v['gap_log_px']:.4f} | {v['gap_elbo']:.4f} | "
                + (f"{r['collapse']['vae']} / {r['collapse']['ppca']} of {r['k']} |" if first
                   else "|"))
    return "\n".join(lines)


def plot_linear_vae(data: dict, path) -> pathlib.Path:
    """Left: gap to the PPCA optimum vs Adam steps. Right: posterior variances per dimension
    (:func:`experiments.figures.draw_linear_vae`, which also redraws it from
    ``docs/data/linear_vae_ppca.json``)."""
    from experiments.figures import draw_linear_vae

    draw_linear_vae(data, path)
    return pathlib.Path(path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results (and training curves) here")
    parser.add_argument("--figure", help="write the figure (PNG) here")
    parser.add_argument("--quick", action="store_true", help="3 epochs per case (smoke test)")
    parser.add_argument("--cases", nargs="*", help="run only these cases (by name)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    data_cache, rows = {}, []
    for name, data, k, sigma2, epochs in CASES:
        if args.cases and name not in args.cases:
            continue
        if data not in data_cache:
            data_cache[data] = load(data)
        train, test = data_cache[data]
        row = run_case(name, data, k, sigma2, 3 if args.quick else epochs, train, test)
        print(f"{name}: gap (train, exact) {row['train']['gap_log_px']:.4f}, "
              f"{row['train_seconds']} s", flush=True)
        rows.append(row)
    result = {"measured": datetime.date.today().isoformat(),
              "command": "python -m experiments.linear_vae_ppca" + (" --quick" if args.quick
                                                                      else ""),
              "collapse_thresholds": {"epsilon": EPS, "delta": DELTA},
              "wall_seconds": round(time.perf_counter() - start, 1), "rows": rows}
    print()
    print(table(rows))
    print(f"\nwall time {result['wall_seconds']} s")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.figure:
        plot_linear_vae(result, args.figure)
    return result


def _rotation(rng, k: int) -> np.ndarray:
    """A random ``k x k`` orthogonal matrix (so the true factors are not orthogonal columns)."""
    return np.linalg.qr(rng.normal(size=(k, k)))[0]


def _rounded(values) -> list[float]:
    return [float(f"{v:.4g}") for v in np.asarray(values, np.float64)]


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
