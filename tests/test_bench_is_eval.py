"""The importance-sampling floor of ``experiments/bench_is_eval.py`` computes the evaluator's
estimate (same samples, so equal up to float rounding), and its table renders."""

import jax
import numpy as np

import jvae
from experiments import bench_is_eval, numpyro_reference
from experiments.configs import pytorch_example


def test_the_floor_equals_the_evaluators_estimate_on_the_same_samples():
    x = (np.random.default_rng(0).random((20, 28, 28, 1))).astype(np.float32)
    config = pytorch_example.get_config()
    model = jvae.build_model(config, x.shape[1:])
    params = jvae.init_params(model, jax.random.key(1), x[:1])
    key = jax.random.key(5)
    evaluator = jvae.make_evaluator(model, batch_size=10, ll_samples=30, ll_chunk=8)
    want = float(evaluator(params, key, x)["log_likelihood"])
    floor = bench_is_eval.floor_program(batch_size=10, samples=30, chunk=8)
    got = float(floor(numpyro_reference.params_from_jvae(params), key, x.reshape(20, -1)))
    assert np.isfinite(want) and abs(got - want) < 1e-3 * abs(want), (got, want)
    other = float(floor(numpyro_reference.params_from_jvae(params), jax.random.key(6),
                        x.reshape(20, -1)))
    assert other != got                      # (the samples do depend on the key)


def test_the_table_names_every_program_and_the_ratios():
    programs = {n: {"median_s": s, "log_likelihood": -100.0 + d,
                    "log_likelihood_minus_jvae_float32": d}
                for n, s, d in (("jvae_float32", 2.0, 0.0), ("jvae_bfloat16", 1.5, 0.01),
                                ("floor", 1.9, 0.0))}
    text = bench_is_eval.table({"programs": programs, "images": 500, "samples": 10,
                                "rounds": 1, "ratios": {"jvae_float32 / floor": 2.0 / 1.9}})
    assert "| jvae_bfloat16 | 1.50 | -99.990 | +0.010 |" in text
    assert "jvae_float32 / floor: 1.053" in text
