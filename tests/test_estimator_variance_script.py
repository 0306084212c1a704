"""Smoke test of ``experiments.estimator_variance`` and a check of its variance arithmetic.

The script runs once, in a subprocess, with ``--fast`` on 512 MNIST images resized to 8x8
(16 gradient draws, a few training steps; five of the ten rows, two of them with a short
training run). XLA's backend optimisation is turned down in that subprocess: the run is a few
dozen small programs that execute for milliseconds, so compiling them dominates. Only what is mathematically certain
and robust at that size is asserted: every row finite and positive, the score-function
estimator noisier than the reparameterised one (by orders of magnitude in practice), and the
mixture estimator quieter than the plain score function on the same mixture model.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import estimator_variance as ev

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAINED = ("sfe+centred+baseline+scaled", "mixture [mix]")
# Five of the ten rows (each row compiles its own programs; the control variates themselves
# are tested in test_estimators.py): the references come with them (--estimators).
ROWS = ("reparam", "sfe", "sfe+centred+baseline+scaled", "mixture [mix]", "sfe [mix]")


@pytest.fixture(scope="module")
def fast_run(jvae_data_dir, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("estimator_variance")
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT),
               JVAE_DATA_DIR=str(jvae_data_dir),
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                          + " --xla_backend_optimization_level=0").strip())
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.estimator_variance", "--fast", "--setups", "mnist",
         "--outdir", str(outdir),
         "--estimators", "sfe", "sfe+centred+baseline+scaled", "sfe [mix]",
         "--train-estimators", *TRAINED],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return outdir, json.loads((outdir / "estimator_variance.json").read_text()), proc.stdout


def test_every_row_is_finite_and_orderings_hold(fast_run):
    outdir, results, stdout = fast_run
    rows = results["mnist"]["rows"]
    assert list(rows) == [e.label for e in ev.ESTIMATORS if e.label in ROWS] == list(ROWS)
    for label, r in rows.items():
        for key in ("total_variance", "total_variance_unscaled", "ratio_to_reparam", "snr",
                    "mean_sq_norm", "scale"):
            assert np.isfinite(r[key]), (label, key, r[key])
        assert r["total_variance"] > 0, label
        assert r["scale"] >= 1.0, label            # the running std is floored at 1
        assert r["num_draws"] >= 16, label
        if label in TRAINED:
            assert r["train_finite"] and np.isfinite(r["test_elbo"]), label
            assert np.isfinite(r["test_rate"]) and np.isfinite(r["test_distortion"]), label
        else:
            assert "test_elbo" not in r, label
    assert rows["reparam"]["ratio_to_reparam"] == pytest.approx(1.0)
    assert rows["sfe"]["total_variance"] > 10 * rows["reparam"]["total_variance"]
    assert rows["sfe [mix]"]["total_variance"] > rows["mixture [mix]"]["total_variance"]
    settings = results["mnist"]["settings"]
    assert settings["image_size"] == 8 and settings["train_images"] == 512

    table = (outdir / "estimator_variance.md").read_text()
    for label in rows:
        assert f"| {label} | " in table, label
    assert table in stdout
    png = outdir / "estimator_variance.png"
    assert png.is_file() and png.stat().st_size > 5000


def test_gradient_moments_recovers_a_known_variance():
    """The gradient of ``sum(w * eps)`` with ``eps ~ N(0, I)`` is ``eps``: per-coordinate mean
    0 and variance 1, so tr Cov = number of inference parameters; the decoder's parameters are
    left out. 7 draws per chunk, 70 draws: the chunked (Chan) combination is exercised."""
    from jvae.objectives.base import EstimatorState, Objective

    shapes = {"encoder": (30,), "posterior": (5, 4), "decoder": (11,)}
    params = {"params": {k: jnp.ones(s) for k, s in shapes.items()}}

    def loss(p, est, key, x):
        inner = p["params"]
        total = 0.0
        for i, k in enumerate(sorted(inner)):
            eps = jax.random.normal(jax.random.fold_in(key, i), inner[k].shape)
            total = total + jnp.sum(inner[k] * eps * (3.0 if k == "decoder" else 1.0))
        return total + jnp.sum(x), ({"loss": total}, est)

    objective = Objective(lambda k, x: EstimatorState(), loss)
    mom = ev.gradient_moments(objective, params, EstimatorState(), jnp.zeros(2),
                              jax.random.key(0), num_draws=70, chunk=7)
    assert mom["num_draws"] == 70
    assert mom["mean"].shape == mom["var"].shape == (50,)
    # Per coordinate: sd of the mean 1/sqrt(70); of the variance sqrt(2/69).
    assert np.all(np.abs(mom["mean"]) < 5 / np.sqrt(70))
    assert np.sum(mom["var"]) == pytest.approx(50, rel=5 * np.sqrt(2 / 69 / 50))
    assert np.all((mom["var"] > 0.3) & (mom["var"] < 2.2))
