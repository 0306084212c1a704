"""Tests for jvae.evaluation and jvae.objectives.elbo on probabilistic PCA, where log p(x) and
the posterior are known in closed form (fixture ``ppca`` in conftest.py).

* With the exact posterior q = p(z|x), every importance weight p(x, z) / q(z|x) equals p(x):
  the Monte Carlo ELBO and every importance-sampled estimate equal log p(x) exactly.
* With a poorer q (mean shifted by one posterior sd, sds scaled by 0.8) the per-example gaps
  log p(x) - estimate are i.i.d. across examples (they depend only on the standardised noise),
  so averages over examples and their standard errors test the expected orderings
  E[ELBO] = log p(x) - KL(q || p(z|x)) <= E[IS_K] <= E[IS_10K] <= log p(x).

Sampling-heavy work uses ``rbg`` keys (fast to compile on CPU) and is jitted once per module.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.evaluation import evaluate, importance_log_likelihood, make_evaluator
from jvae.objectives.elbo import elbo_terms, make_elbo_loss

N = 1000                                                   # examples for the statistical tests
IS_CONFIGS = {                                             # name -> (K, chunk_size)
    "is1": (1, 100), "is10": (10, 100), "is100": (100, 100), "is1000": (1000, 1000),
    "is1000_chunk7": (1000, 7), "is10_chunk3": (10, 3),
}


def _key(seed):
    return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="module")
def study(ppca):
    """All estimators on N PPCA examples, for the exact and the poorer posterior (one compile)."""
    x = jnp.asarray(ppca.sample(N, seed=20))
    model = ppca.model

    @jax.jit
    def run(params, key, x):
        keys = jax.random.split(key, len(IS_CONFIGS) + 2)
        out = {name: importance_log_likelihood(model, params, k, x, num, chunk)
               for k, (name, (num, chunk)) in zip(keys, IS_CONFIGS.items())}
        for k, (name, s, kl) in zip(keys[len(IS_CONFIGS):], [("elbo_mc1", 1, "mc"),
                                                             ("elbo_analytic1", 1, "analytic")]):
            distortion, rate = elbo_terms(model, params, k, x, s, kl)
            out[name] = -(distortion + rate)
            out[name + "_rate"] = rate
        return out

    exact = run(ppca.params, _key(0), x)
    poor = run(ppca.params_poor, _key(1), x)
    to_np = lambda d: {k: np.asarray(v, np.float64) for k, v in d.items()}  # noqa: E731
    return {"x": np.asarray(x), "log_px": ppca.log_px(np.asarray(x)), "exact": to_np(exact),
            "poor": to_np(poor), "kl": ppca.kl_q_post(ppca.poor_shift, ppca.poor_factor)}


def _gap(study, name):
    """Mean and standard error over examples of log p(x) - estimate for the poorer q."""
    g = study["log_px"] - study["poor"][name]
    return g.mean(), g.std() / np.sqrt(g.size)


# --------------------------------------------------------------------------- exact posterior


@pytest.mark.parametrize("name", ["elbo_mc1"] + list(IS_CONFIGS))
def test_exact_posterior_estimates_equal_log_px_for_every_example(study, name):
    # log p(x, z) - log q(z|x) = log p(x) for every z: zero variance, whatever K or chunking.
    got = study["exact"][name]
    assert got.shape == (N,)
    np.testing.assert_allclose(got, study["log_px"], rtol=1e-4)


def test_exact_posterior_analytic_elbo_is_unbiased(study):
    # With an analytic rate the one-sample ELBO is no longer constant in z, but its mean is
    # log p(x) - KL(q || p(z|x)) = log p(x).
    g = study["log_px"] - study["exact"]["elbo_analytic1"]
    assert g.std() > 0.1                                       # really stochastic
    assert abs(g.mean()) < 4 * g.std() / np.sqrt(N)


def test_rate_estimators_agree_with_closed_form_kl(study, ppca):
    # KL(q(z|x) || N(0, I)) for the exact posterior, in closed form, per example.
    m = ppca.post_mean(study["x"])
    kl = 0.5 * np.sum(ppca.post_sd**2 + m**2 - 1 - np.log(ppca.post_sd**2), -1)
    np.testing.assert_allclose(study["exact"]["elbo_analytic1_rate"], kl, rtol=1e-4, atol=1e-5)
    diff = study["exact"]["elbo_mc1_rate"] - kl                 # unbiased Monte Carlo rate
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(N)


# --------------------------------------------------------------------------- a poorer posterior


def test_poor_posterior_elbo_gap_is_the_kl_to_the_exact_posterior(study):
    # ELBO = log p(x) - KL(q || p(z|x)) with both rate estimators, and K = 1 importance
    # sampling is a one-sample (Monte Carlo) ELBO.
    kl = study["kl"]
    assert kl > 0.5
    for name in ("elbo_mc1", "elbo_analytic1", "is1"):
        mean, se = _gap(study, name)
        assert abs(mean - kl) < 4 * se, (name, mean, kl, se)
    d = study["poor"]["is1"] - study["poor"]["elbo_mc1"]
    assert abs(d.mean()) < 4 * d.std() / np.sqrt(N)


def test_poor_posterior_orderings_and_gap_decrease_with_k(study):
    names = ["elbo_mc1", "is10", "is100", "is1000"]
    gaps = {n: _gap(study, n) for n in names}
    # E[ELBO] <= E[IS_10] <= E[IS_100] <= E[IS_1000] <= log p(x); the successive expected gaps
    # (about 1.05, 0.41, 0.11, 0.02 nats here) are many standard errors apart.
    for a, b in zip(names, names[1:]):
        (ga, sa), (gb, sb) = gaps[a], gaps[b]
        assert ga - gb > 3 * math.hypot(sa, sb), (a, b, gaps)
    for n, (g, s) in gaps.items():
        assert g > -3 * s, (n, g, s)                            # never above log p(x)
    assert gaps["is1000"][0] < 0.1 * gaps["elbo_mc1"][0]
    # The estimates themselves, averaged over examples, are ordered the same way.
    means = [study["poor"][n].mean() for n in names]
    assert means == sorted(means) and means[-1] < study["log_px"].mean() + 0.01


def test_chunked_importance_sampling_converges_to_the_same_value(study):
    # K = 1000 in one chunk or in chunks of 7 (the last chunk only partly used): different
    # samples, the same expectation; K = 10 in chunks of 3 is a K = 10 estimate.
    for a, b in (("is1000", "is1000_chunk7"), ("is10", "is10_chunk3")):
        (ga, sa), (gb, sb) = _gap(study, a), _gap(study, b)
        assert abs(ga - gb) < 4 * math.hypot(sa, sb), (a, b, ga, gb)
    # A wrong normaliser (dividing by 12 slots instead of K = 10) would shift every estimate
    # by log(1.2) = 0.18; the exact posterior pins it down to float precision (see above).
    assert abs(_gap(study, "is10_chunk3")[0] - _gap(study, "is10")[0]) < 0.1


# --------------------------------------------------------------------------- evaluator

SPLIT, BATCH, LL_K, LL_CHUNK = 37, 10, 10, 4                  # 4 batches, 3 padded rows


@pytest.fixture(scope="module")
def split(ppca):
    return jnp.asarray(ppca.sample(SPLIT, seed=21))


@pytest.fixture(scope="module")
def evaluator(ppca):
    return make_evaluator(ppca.model, batch_size=BATCH, elbo_samples=1, ll_samples=LL_K,
                          ll_chunk=LL_CHUNK)


def test_evaluator_masks_padding_exact_posterior(ppca, split, evaluator):
    # Key-independent metrics: with the exact posterior the log-likelihood is exact and the
    # analytic rate is deterministic, so the means over the 37 real rows are known exactly; the
    # 3 zero rows of padding must not count.
    x = np.asarray(split)
    m = ppca.post_mean(x)
    kl = 0.5 * np.sum(ppca.post_sd**2 + m**2 - 1 - np.log(ppca.post_sd**2), -1)
    metrics = evaluator(ppca.params, _key(2), split)
    assert set(metrics) == {"elbo", "distortion", "rate", "log_likelihood"}
    np.testing.assert_allclose(metrics["log_likelihood"], ppca.log_px(x).mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["rate"], kl.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["elbo"], -(metrics["distortion"] + metrics["rate"]),
                               rtol=1e-5)
    # The padded rows would change these means noticeably.
    padded_ll = ppca.log_px(np.concatenate([x, np.zeros((3, ppca.dx))]))
    assert abs(padded_ll.mean() - ppca.log_px(x).mean()) > 1e-2
    # One batch larger than the split (no padding), no log-likelihood: the same exact rate.
    whole = evaluate(ppca.model, ppca.params, _key(3), split, batch_size=500, ll_samples=0)
    assert set(whole) == {"elbo", "distortion", "rate"}
    assert all(isinstance(v, float) for v in whole.values())
    np.testing.assert_allclose(whole["rate"], kl.mean(), rtol=1e-5)


def test_evaluator_equals_direct_per_batch_computation(ppca, split, evaluator):
    # Reproduces the evaluator by hand for the poorer q (stochastic metrics): the split is
    # zero-padded to 4 batches of 10, batch b uses split(split(key, 4)[b]) = (k_elbo, k_ll), and
    # only the 37 real rows are averaged. (This mirrors make_evaluator's documented key use.)
    key = _key(4)
    params = ppca.params_poor
    metrics = evaluator(params, key, split)
    nb = math.ceil(SPLIT / BATCH)
    padded = jnp.concatenate([split, jnp.zeros((nb * BATCH - SPLIT, ppca.dx))])

    @jax.jit
    def one_batch(params, kb, xb):
        k_elbo, k_ll = jax.random.split(kb)
        d, r = elbo_terms(ppca.model, params, k_elbo, xb, 1)
        return d, r, importance_log_likelihood(ppca.model, params, k_ll, xb, LL_K, LL_CHUNK)

    rows = [one_batch(params, kb, padded[b * BATCH:(b + 1) * BATCH])
            for b, kb in enumerate(jax.random.split(key, nb))]
    d, r, ll = (np.concatenate(v)[:SPLIT] for v in zip(*rows))
    expected = {"distortion": d.mean(), "rate": r.mean(), "elbo": -(d + r).mean(),
                "log_likelihood": ll.mean()}
    for name in expected:
        np.testing.assert_allclose(metrics[name], expected[name], rtol=1e-5, err_msg=name)
    # The log-likelihood estimate lies between the ELBO and log p(x) here.
    assert metrics["elbo"] < metrics["log_likelihood"] < ppca.log_px(np.asarray(split)).mean()


def test_evaluator_same_with_and_without_jit(ppca):
    x = jnp.asarray(ppca.sample(7, seed=22))
    ev = make_evaluator(ppca.model, batch_size=3, elbo_samples=2, ll_samples=5, ll_chunk=2)
    key = jax.random.PRNGKey(5)                                         # the default key type
    jitted = ev(ppca.params_poor, key, x)
    with jax.disable_jit():
        eager = ev(ppca.params_poor, key, x)
    for name in jitted:
        assert np.isfinite(jitted[name])
        np.testing.assert_allclose(eager[name], jitted[name], rtol=1e-5, err_msg=name)
    other = ev(ppca.params_poor, jax.random.PRNGKey(6), x)
    assert float(other["distortion"]) != float(jitted["distortion"])   # the key is used


def test_evaluation_rejects_bad_arguments(ppca, split):
    for kwargs in ({"batch_size": 0}, {"elbo_samples": 0}, {"ll_chunk": 0},
                   {"ll_samples": -1}):
        with pytest.raises(ValueError):
            make_evaluator(ppca.model, **kwargs)
    with pytest.raises(ValueError, match="empty"):
        make_evaluator(ppca.model)(ppca.params, _key(0), split[:0])
    for num, chunk in ((0, 10), (10, 0)):
        with pytest.raises(ValueError):
            importance_log_likelihood(ppca.model, ppca.params, _key(0), split, num, chunk)
    for kwargs in ({"num_samples": 0}, {"beta": -1.0}, {"kl": "exact"}):
        with pytest.raises(ValueError):
            make_elbo_loss(ppca.model, **kwargs)
    with pytest.raises(ValueError, match=r"\(5,\)"):
        jax.jit(lambda x: importance_log_likelihood(ppca.model, ppca.params, _key(0), x, 2))(
            jnp.zeros((3, 4)))
