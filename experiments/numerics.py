"""Float32 numerics against float64 and reference libraries: the VampPrior's density, the planar
flow's log-determinant, EM for Gaussian mixtures against scikit-learn.

Three measurements, each comparing jvae (float32, as users run it) with a reference, and the
formulation jvae used before where that is the point:

- ``vamp``: ``log p(z)`` of a VampPrior-shaped mixture (``--vamp-components`` diagonal
  Gaussians in ``--vamp-dim`` dimensions, means ``N(0, 1)``, standard deviations ``sd *
  exp(0.2 N(0, 1))``) at points drawn from it, :func:`jvae.vamp_mixture` against the float64
  direct form, for ``sd`` = 0.11, 0.05, 0.019; also the expanded-square form
  (:func:`expanded_log_prob`) jvae used before;
- ``planar``: non-finite log-determinants of :class:`jvae.Planar` over ``--planar-points``
  random ``(u, w, b, z)`` per parameter scale (0.3, 1, 3, 10): parameters ``N(0, scale^2)``,
  points ``N(0, 1)``, D = 2; also of the product form (:func:`product_form_log_det`);
- ``em``: :func:`jvae.fit_gmm` in float32 against ``sklearn.mixture.GaussianMixture`` in
  float64 from the same start (iteration counts and final mean log-likelihoods) at the
  default ``tol`` (1e-3) and at ``tol`` 1e-6 (raised to float32's resolution, ``fit.tol``,
  which scikit-learn then also gets), and the best of ``n_init`` k-means++ restarts against
  scikit-learn's best with the same ``n_init`` on data where one start falls short.

Writes ``--json`` (default ``docs/data/numerics.json``); ``--docs`` also writes the page
``docs/results/numerics.md``, whose tables the docs build renders from that file.

    python -m experiments.numerics --docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import jvae

ROOT = pathlib.Path(__file__).resolve().parents[1]
SDS = (0.11, 0.05, 0.019)
SCALES = (0.3, 1.0, 3.0, 10.0)


# ----------------------------------------------------------------------------- VampPrior

def vamp_problem(sd: float, k: int, d: int, n: int, seed: int = 0):
    """``(loc [K, D], scale [K, D], z [N, D])`` in float64: means ``N(0, 1)``, standard
    deviations ``sd * exp(0.2 N(0, 1))``, points drawn from the uniform mixture."""
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=(k, d))
    scale = sd * np.exp(0.2 * rng.normal(size=(k, d)))
    comp = rng.integers(0, k, n)
    return loc, scale, loc[comp] + scale[comp] * rng.normal(size=(n, d))


def reference_log_prob(loc, scale, z, block: int = 256) -> np.ndarray:
    """``log 1/K sum_k N(z | loc_k, diag(scale_k^2))`` in float64, ``[N]``."""
    from scipy.special import logsumexp

    out = []
    for i in range(0, len(z), block):
        zb = z[i:i + block, None, :]
        log_n = np.sum(-0.5 * ((zb - loc) / scale) ** 2 - np.log(scale), -1)
        out.append(logsumexp(log_n, -1) - 0.5 * loc.shape[1] * np.log(2 * np.pi)
                   - np.log(len(loc)))
    return np.concatenate(out)


def expanded_log_prob(loc, scale, z):
    """The expanded-square form (``z^2 . 1/s^2 - 2 z . mu/s^2 + mu^2 . 1/s^2`` by matrix
    products) that jvae's VampPrior used before, in the dtype of its arguments."""
    precision = 1.0 / jnp.square(scale)
    quad = (jnp.square(z) @ precision.T - 2.0 * (z @ (loc * precision).T)
            + jnp.sum(jnp.square(loc) * precision, -1))
    log_norm = -jnp.sum(jnp.log(scale), -1) - 0.5 * loc.shape[-1] * np.log(2 * np.pi)
    return jax.nn.logsumexp(log_norm - 0.5 * jnp.maximum(quad, 0.0), -1) - np.log(len(loc))


def vamp_errors(sd: float, k: int, d: int, n: int, seed: int = 0) -> dict:
    """Largest and mean absolute error (nats) of the float32 forms against float64."""
    loc, scale, z = vamp_problem(sd, k, d, n, seed)
    ref = reference_log_prob(loc, scale, z)
    f32 = [jnp.asarray(a, jnp.float32) for a in (loc, scale, z)]
    prior = jvae.vamp_mixture(jvae.diag_gaussian(f32[0], f32[1]))
    new = np.asarray(jax.jit(prior.log_prob)(f32[2]), np.float64)
    old = np.asarray(jax.jit(expanded_log_prob)(*f32), np.float64)
    return {"sd": sd, "components": k, "dim": d, "points": n,
            "max_error": float(np.max(np.abs(new - ref))),
            "mean_error": float(np.mean(np.abs(new - ref))),
            "expanded_max_error": float(np.max(np.abs(old - ref))),
            "expanded_mean_error": float(np.mean(np.abs(old - ref)))}


