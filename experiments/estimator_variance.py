"""Variance of the inference-network gradient of ELBO estimators at a fixed point of training.

For each setup (the MNIST VAE of ``configs/pytorch_example.py`` and the DPM2 notebook's
Fashion-MNIST VAE of ``configs/fashion_mnist_dpm2.py``) the script

1. trains the model briefly (``--pretrain-steps``, Adam at the config's learning rate) and
   freezes its parameters: the Gaussian-posterior model with the reparameterised ELBO, and a
   second model with a mixture posterior (``--components``) with the mixture estimator (the
   reparameterised ELBO does not apply to a mixture);
2. for every estimator, warms up its state at the frozen point (running mean / std of the
   centred and scaled control variates: ``--warmup-steps`` loss calls on training batches;
   a learned baseline: one Newton step on its output bias, then ``--baseline-steps`` Adam
   steps on its squared error), then holds that state fixed;
3. draws ``--num-draws`` independent gradient estimates on one fixed batch of ``--batch``
   training images (``jax.vmap`` over keys of ``jax.grad`` of the objective's loss), keeps the
   inference-network parameters (the ``encoder`` and ``posterior`` subtrees) and reports the
   total variance ``tr Cov[g]`` (sum of per-coordinate variances), its ratio to the
   reparameterised estimator, the signal-to-noise ratio ``|E g|^2 / tr Cov[g]`` and a bias
   check against a reference estimator;
4. trains every estimator from the same initialisation for ``--train-steps`` steps with one
   optimiser for all, the reparameterised ELBO included: the notebook's SFE recipe as
   ``configs/fashion_mnist_dpm2.py`` encodes it (RMSprop, learning rate 5e-4 for the
   generative model, 1e-4 for the inference network and a learned baseline, and its
   ``cv_decay``), and reports the Monte Carlo ELBO on the test images.

Control variates are built from the config names (``objective.control_variates``); the
score-function signal is the full ``log p(x, z) - log q(z|x)`` (the notebook's NVIL;
``objective.kl = "auto"`` means Monte Carlo for ``sfe``), so the whole inference gradient is
in the score term and ``scaled`` divides all of it by its running std s.

Writes ``OUTDIR/estimator_variance.{md,json,png}`` and prints the tables.

    JVAE_DATA_DIR=../shared/data python -m experiments.estimator_variance
    JVAE_DATA_DIR=../shared/data python -m experiments.estimator_variance --setups fashion \
        --image-size 28 --limit-train 10000 --num-draws 256
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

import jvae
from experiments.configs import fashion_mnist_dpm2, pytorch_example
from jvae import VAE, EstimatorState, TrainState, as_objective, make_train_epoch, testing

SETUPS = {"mnist": pytorch_example, "fashion": fashion_mnist_dpm2}
INFERENCE_MODULES = ("encoder", "posterior")


class Estimator(NamedTuple):
    """One row: a label, the config's objective name and control variates, and the model
    (``"gaussian"`` posterior or ``"mixture"`` posterior)."""

    label: str
    objective: str
    control_variates: tuple[str, ...] = ()
    model: str = "gaussian"


ESTIMATORS = (
    Estimator("reparam", "elbo"),
    Estimator("sfe", "sfe"),
    Estimator("sfe+centred", "sfe", ("centred",)),
    Estimator("sfe+scaled", "sfe", ("scaled",)),
    Estimator("sfe+self_critic", "sfe", ("self_critic",)),
    Estimator("sfe+baseline", "sfe", ("baseline",)),
    # The notebook's CVChain(CentredReward(), Baseline(...), ScaledReward()).
    Estimator("sfe+centred+baseline+scaled", "sfe", ("centred", "baseline", "scaled")),
    # Every control variate; self_critic first (it subtracts an untransformed signal).
    Estimator("sfe+self_critic+centred+baseline+scaled", "sfe",
              ("self_critic", "centred", "baseline", "scaled")),
    Estimator("mixture [mix]", "mixture", (), "mixture"),
    Estimator("sfe [mix]", "sfe", (), "mixture"),
)
ESTIMATORS_BY_LABEL = {e.label: e for e in ESTIMATORS}
REFERENCE = {"gaussian": "reparam", "mixture": "mixture [mix]"}

# Real settings (roughly 15 minutes on two busy CPU cores for both setups), the fashion
# setup's smaller ones (64x64 is slow on a CPU) and the --fast ones of the smoke test.
DEFAULTS = dict(num_draws=512, batch=128, pretrain_steps=800, train_steps=600, limit_train=20000,
                limit_eval=2000, warmup_steps=100, baseline_steps=400, image_size=0)
FAST = dict(num_draws=16, batch=32, pretrain_steps=0, train_steps=8, limit_train=512,
            limit_eval=128, warmup_steps=5, baseline_steps=5, image_size=8)
SETUP_DEFAULTS = {"fashion": dict(num_draws=128, train_steps=200, pretrain_steps=400,
                                  limit_train=10000)}


# ------------------------------------------------------------------------------ configs

def setup_config(name: str, args) -> Any:
    """The setup's config with the script's data options applied."""
    c = SETUPS[name].get_config()
    c.dataset.limit_train = int(args.limit_train)
    c.dataset.limit_eval = int(args.limit_eval)
    c.dataset.eval_split = "test"
    if name == "mnist":
        # A proper Bernoulli likelihood: statically binarised MNIST (the example uses grey
        # levels); train on (a subset of) the 50000 training images.
        c.dataset.binarize = "static"
        c.dataset.train_split = "train"
    if args.image_size:
        native = 28
        c.dataset.resize = 0 if int(args.image_size) == native else int(args.image_size)
    c.checkpoint_every = 0
    c.figures = False
    return c


def sfe_recipe():
    """The DPM2 notebook's score-function training recipe as ``configs/fashion_mnist_dpm2.py``
    encodes it (variant ``estimator=sfe,cv=baseline``): RMSprop with parameter groups
    (generative model 5e-4, inference network 1e-4, learned baseline 1e-4) and the
    notebook's running-estimate weight (``objective.cv_decay``)."""
    return fashion_mnist_dpm2.get_config("estimator=sfe,cv=baseline")


