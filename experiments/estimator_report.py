"""``jvae.testing.estimator_report`` for every built-in estimator on the PPCA reference.

The reference is :func:`jvae.testing.ppca_reference` (D = 5, k = 2, sigma = 0.5, orthogonal
columns) at ``q`` one posterior standard deviation off the exact posterior with standard
deviations 0.8 times too small (``ref.params(1.0, 0.8)``), on a batch of ``--batch``
observations drawn from the model. Every row draws ``--num-draws`` gradients and reports the
bias in standard errors against

* the exact ELBO gradient (:func:`jvae.testing.exact_elbo_gradient`) for the ELBO
  estimators (for ``scaled``, whose running std ``s`` divides the inference gradient, the
  exact gradient with its inference part divided by ``s``), and
* the mean of ``--num-draws`` IWAE draws (with their standard errors) for the estimators of
  the K = 5 importance-weighted bound's gradient (STL, DReG, VIMCO);

the total variance of the inference-network gradient and of the whole gradient relative to
the reparameterised ELBO estimator (one sample, analytic KL) on the same point, the median
SNR of the inference gradient and seconds per 1000 draws (after compilation). The running
statistics of ``centred``/``scaled`` are warmed up by 50 loss calls at that point and a
learned baseline is fitted by 300 Adam steps, as in ``tests/test_estimators.py``. The
mixture estimator needs a mixture posterior and is not in this table (it is tested against
an enumeration over components in ``tests/test_estimators.py``).

Writes ``OUTDIR/estimator_report.json`` (rows, settings, the markdown table) and prints the
table.

    python -m experiments.estimator_report       # writes docs/data/estimator_report.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax
import numpy as np
import optax

import jvae
from jvae import testing
from jvae.objectives import EstimatorState, RunningStd

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _warmed(objective, params, x, steps=50):
    """The objective's state after ``steps`` loss calls at the fixed point (running stats)."""
    est = objective.init(jax.random.key(2), x)
    step = jax.jit(lambda e, k: objective.loss(params, e, k, x)[1][1])
    for i in range(steps):
        est = step(est, jax.random.key(500 + i))
    return est


def _fitted_baseline(objective, params, x, steps=300):
    """A learned baseline fitted by Adam on its squared error at the fixed point."""
    est = objective.init(jax.random.key(1), x)
    opt = optax.adam(3e-2)
    opt_state = opt.init(est.params)

    @jax.jit
    def fit(est, opt_state, key):
        g = jax.grad(lambda bp: objective.loss(params, EstimatorState(bp, est.state), key,
                                               x)[0])(est.params)
        updates, opt_state = opt.update(g, opt_state)
        return EstimatorState(optax.apply_updates(est.params, updates), est.state), opt_state

    for i in range(steps):
        est, opt_state = fit(est, opt_state, jax.random.key(100 + i))
    return est