# ----------------------------------------------------------------------------- planar flow

def planar_draws(rng, scale: float, n: int, d: int = 2):
    """``n`` independent float32 ``(u, w, b, z)``: parameters ``N(0, scale^2)``, points
    ``N(0, 1)`` (drawn with numpy: fast at any XLA optimisation level)."""
    def normal(*shape):
        return rng.standard_normal(shape, np.float32)
    return scale * normal(n, d), scale * normal(n, d), scale * normal(n), normal(n, d)


def product_form_log_det(u, w, b, z):
    """The planar log-det jvae used before: ``c = w^T u_hat`` as a rounded product, then
    ``log1p((1 - tanh^2) c)``."""
    wu = jnp.sum(w * u, -1, keepdims=True)
    w_sq = jnp.sum(w * w, -1, keepdims=True) + 1e-12
    u_hat = u + (jax.nn.softplus(wu) - 1.0 - wu) * w / w_sq
    t = jnp.tanh(jnp.sum(w * z, -1) + b)
    return jnp.log1p((1.0 - t ** 2) * jnp.sum(w * u_hat, -1))


@jax.jit
def _planar_counts(u, w, b, z):
    layer = jvae.Planar(u, w, b)
    y, log_det = layer.forward_and_log_det(z)
    return jnp.stack([jnp.sum(~jnp.isfinite(log_det)), jnp.sum(~jnp.all(jnp.isfinite(y), -1)),
                      jnp.sum(layer.c < -1.0),
                      jnp.sum(~jnp.isfinite(product_form_log_det(u, w, b, z)))])


def planar_counts(scale: float, points: int, chunk: int = 1_000_000, seed: int = 0) -> dict:
    """Counts over ``points`` draws at ``scale``: non-finite log-dets and outputs of
    :class:`jvae.Planar`, ``c = w^T u_hat < -1``, and non-finite product-form log-dets."""
    rng = np.random.default_rng(seed)
    total = sum(np.asarray(_planar_counts(*planar_draws(rng, scale, min(chunk, points - i))))
                for i in range(0, points, chunk))
    keys = ("non_finite_log_det", "non_finite_output", "c_below_minus_one",
            "product_form_non_finite")
    return {"scale": scale, "points": points, **{k: int(v) for k, v in zip(keys, total)}}


# ----------------------------------------------------------------------------- EM

def mixture_data(d: int, n: int, c: int, seed: int, spread: float) -> np.ndarray:
    """``n`` float32 points from ``c`` diagonal Gaussians of random sizes (Dirichlet(3)
    proportions), means ``N(0, spread^2)``, standard deviations uniform in [0.5, 1.2]."""
    rng = np.random.default_rng(seed)
    means = spread * rng.normal(size=(c, d))
    sizes = rng.multinomial(n, rng.dirichlet(np.full(c, 3.0)))
    return np.concatenate([rng.normal(m, rng.uniform(0.5, 1.2, d), size=(k, d))
                           for m, k in zip(means, sizes)]).astype(np.float32)


def _sklearn(x, c, **kw):
    from sklearn.mixture import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(c, covariance_type="full", reg_covar=1e-6, **kw).fit(
            x.astype(np.float64))


def em_same_start(d: int, seed: int, tol: float | None, c: int = 4) -> dict:
    """jvae float32 against scikit-learn float64 from one k-means++ start."""
    x = mixture_data(d, 800, c, seed, 2.0)
    init = jvae.fit_gmm(jax.random.PRNGKey(seed), x, c, max_iter=0).gmm
    fit = jvae.fit_gmm(None, x, c, init=init, max_iter=300,
                       **({} if tol is None else {"tol": tol}))
    w, m, cov = (np.asarray(a, np.float64) for a in init)
    gm = _sklearn(x, c, tol=float(fit.tol), max_iter=300, weights_init=w / w.sum(),
                  means_init=m, precisions_init=np.linalg.inv(cov))
    final = float(fit.log_likelihoods[int(fit.n_iter)])
    return {"dim": d, "seed": seed, "tol": tol if tol is not None else "default",
            "tol_used": float(fit.tol), "n_iter": int(fit.n_iter), "sklearn_n_iter": gm.n_iter_,
            "log_likelihood": final,
            "difference": final - float(gm.score(x.astype(np.float64)))}