def describe_recipe() -> str:
    r = sfe_recipe()
    groups = ", ".join(f"{k} {v:g}" for k, v in dict(r.optim.param_groups).items())
    extra = "".join(f", {k} {r.optim[k]:g}" for k in ("rmsprop_decay", "weight_decay")
                    if k in r.optim)
    return (f"{r.optim.name} (default lr {r.learning_rate:g}; {groups}; baseline "
            f"{r.objective.baseline_learning_rate:g}{extra}), cv_decay {r.objective.cv_decay:g}")


def estimator_config(base, est: Estimator, components: int):
    """``base`` with the estimator's objective and the common training optimiser: every
    estimator, the reparameterised one included, trains with :func:`sfe_recipe`'s settings."""
    c = base.copy_and_resolve_references()
    recipe = sfe_recipe()
    c.objective.name = est.objective
    c.objective.control_variates = tuple(est.control_variates)
    c.objective.kl = "auto"      # elbo: analytic KL (Gaussian q); sfe: the NVIL (MC) signal
    # Only the fields the estimator uses (validation refuses a field the run would ignore).
    if {"centred", "scaled"} & set(est.control_variates):
        c.objective.cv_decay = recipe.objective.cv_decay
    if "baseline" in est.control_variates:
        c.objective.baseline_hidden = tuple(recipe.objective.baseline_hidden)
        c.objective.baseline_learning_rate = recipe.objective.baseline_learning_rate
    if est.model == "mixture":
        c.model.posterior = "mixture"
        c.model.posterior_components = int(components)
    c.optim = recipe.optim.copy_and_resolve_references()
    c.learning_rate = recipe.learning_rate
    jvae.validate_config(c)
    return c


def pretrain_config(base, kind: str, components: int):
    """Config of the fixed point: the reparameterised ELBO (Gaussian q) or the mixture
    estimator (mixture q), with the setup's own optimiser (Adam)."""
    c = base.copy_and_resolve_references()
    if kind == "mixture":
        c.model.posterior = "mixture"
        c.model.posterior_components = int(components)
        c.objective.name = "mixture"
    else:
        c.objective.name = "elbo"
    jvae.validate_config(c)
    return c


