"""Signal-to-noise ratio of IWAE-family gradient estimators against the number of samples K.

Reproduces the laws of Rainforth et al. (2018, "Tighter variational bounds are not necessarily
better"): with K importance samples the IWAE gradient's SNR falls like ``K^(-1/2)`` for the
inference network and grows like ``K^(1/2)`` for the generative network; and of Tucker et al.
(2019, DReG): the doubly reparameterised inference gradient's SNR grows with K. For every
estimator (``iwae``, ``dreg``, ``stl`` from :func:`jvae.make_iwae_loss`; ``vimco`` from
:func:`jvae.make_vimco_objective`, a score-function estimator that applies to any posterior,
this Gaussian one included) and every K, the script measures the SNR per parameter group
(inference: ``A, b`` / encoder and posterior; generative: ``mu`` / decoder and likelihood)
over many points with :mod:`jvae.testing`, and fits log-log slopes with bootstrap intervals:

* ``gaussian``: Rainforth et al.'s model (:func:`jvae.testing.gaussian_latent_reference`,
  20-D, 1024 observations), at ``--points`` points, each the closed-form optimum perturbed by
  ``N(0, 0.01^2)`` noise on every parameter with one observation of the data set;
* ``mnist``: the PyTorch-examples MLP VAE (``configs/pytorch_example.py``, statically
  binarised MNIST) trained briefly with the ELBO, at ``--mnist-points`` test images.

The SNR of a group is the root mean square over its coordinates and the points of
``|E g_i| / std g_i``, each square debiased for the draws' noise
(:func:`jvae.testing.group_snr`); a K whose SNR is not resolved from zero (3 standard errors
over points) is recorded and drawn but not fitted. The IWAE inference SNR is also given with
its signal taken from the DReG draws at the same points (same expectation, far less noise).

    JVAE_DATA_DIR=../shared/data python -m experiments.snr_scaling          # ~15 min, 2 cores
    python -m experiments.snr_scaling --setups gaussian --fast              # seconds

Writes ``--out`` (default ``docs/data/snr_scaling.json``); draw the figure with
``python -m experiments.figures snr_scaling``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import jvae
from experiments.configs import pytorch_example
from jvae import testing
from jvae.objectives import make_iwae_loss, make_vimco_objective

ESTIMATORS = ("iwae", "dreg", "stl", "vimco")
GROUPS = {"gaussian": {"inference": ("posterior",), "generative": ("prior",)},
          "mnist": {"inference": ("encoder", "posterior"),
                    "generative": ("decoder", "likelihood")}}
#: The papers' slopes of log SNR against log K (None: no law stated).
PAPER = {("iwae", "inference"): (-0.5, "Rainforth et al. (2018), Theorem 1"),
         ("iwae", "generative"): (0.5, "Rainforth et al. (2018), Theorem 1"),
         ("dreg", "inference"): (0.5, "Tucker et al. (2019): grows with K")}
DEFAULTS = dict(ks=(1, 3, 10, 30, 100, 300, 1000), points=16, draws=16000, quiet_draws=2000,
                big_k_draws=4000, vimco_max_k=300, mnist_points=4, mnist_draws=64,
                mnist_max_k=1000, train_epochs=3, limit_train=10000, num_boot=2000)
FAST = dict(ks=(1, 10, 100), points=8, draws=2000, quiet_draws=500, big_k_draws=2000,
            vimco_max_k=100, mnist_points=2, mnist_draws=16, mnist_max_k=10, train_epochs=1,
            limit_train=512, num_boot=200)


def make_estimator(model, name: str, k: int):
    """The loss (or VIMCO :class:`~jvae.Objective`) of estimator ``name`` with ``k`` samples."""
    if name == "vimco":
        return make_vimco_objective(model, k)
    return make_iwae_loss(model, k, name)


def draws_for(name: str, k: int, o) -> int:
    """Draws per point: many where the SNR is small (IWAE and VIMCO inference), fewer at the
    largest K (each draw costs K samples) and for the quiet DReG and STL."""
    if name in ("dreg", "stl"):
        return o.quiet_draws
    return o.big_k_draws if k >= 1000 or (name == "vimco" and k >= 300) else o.draws


def measure(model, params, x, masks, ks, draws, chunk, key, log, max_k=None) -> dict:
    """``{estimator: {"k": [...], group: [GroupSNR fields per K], "seconds": [...]}}``, and
    ``"iwae_dreg_signal"``: IWAE's inference SNR with the signal from the DReG draws."""
    out = {}
    moments = {}
    for ei, name in enumerate(ESTIMATORS):
        rows = {"k": [], "draws": [], "seconds": [], **{g: [] for g in masks}}
        for k in ks:
            if (name == "vimco" and (k < 2 or k > max_k["vimco"])) or k > max_k["all"]:
                continue
            n, t0 = draws(name, k), time.perf_counter()
            m = testing.gradient_moments_at_points(
                make_estimator(model, name, k), params, x, n,
                jax.random.fold_in(jax.random.fold_in(key, ei), k), chunk_size=chunk(k, n))
            moments[name, k] = m
            rows["k"].append(k)
            rows["draws"].append(int(m.count))
            rows["seconds"].append(round(time.perf_counter() - t0, 2))
            for g, mask in masks.items():
                rows[g].append(_summary(testing.group_snr(m, mask)))
            log(f"  {name:5s} K={k:4d} n={m.count:6d} " + " ".join(
                f"{g} {rows[g][-1]['snr']:.3g}{'' if rows[g][-1]['resolved'] else '(unres.)'}"
                for g in masks) + f" [{rows['seconds'][-1]:.0f}s]")
        out[name] = rows
    cross = {"k": [], "inference": []}
    for k in out["iwae"]["k"]:
        if ("dreg", k) in moments:
            cross["k"].append(k)
            cross["inference"].append(_summary(testing.group_snr(
                moments["iwae", k], masks["inference"], signal=moments["dreg", k])))
    out["iwae_dreg_signal"] = cross
    return out