def _running_std(est) -> float:
    leaves = jax.tree.leaves(est.state, is_leaf=lambda s: isinstance(s, RunningStd))
    return float(np.prod([float(s.std) for s in leaves if isinstance(s, RunningStd)]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-draws", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outdir", type=pathlib.Path, default=ROOT / "docs" / "data")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    ref = testing.ppca_reference()
    model, n = ref.model, args.num_draws
    x = ref.sample(jax.random.key(1), args.batch)
    params = ref.params(1.0, 0.8)
    key = jax.random.key(args.seed)
    inf = testing.param_mask(params, "encoder", "posterior")
    exact = np.asarray(testing.exact_elbo_gradient(model, params, x))
    reparam = testing.gradient_draws(jvae.make_elbo_loss(model), params, x, n,
                                     jax.random.fold_in(key, 2))
    iwae = testing.gradient_draws(jvae.make_iwae_loss(model, 5), params, x, n,
                                  jax.random.fold_in(key, 4)).astype(np.float64)
    iwae_ref = (iwae.mean(0), iwae.std(0) / np.sqrt(n))

    def sfe(*cvs, **kw):
        return jvae.make_sfe_objective(model, control_variates=cvs, **kw)

    baseline = sfe(jvae.centred_reward(), jvae.learned_baseline((16,)))
    rows = [  # (label, objective, state, reference)
        ("reparameterised, analytic KL", jvae.make_elbo_loss(model, kl="analytic"), None, "elbo"),
        ("reparameterised, MC KL", jvae.make_elbo_loss(model, kl="mc"), None, "elbo"),
        ("SFE", sfe(), None, "elbo"),
        ("SFE, analytic KL", sfe(kl="analytic"), None, "elbo"),
        ("SFE + centred", sfe(jvae.centred_reward(0.8)), "warm", "elbo"),
        ("SFE + scaled", sfe(jvae.scaled_reward(0.8)), "warm", "scaled"),
        ("SFE + self-critic", sfe(jvae.self_critic()), None, "elbo"),
        ("SFE + centred + learned baseline", baseline, "fit", "elbo"),
        ("SFE (S=4)", sfe(num_samples=4), None, "elbo"),
        ("SFE + leave-one-out (S=4)", sfe(jvae.leave_one_out(), num_samples=4), None, "elbo"),
        ("SFE + self-critic + centred + scaled", sfe(jvae.self_critic(), jvae.centred_reward(0.8),
                                                     jvae.scaled_reward(0.8)), "warm", "scaled"),
        ("STL (K=1)", jvae.make_iwae_loss(model, 1, "stl"), None, "elbo"),
        ("IWAE (K=5)", jvae.make_iwae_loss(model, 5), None, None),
        ("STL (K=5)", jvae.make_iwae_loss(model, 5, "stl"), None, "iwae"),
        ("DReG (K=5)", jvae.make_iwae_loss(model, 5, "dreg"), None, "iwae"),
        ("VIMCO (K=5)", jvae.make_vimco_objective(model, 5), None, "iwae"),
    ]
    reports, notes = [], {}
    for label, objective, how, which in rows:
        state = None
        if how == "warm":
            state = _warmed(objective, params, x)
        elif how == "fit":
            state = _fitted_baseline(objective, params, x)
        elif isinstance(objective, jvae.Objective):
            state = objective.init(jax.random.key(0), x)
        reference, reference_se = None, 0.0
        if which == "elbo":
            reference = exact
        elif which == "scaled":
            s = _running_std(state)
            reference = np.where(inf, exact / s, exact)
            notes[label] = f"reference: inference part divided by the running std s = {s:.3f}"
        elif which == "iwae":
            reference, reference_se = iwae_ref
        names = {"elbo": "exact ELBO gradient", "iwae": f"IWAE (K=5) gradient, mean of {n} draws",
                 "scaled": "exact ELBO gradient, inference part / s"}
        report = testing.estimator_report(objective, model=ref, name=label, n=n, key=key,
                                          params=params, x=x, state=state, reference=reference,
                                          reference_se=reference_se, baseline=reparam,
                                          reference_name=names.get(which), print_report=False)
        print(report, flush=True)
        reports.append(report)
    table = testing.report_table(reports)
    elapsed = time.perf_counter() - start
    out = {
        "settings": {"num_draws": n, "batch": args.batch, "seed": args.seed,
                     "reference": "ppca_reference() (D=5, k=2, sigma=0.5), params(1.0, 0.8)"},
        "rows": [{**{k: v for k, v in r.as_dict().items()}, "note": notes.get(r.name)}
                 for r in reports],
        "table": table, "seconds": round(elapsed, 1),
        "host": {"machine": platform.machine(), "processor": platform.processor(),
                 "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]},
    }
    args.outdir.mkdir(parents=True, exist_ok=True)
    path = args.outdir / "estimator_report.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(table)
    for label, note in notes.items():
        print(f"{label}: {note}")
    print(f"wrote {path} in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