# ------------------------------------------------------------------------------ training

def train_steps(config, model, init, data: jax.Array, num_steps: int, seed: int):
    """Train from the parameters ``init`` with the config's objective and optimiser for
    ``num_steps`` rounded to whole epochs of ``config.batch_size`` (at least one), so that
    one compiled epoch serves the run. Returns ``(params, per_step_losses)``."""
    objective = as_objective(jvae.build_loss(config, model))
    batch = int(config.batch_size)
    steps_per_epoch = data.shape[0] // batch
    optimizer = jvae.build_optimizer(config, steps_per_epoch=steps_per_epoch)
    train_key, est_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1))
    state = TrainState.create(init, optimizer, train_key, objective.init(est_key, data[:1]))
    epoch = make_train_epoch(objective, optimizer, batch)
    losses = []
    for _ in range(num_epochs(num_steps, steps_per_epoch)):
        state, _, step_losses = epoch(state, data)
        losses.append(np.asarray(step_losses))
    return state.params, np.concatenate(losses)


def num_epochs(num_steps: int, steps_per_epoch: int) -> int:
    return max(1, round(int(num_steps) / int(steps_per_epoch)))


def make_mc_elbo(model: VAE, batch_size: int = 500, num_samples: int = 4):
    """``elbo(params, key, data) -> {"elbo", "distortion", "rate"}``: means over the split of
    the Monte Carlo estimates ``mean_s [log p(x, z_s) - log q(z_s|x)]``,
    ``D = -mean_s log p(x|z_s)`` and ``R = mean_s [log q(z_s|x) - log p(z_s)]``,
    ``z_s ~ q(z|x)``. Works for every posterior (mixtures included), so all rows are
    evaluated alike. The split is padded to whole batches (masked), so one compiled batch
    function serves every call."""

    @jax.jit
    def per_batch(params, key, x, mask):
        q = model.apply(params, x, method=VAE.encode)
        z = q.sample(seed=key, sample_shape=(num_samples,))                      # [S, B, D]
        log_px_z = model.apply(params, z, method=VAE.decode).log_prob(x)         # [S, B]
        pz = model.apply(params, method=VAE.prior_distribution)
        rate = jnp.mean(q.log_prob(z) - pz.log_prob(z), axis=0)                  # [B]
        distortion = -jnp.mean(log_px_z, axis=0)
        return {k: jnp.sum(jnp.where(mask, v, 0.0))
                for k, v in (("distortion", distortion), ("rate", rate))}

    def elbo(params, key, data):
        n = data.shape[0]
        bs = min(batch_size, n)
        pad = (-n) % bs
        padded = jnp.concatenate([data, jnp.zeros((pad,) + data.shape[1:], data.dtype)])
        mask = jnp.arange(n + pad) < n
        total = {"distortion": 0.0, "rate": 0.0}
        for i, start in enumerate(range(0, n + pad, bs)):
            out = per_batch(params, jax.random.fold_in(key, i), padded[start:start + bs],
                            mask[start:start + bs])
            total = {k: total[k] + float(v) for k, v in out.items()}
        out = {k: v / n for k, v in total.items()}
        return {"elbo": -(out["distortion"] + out["rate"]), **out}

    return elbo


# ------------------------------------------------------------------ estimator state warm-up

def _is_baseline_output_bias(path) -> bool:
    names = [str(getattr(p, "key", getattr(p, "idx", p))) for p in path]
    return ("baseline" in names and len(names) >= 3 and names[-1] == "bias"
            and names[-2] == "Dense_0" and names[-3] == "params")