def fit_slopes(series: dict, num_boot: int, seed: int) -> list[dict]:
    """One row per (estimator, group): the fitted slope over the resolved K, its bootstrap
    interval and the paper's slope."""
    rows = []
    for name, rows_e in series.items():
        for group in ("inference", "generative"):
            if group not in rows_e:
                continue
            s = rows_e[group]
            resolved = [r["resolved"] for r in s]
            row = {"estimator": name, "group": group, "k": rows_e["k"],
                   "resolved_k": [k for k, r in zip(rows_e["k"], resolved) if r]}
            paper = PAPER.get(("iwae" if name == "iwae_dreg_signal" else name, group))
            row["paper_slope"], row["paper_source"] = paper if paper else (None, None)
            if sum(resolved) >= 2:
                fit = testing.loglog_slope(rows_e["k"], [r["per_point"] for r in s],
                                           resolved=resolved, num_boot=num_boot, seed=seed)
                row.update(slope=fit.slope, low=fit.low, high=fit.high, level=fit.level,
                           num_boot=fit.num_boot)
            else:
                row.update(slope=None, low=None, high=None)
            rows.append(row)
    return rows


def gaussian_setup(o, key, log) -> dict:
    """Rainforth et al.'s model at ``o.points`` perturbed optima, one observation each."""
    ref = testing.gaussian_latent_reference(20, 1024, seed=o.seed)
    k_perturb, k_data, k_draw = jax.random.split(key, 3)
    params = jax.vmap(ref.perturbed)(jax.random.split(k_perturb, o.points))
    idx = np.asarray(jax.random.choice(k_data, ref.data.shape[0], (o.points,), replace=False))
    x = jnp.asarray(ref.data[idx])[:, None, :]                                    # [P, 1, D]
    opt = ref.optimum()
    masks = {g: testing.param_mask(opt, *mods) for g, mods in GROUPS["gaussian"].items()}
    log(f"## gaussian: D = 20, N = 1024, {o.points} points (perturbation sd 0.01)")
    series = measure(ref.model, params, x, masks, o.ks, lambda e, k: draws_for(e, k, o),
                     lambda k, n: max(1, min(n, 1_600_000 // (k * o.points))), k_draw, log,
                     {"vimco": o.vimco_max_k, "all": max(o.ks)})
    return {"model": "Rainforth et al. (2018): p(z) = N(mu, I), p(x|z) = N(z, I), "
                     "q(z|x) = N(Ax + b, 2/3 I), D = 20, N = 1024",
            "points": o.points, "data_seed": o.seed, "datapoints": idx.tolist(),
            "perturbation_sd": 0.01, "series": series}


def mnist_setup(o, key, log) -> dict:
    """The PyTorch-examples VAE, trained ``o.train_epochs`` epochs, at ``o.mnist_points``
    test images."""
    c = pytorch_example.get_config()
    c.dataset.binarize = "static"
    c.dataset.train_split = "train"
    c.dataset.limit_train = int(o.limit_train)
    c.dataset.limit_eval = 1000
    c.checkpoint_every = 0
    c.figures = False
    data = jvae.load_data(c)
    train = jnp.asarray(data.train)
    model = jvae.build_model(c, tuple(data.train.shape[1:]))
    params = jvae.init_params(model, jax.random.key(int(c.seed)), train[:1])
    objective = jvae.as_objective(jvae.build_loss(c, model))
    optimizer = jvae.build_optimizer(c, steps_per_epoch=len(train) // int(c.batch_size))
    state = jvae.TrainState.create(params, optimizer, jax.random.fold_in(key, 1),
                                   objective.init(key, train[:1]))
    epoch = jvae.make_train_epoch(objective, optimizer, int(c.batch_size))
    t0 = time.perf_counter()
    for _ in range(int(o.train_epochs)):
        state, _, losses = epoch(state, train)
    train_loss = float(np.mean(np.asarray(losses)[-20:]))
    log(f"## mnist: {o.train_epochs} epochs on {len(train)} images, last loss "
        f"{train_loss:.2f} [{time.perf_counter() - t0:.0f}s]; {o.mnist_points} test images")
    p = o.mnist_points
    params = jax.tree.map(lambda a: jnp.broadcast_to(a, (p,) + a.shape), state.params)
    x = jnp.asarray(data.eval[:p])[:, None]                                 # [P, 1, 28, 28, 1]
    masks = {g: testing.param_mask(state.params, *mods) for g, mods in GROUPS["mnist"].items()}
    series = measure(model, params, x, masks, o.ks, lambda e, k: o.mnist_draws,
                     lambda k, n: max(1, min(n, 16, 4000 // k)), jax.random.fold_in(key, 2),
                     log, {"vimco": min(o.vimco_max_k, o.mnist_max_k), "all": o.mnist_max_k})
    return {"model": "PyTorch-examples MLP VAE (784-400-20-400-784, Bernoulli), statically "
                     "binarised MNIST", "train_epochs": int(o.train_epochs),
            "train_images": int(len(train)), "train_loss_last_20_steps": train_loss,
            "points": p, "series": series}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setups", nargs="+", default=["gaussian", "mnist"],
                    choices=["gaussian", "mnist"])
    ap.add_argument("--fast", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/data/snr_scaling.json")
    for name, value in DEFAULTS.items():
        kind = (lambda s: tuple(int(v) for v in s.split(","))) if name == "ks" else int
        ap.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    args = ap.parse_args(argv)
    base = FAST if args.fast else DEFAULTS
    for name, value in base.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if min(args.ks) < 1 or args.points < 2:
        ap.error("--ks must be positive and --points at least 2")
    t0 = time.perf_counter()
    key = jax.random.key(args.seed)
    out = {"measured": datetime.date.today().isoformat(),
           "command": "python -m experiments.snr_scaling " + " ".join(argv or []),
           "host": f"{platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}",
           "seed": args.seed, "options": {k: getattr(args, k) for k in DEFAULTS},
           "paper": {f"{e} {g}": {"slope": s, "source": src} for (e, g), (s, src) in
                     PAPER.items()}, "setups": {}}
    setups = {"gaussian": gaussian_setup, "mnist": mnist_setup}
    for i, name in enumerate(args.setups):
        res = setups[name](args, jax.random.fold_in(key, i), print)
        res["fits"] = fit_slopes(res["series"], args.num_boot, args.seed)
        for r in res["fits"]:
            if r["slope"] is not None:
                print(f"  slope {r['estimator']:16s} {r['group']:10s} {r['slope']:+.3f} "
                      f"[{r['low']:+.3f}, {r['high']:+.3f}] (paper {r['paper_slope']})")
        out["setups"][name] = res
    out["seconds"] = round(time.perf_counter() - t0, 1)
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} [{out['seconds']:.0f}s]")
    return 0


def _summary(s: testing.GroupSNR) -> dict:
    return {"snr": None if np.isnan(s.snr) else s.snr, "mean_abs": s.mean_abs,
            "floor": s.floor, "standard_error": s.standard_error, "resolved": s.resolved,
            "per_point": [float(v) for v in s.per_point], "draws": s.draws}


if __name__ == "__main__":
    raise SystemExit(main())