def em_restarts(d: int, c: int, seed: int, n_init: int) -> dict:
    """Single k-means++ starts against the best of ``n_init`` (jvae) and scikit-learn's
    best of ``n_init`` k-means++ starts (tol 1e-6, float64)."""
    x = mixture_data(d, 600, c, seed, 3.0)
    start = time.perf_counter()
    fit = jvae.fit_gmm(jax.random.PRNGKey(seed), x, c, n_init=n_init, tol=1e-6, max_iter=300)
    seconds = time.perf_counter() - start
    gm = _sklearn(x, c, init_params="k-means++", n_init=n_init, random_state=seed, tol=1e-6,
                  max_iter=300)
    best = float(fit.log_likelihoods[int(fit.n_iter)])
    sk = float(gm.score(x.astype(np.float64)))
    return {"dim": d, "components": c, "seed": seed, "n_init": n_init,
            "restarts": [float(v) for v in np.asarray(fit.restarts)], "best": best,
            "sklearn_best": sk, "difference": best - sk,
            "starts_short_by_1e-3": int(np.sum(np.asarray(fit.restarts) < best - 1e-3)),
            "seconds": seconds}


def write_page(data: dict, page: pathlib.Path) -> None:
    """Write the results page: its prose and the markers that ``docs/hooks/tables_results.py``
    renders from ``data`` (the ``--json`` file) when the site is built; no number is typed."""
    text = f"""# Float32 numerics

jvae computes in float32. These checks compare its float32 results with float64 and with
libraries it does not contain, where rounding could bite; the tests
(`tests/test_vamp_prior.py`, `tests/test_planar_constraint.py`, `tests/test_classic_gmm.py`)
hold the same properties at smaller sizes. How jvae guards against a compiler that
miscompiles is in the [numerics guide](../guides/numerics.md).

## VampPrior density

`log p(z)` of a mixture of diagonal Gaussians (means `N(0, 1)`, standard deviations
`sd * exp(0.2 N(0, 1))`; its size under the table) at points drawn from it, in float32,
against float64. jvae evaluates each component in the direct form `((z - mu) / s)^2`, visiting
the components in chunks; the expanded square (`z^2/s^2 - 2 z mu/s^2 + mu^2/s^2` by matrix
products, jvae's form before) cancels when the components are narrow against `|z|`. Errors in
nats:

<!-- table: numerics-vamp -->

## Planar flow log-determinant

Non-finite values of `jvae.Planar` over random `(u, w, b, z)` (D = 2, parameters
`N(0, scale^2)`, points `N(0, 1)`), against the product form that computed
`w^T u_hat = softplus(w^T u) - 1` as a rounded product (below -1 by rounding when `w^T u` is
far below zero, giving NaN near `w^T z + b = 0`):

<!-- table: numerics-planar -->

## EM for Gaussian mixtures

`jvae.fit_gmm` in float32 against `sklearn.mixture.GaussianMixture` in float64 from the same
k-means++ start (800 points, 4 components), scikit-learn given the tolerance jvae used
(`fit.tol`: the requested `tol`, raised to 16 eps of the mean `|log p(x)|` when below it);
the difference is the final mean log-likelihood's, jvae minus scikit-learn:

<!-- table: numerics-em -->

Restarts (600 points, clusters of random sizes, tol 1e-6): the best of `n_init` k-means++
starts of `jvae.fit_gmm` (one vmapped program) against scikit-learn's best of `n_init`
k-means++ starts:

<!-- table: numerics-restarts -->

![VampPrior error by posterior sd; planar non-finite log-dets by scale](../figures/numerics.png)

<!-- table: numerics-measured -->

Regenerate the numbers (`docs/data/numerics.json`) and this page, then the figure:

```bash
{data['command']}
python -m experiments.figures numerics
```
"""
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vamp-components", type=int, default=500)
    parser.add_argument("--vamp-dim", type=int, default=50)
    parser.add_argument("--vamp-points", type=int, default=2000)
    parser.add_argument("--planar-points", type=int, default=10_000_000)
    parser.add_argument("--json", default=str(ROOT / "docs" / "data" / "numerics.json"))
    parser.add_argument("--docs", action="store_true", help="write docs/results/numerics.md")
    parser.add_argument("--page", default=str(ROOT / "docs" / "results" / "numerics.md"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data = {"vamp": [vamp_errors(sd, args.vamp_components, args.vamp_dim, args.vamp_points)
                     for sd in SDS]}
    print(json.dumps(data["vamp"], indent=1), flush=True)
    data["planar"] = [planar_counts(s, args.planar_points) for s in SCALES]
    print(json.dumps(data["planar"], indent=1), flush=True)
    data["em"] = [em_same_start(d, seed, tol) for d in (3, 5, 10) for seed in (0, 1, 2)
                  for tol in (None, 1e-6)]
    print(json.dumps(data["em"], indent=1), flush=True)
    data["restarts"] = [em_restarts(5, 6, 0, 8), em_restarts(10, 5, 0, 8)]
    print(json.dumps(data["restarts"], indent=1), flush=True)
    data.update({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m experiments.numerics "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "jax": jax.__version__})
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")
    if args.docs:
        write_page(data, pathlib.Path(args.page))
        print(f"wrote {args.page}")
    return data


if __name__ == "__main__":
    main()