def warm_up(objective, params, est: EstimatorState, data: jax.Array, *, batch: int,
            warmup_steps: int, baseline_steps: int, key: jax.Array, lr: float = 1e-3
            ) -> EstimatorState:
    """Bring the estimator state to its value at the frozen ``params``.

    Running statistics: ``warmup_steps`` loss calls on random training batches, threading
    the state. Trainable estimator parameters (a learned baseline): then one Newton step on the
    baseline's output bias (its squared error is quadratic in the bias with curvature 2, so
    ``bias -= grad / 2`` moves the output to the mean of its target, which otherwise takes
    Adam thousands of steps when the signal is -100s of nats), then ``baseline_steps`` Adam
    steps on the estimator parameters, still threading the running statistics.
    """
    has_params = bool(jax.tree_util.tree_leaves(est.params))
    if not jax.tree_util.tree_leaves(est.state) and not has_params:
        return est
    n = data.shape[0]
    opt = optax.adam(lr)

    def grad_wrt_est(est, params, data, k):
        k_idx, k_loss = jax.random.split(k)
        x = jnp.take(data, jax.random.randint(k_idx, (batch,), 0, n), axis=0)

        def f(est_params):
            return objective.loss(params, EstimatorState(est_params, est.state), k_loss, x)

        return jax.grad(f, has_aux=True)(est.params)           # (grads, (aux, new_est))

    def scan(est, params, data, keys, fit):
        def step(carry, k):
            est, opt_state = carry
            g, (_, new) = grad_wrt_est(est, params, data, k)
            est_params = est.params
            if fit:
                updates, opt_state = opt.update(g, opt_state, est.params)
                est_params = optax.apply_updates(est.params, updates)
            return (EstimatorState(est_params, new.state), opt_state), None

        return jax.lax.scan(step, (est, opt.init(est.params)), keys)[0][0]

    @jax.jit
    def run(params, est, data, key):
        k_warm, k_newton, k_fit = jax.random.split(key, 3)
        if warmup_steps > 0:
            est = scan(est, params, data, jax.random.split(k_warm, warmup_steps), False)
        if has_params:
            g = jax.lax.map(lambda k: grad_wrt_est(est, params, data, k)[0],
                            jax.random.split(k_newton, 8))
            g = jax.tree.map(lambda a: jnp.mean(a, axis=0), g)
            newton = jax.tree_util.tree_map_with_path(
                lambda path, p, gp: p - 0.5 * gp if _is_baseline_output_bias(path) else p,
                est.params, g)
            est = EstimatorState(newton, est.state)
            if baseline_steps > 0:
                est = scan(est, params, data, jax.random.split(k_fit, baseline_steps), True)
        return est

    return run(params, est, data, key)


# ------------------------------------------------------------------------- measurement

def num_inference_parameters(params) -> int:
    """The number of parameters of the inference network (``INFERENCE_MODULES``)."""
    inner = params["params"]
    return sum(int(leaf.size) for k in inner if k in INFERENCE_MODULES
               for leaf in jax.tree.leaves(inner[k]))


def gradient_moments(objective, params, est: EstimatorState, x: jax.Array, key: jax.Array,
                     num_draws: int, chunk: int) -> dict:
    """Mean and per-coordinate variance of ``num_draws`` independent estimates of the
    gradient with respect to the inference-network parameters, on the fixed batch ``x`` with
    the estimator state held fixed (:func:`jvae.testing.gradient_moments`, ``chunk`` draws
    at a time), and the objective's aux at the first draw's key.

    Returns:
      ``{"mean": [P] float64, "var": [P] float64 (unbiased), "num_draws": int, "aux": dict}``.
    """
    mom = testing.gradient_moments(objective, params, x, num_draws, key, state=est,
                                   chunk_size=chunk, modules=INFERENCE_MODULES)
    first_key = jax.random.split(jax.random.fold_in(key, 0), chunk)[0]
    aux = jax.jit(lambda p, e, k, x: objective.loss(p, e, k, x)[1][0])(params, est, first_key, x)
    return {"mean": mom.mean, "var": mom.var, "num_draws": mom.count,
            "aux": {k: float(v) for k, v in aux.items()}}


def summarise(rows: dict[str, dict]) -> None:
    """Add total variance, SNR, ratio and the bias check to every row (in place)."""
    for label, r in rows.items():
        m = r["num_draws"]
        r["total_variance"] = float(np.sum(r["var"]))
        r["mean_sq_norm"] = float(np.sum(r["mean"] ** 2))
        # |E g|^2 estimated without the upward bias tr Cov / M of |mean of M draws|^2.
        r["snr"] = (r["mean_sq_norm"] - r["total_variance"] / m) / r["total_variance"]
        # `scaled` divides the score term by its running std s (>= 1). With the NVIL signal
        # the whole inference gradient is in the score term, so s * g is exactly the
        # estimator with the division undone: tr Cov * s^2 is its variance.
        r["scale"] = float(r["aux"].get("cv/running_std", 1.0))
        r["total_variance_unscaled"] = r["total_variance"] * r["scale"] ** 2
    ref_var = rows["reparam"]["total_variance"] if "reparam" in rows else float("nan")
    for label, r in rows.items():
        r["ratio_to_reparam"] = r["total_variance"] / ref_var
        r["ratio_to_reparam_unscaled"] = r["total_variance_unscaled"] / ref_var
        ref = rows.get(REFERENCE[r["model"]])
        if ref is None or ref is r:
            r["bias_check"] = None
            continue
        # For two unbiased estimators, E|m1 - m2|^2 = (trCov1/M1 + trCov2/M2): ratio ~ 1.
        # A `scaled` row estimates gradient / s: compare s * g (the division undone).
        expected = (r["total_variance_unscaled"] / r["num_draws"]
                    + ref["total_variance"] / ref["num_draws"])
        r["bias_check"] = float(np.sum((r["scale"] * r["mean"] - ref["mean"]) ** 2) / expected)


# ----------------------------------------------------------------------------- one setup

def _log(*a):
    print(*a, flush=True)


def run_setup(name: str, args, log=_log) -> dict:
    t_setup = time.perf_counter()
    opts = {k: getattr(args, k) for k in DEFAULTS}
    base = setup_config(name, args)
    datasets = jvae.load_data(base)
    train = jax.device_put(jnp.asarray(datasets.train))
    evals = jax.device_put(jnp.asarray(datasets.eval))
    shape = tuple(datasets.train.shape[1:])
    log(f"\n## {name}: {base.dataset.name} {shape[0]}x{shape[1]}, "
        f"{len(datasets.train)} training / {len(datasets.eval)} test images")
    seed = int(base.seed)
    key = jax.random.key(seed)
    k_measure, k_warm, k_eval = jax.random.split(jax.random.fold_in(key, 7), 3)

    batch_size = int(base.batch_size)
    spe = len(datasets.train) // batch_size
    pre_steps = num_epochs(args.pretrain_steps, spe) * spe if args.pretrain_steps > 0 else 0
    run_steps = num_epochs(args.train_steps, spe) * spe if args.train_steps > 0 else 0

    # 1. the fixed points (every run of a model kind starts from the same initialisation)
    models, inits, evaluators, frozen, fixed_elbo = {}, {}, {}, {}, {}
    for kind in ("gaussian", "mixture"):
        if not any(e.model == kind for e in args.estimators):
            continue
        c = pretrain_config(base, kind, args.components)
        models[kind] = jvae.build_model(c, shape)
        inits[kind] = jvae.init_params(models[kind], jax.random.key(seed), train[:1])
        evaluators[kind] = make_mc_elbo(models[kind])
        t0 = time.perf_counter()
        frozen[kind] = (train_steps(c, models[kind], inits[kind], train, pre_steps, seed)[0]
                        if pre_steps else inits[kind])
        fixed_elbo[kind] = evaluators[kind](frozen[kind], k_eval, evals)["elbo"]
        log(f"fixed point ({kind} q, {c.objective.name}, {pre_steps} Adam steps of "
            f"{batch_size}): test ELBO {fixed_elbo[kind]:.2f} "
            f"[{time.perf_counter() - t0:.0f}s]")

    # 2.-3. variance at the fixed point
    x = train[: args.batch]
    num_inf = {k: num_inference_parameters(p) for k, p in frozen.items()}
    rows: dict[str, dict] = {}
    for i, est_spec in enumerate(args.estimators):
        t0 = time.perf_counter()
        c = estimator_config(base, est_spec, args.components)
        model, params = models[est_spec.model], frozen[est_spec.model]
        objective = as_objective(jvae.build_loss(c, model))
        est = objective.init(jax.random.fold_in(k_warm, 1000 + i), train[:1])
        est = warm_up(objective, params, est, train, batch=args.batch,
                      warmup_steps=args.warmup_steps, baseline_steps=args.baseline_steps,
                      key=jax.random.fold_in(k_warm, i))
        chunk = int(max(1, min(args.num_draws, 2 ** 24 // max(num_inf[est_spec.model], 1))))
        mom = gradient_moments(objective, params, est, x, jax.random.fold_in(k_measure, i),
                               args.num_draws, chunk)
        rows[est_spec.label] = {"model": est_spec.model, "objective": est_spec.objective,
                                "control_variates": list(est_spec.control_variates), **mom}
        log(f"  {est_spec.label:42s} tr Cov {float(np.sum(mom['var'])):.4g} "
            f"({mom['num_draws']} draws) [{time.perf_counter() - t0:.0f}s]")
    summarise(rows)

    # 4. short training runs, same initialisation and optimiser for every estimator
    if args.train_steps > 0:
        for est_spec in args.estimators:
            if args.train_estimators and est_spec.label not in args.train_estimators:
                continue
            t0 = time.perf_counter()
            c = estimator_config(base, est_spec, args.components)
            params, losses = train_steps(c, models[est_spec.model], inits[est_spec.model],
                                         train, run_steps, seed)
            r = rows[est_spec.label]
            finite = bool(np.all(np.isfinite(losses))) and all(
                bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(params))
            r["train_finite"] = finite
            nan = float("nan")
            ev = (evaluators[est_spec.model](params, k_eval, evals) if finite
                  else {"elbo": nan, "distortion": nan, "rate": nan})
            r["test_elbo"], r["test_distortion"], r["test_rate"] = (
                ev["elbo"], ev["distortion"], ev["rate"])
            log(f"  train {est_spec.label:36s} test ELBO {r['test_elbo']:.2f} "
                f"(D {r['test_distortion']:.2f}, R {r['test_rate']:.2f}) "
                f"[{time.perf_counter() - t0:.0f}s]")

    settings = {
        "dataset": base.dataset.name, "image_size": shape[0], "binarize": base.dataset.binarize,
        "train_images": int(len(datasets.train)), "test_images": int(len(datasets.eval)),
        "latent_dim": int(base.latent_dim), "encoder_hidden": list(base.model.encoder_hidden),
        "posterior_components": int(args.components),
        "inference_parameters": num_inf, "fixed_point_test_elbo": fixed_elbo,
        "pretrain": f"{pre_steps} Adam({base.learning_rate:g}) steps of batch "
                    f"{batch_size}; Gaussian q: reparameterised ELBO, mixture q: "
                    "mixture estimator",
        "training": f"{run_steps} steps of batch {batch_size} from the same "
                    f"initialisation (seed {seed}), one optimiser for every row: "
                    f"{describe_recipe()}",
        "pretrain_steps_run": pre_steps, "train_steps_run": run_steps,
        "draws_run": {r["model"]: r["num_draws"] for r in rows.values()},
        "seconds": time.perf_counter() - t_setup,
    }
    settings = {**opts, **settings}
    return {"settings": settings, "rows": rows}


# ------------------------------------------------------------------------------ output

COLUMNS = ("estimator", "model", "tr Cov[g]", "ratio to reparam", "scale s",
           "ratio, s undone", "SNR", "bias check", "short-run test ELBO", "(rate)")


def _fmt(v, spec) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan"
    return format(v, spec)


def markdown(results: dict) -> str:
    out = ["# Inference-network gradient variance of ELBO estimators", ""]
    for name, res in results.items():
        s = res["settings"]
        out += [f"## {name}: {s['dataset']} {s['image_size']}x{s['image_size']} "
                f"({s['binarize']} binarisation)", "",
                f"- data: {s['train_images']} training images, {s['test_images']} test images; "
                f"latent {s['latent_dim']}; encoder {s['encoder_hidden']}",
                f"- fixed point: {s['pretrain']}; test ELBO "
                + ", ".join(f"{k} q {v:.2f}" for k, v in s["fixed_point_test_elbo"].items()),
                "- measurement: "
                + ", ".join(f"{k} q {v}" for k, v in s["draws_run"].items())
                + f" draws (whole chunks) on one batch of {s['batch']} training "
                "images; inference parameters: "
                + ", ".join(f"{k} q {v}" for k, v in s["inference_parameters"].items()),
                f"- warm-up: {s['warmup_steps']} loss calls (running mean/std), baseline: "
                f"Newton step on its output bias + {s['baseline_steps']} Adam(1e-3) steps",
                f"- short runs: {s['training']}", "",
                "| " + " | ".join(COLUMNS) + " |",
                "|" + "|".join(["---"] + ["---"] + ["---:"] * (len(COLUMNS) - 2)) + "|"]
        for label, r in res["rows"].items():
            out.append("| " + " | ".join([
                label, r["model"], _fmt(r["total_variance"], ".4g"),
                _fmt(r["ratio_to_reparam"], ".3g"), _fmt(r["scale"], ".3g"),
                _fmt(r["ratio_to_reparam_unscaled"], ".3g"), _fmt(r["snr"], ".3g"),
                _fmt(r["bias_check"], ".2f"), _fmt(r.get("test_elbo"), ".2f"),
                _fmt(r.get("test_rate"), ".2f")]) + " |")
        out.append("")
    out += [
        "Columns:", "",
        "- *tr Cov[g]*: the sum over the inference-network parameters (encoder and posterior "
        "head) of the per-coordinate variance of one estimate of the gradient of the "
        "batch-mean loss; *ratio to reparam*: divided by the reparameterised estimator's "
        "(for the [mix] rows the model is the mixture-posterior one, so the ratio compares "
        "models as well as estimators).",
        "- *scale s*: the running std that `scaled` divides the score term by (1 without it); "
        "*ratio, s undone*: tr Cov * s^2 over reparam's. With the NVIL signal the whole "
        "inference gradient is in the score term, so tr Cov * s^2 is exactly the variance "
        "of the same estimator without the division: at a fixed point `scaled` is a constant "
        "rescaling of the gradient (a smaller step), not a variance reduction, and this "
        "column is the fair comparison.",
        "- *SNR*: |E g|^2 / tr Cov[g], with |E g|^2 debiased by tr Cov / M (M draws); "
        "invariant to rescaling the whole gradient.",
        "- *bias check*: |mean - mean_ref|^2 / (tr Cov / M + tr Cov_ref / M) against the "
        "reference of the same model (reparam; the mixture estimator for [mix] rows). Its "
        "expectation is 1 when the two estimators have the same mean; it is a chi-square-like "
        "statistic with few effective degrees of freedom (the variance of a score-function "
        "gradient sits in few directions), so values from about 0.3 to 3 are consistent with "
        "equal means, and >> 1 (hundreds) means the means differ. For rows with `scaled` "
        "the check compares s * mean (the division undone) with the reference.",
        "- *short-run test ELBO*: Monte Carlo ELBO (4 samples per image) on the test images "
        "after the short training run (nan: diverged; -: not trained); *(rate)*: its rate "
        "R = E_q[log q(z|x) - log p(z)] (near 0: the posterior collapsed onto the prior).", ""]
    return "\n".join(out)


def plot(results: dict, path: pathlib.Path) -> pathlib.Path:
    """One horizontal bar panel per setup: tr Cov[g] per estimator on a log scale (bars), and
    with the `scaled` division undone (black ticks, where it differs)."""
    n = len(results)
    labels_max = max(len(r["rows"]) for r in results.values())
    fig = Figure(figsize=(6.5 * n, 0.45 * labels_max + 1.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    colours = {"gaussian": "tab:blue", "mixture": "tab:orange"}
    for ax, (name, res) in zip(axes, results.items()):
        rows = res["rows"]
        labels = list(rows)
        y = np.arange(len(labels))[::-1]
        vals = [rows[k]["total_variance"] for k in labels]
        ax.barh(y, vals, color=[colours[rows[k]["model"]] for k in labels])
        for yi, k in zip(y, labels):
            r = rows[k]
            if r["scale"] != 1.0:
                ax.plot([r["total_variance_unscaled"]] * 2, [yi - 0.4, yi + 0.4], "k-", lw=2)
            ax.annotate(f"x{r['ratio_to_reparam']:.3g}", (r["total_variance"], yi),
                        textcoords="offset points", xytext=(3, -3), fontsize=7)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xscale("log")
        s = res["settings"]
        ax.set_title(f"{name} {s['image_size']}x{s['image_size']}: "
                     f"{min(s['draws_run'].values())}+ draws, batch {s['batch']}", fontsize=10)
        ax.set_xlabel("tr Cov[inference-network gradient] (log scale)")
        ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=c) for c in colours.values()] + [
        Line2D([], [], color="k", lw=2)]
    fig.legend(handles, ["Gaussian q", "mixture q", "'scaled' division undone (x s^2)"],
               loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _jsonable(results: dict) -> dict:
    out = {}
    for name, res in results.items():
        rows = {label: {k: v for k, v in r.items() if k not in ("mean", "var")}
                for label, r in res["rows"].items()}
        out[name] = {"settings": res["settings"], "rows": rows}
    return out


# -------------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outdir", default="runs/estimator_variance")
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--estimators", nargs="+", default=None,
                   help="subset of row labels (default: all): "
                        + ", ".join(e.label for e in ESTIMATORS))
    p.add_argument("--train-estimators", nargs="+", default=None,
                   help="rows that get a short training run (default: all)")
    p.add_argument("--num-draws", type=int, help="gradient draws per estimator "
                   "(default 512; 128 for fashion), rounded up to whole chunks")
    p.add_argument("--batch", type=int, help="examples in the fixed batch (default 128)")
    p.add_argument("--train-steps", type=int, help="steps of each short training run "
                   "(default 600; 200 for fashion; 0: skip), rounded to whole epochs")
    p.add_argument("--pretrain-steps", type=int, help="steps to the fixed point "
                   "(default 800; 400 for fashion), rounded to whole epochs; 0: the "
                   "initialisation is the fixed point (--fast)")
    p.add_argument("--limit-train", type=int, help="training images (default 20000; 10000 for "
                   "fashion; 0: all)")
    p.add_argument("--limit-eval", type=int, help="test images (default 2000; 0: all)")
    p.add_argument("--image-size", type=int, help="resize images to this side (default 0: the "
                   "setup's own, 28 for mnist and 64 for fashion)")
    p.add_argument("--warmup-steps", type=int, help="loss calls warming up running "
                   "statistics (default 100)")
    p.add_argument("--baseline-steps", type=int, help="Adam steps fitting a learned baseline "
                   "at the fixed point (default 400)")
    p.add_argument("--components", type=int, default=2, help="mixture-posterior components")
    p.add_argument("--fast", action="store_true", help="tiny settings (smoke test)")
    return p.parse_args(argv)


def _resolve(args, setup: str):
    """Per-setup settings: explicit options, else --fast, else the setup's defaults."""
    a = argparse.Namespace(**vars(args))
    for k, v in DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(a, k, FAST[k] if args.fast else SETUP_DEFAULTS.get(setup, {}).get(k, v))
    known = {e.label for e in ESTIMATORS}
    unknown = (set(args.estimators or ()) | set(args.train_estimators or ())) - known
    if unknown:
        raise SystemExit(f"unknown estimators {sorted(unknown)}; choose from {sorted(known)}")
    a.estimators = ESTIMATORS
    if args.estimators:
        # The reparameterised row (and the mixture estimator for [mix] rows) are the references.
        wanted = set(args.estimators) | {"reparam"}
        if any(ESTIMATORS_BY_LABEL[w].model == "mixture" for w in args.estimators):
            wanted.add(REFERENCE["mixture"])
        a.estimators = tuple(e for e in ESTIMATORS if e.label in wanted)
    return a


def main(argv=None) -> dict:
    args = parse_args(argv)
    outdir = pathlib.Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for setup in args.setups:
        results[setup] = run_setup(setup, _resolve(args, setup))
    text = markdown(results)
    print("\n" + text)
    (outdir / "estimator_variance.md").write_text(text)
    (outdir / "estimator_variance.json").write_text(json.dumps(_jsonable(results), indent=2))
    png = plot(results, outdir / "estimator_variance.png")
    print(f"wrote {outdir / 'estimator_variance.md'}, {outdir / 'estimator_variance.json'}, {png}")
    return _jsonable(results)


if __name__ == "__main__":
    main()
