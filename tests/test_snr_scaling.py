"""The SNR-scaling reproduction: Rainforth et al.'s Gaussian model and its optimum, the group
SNR and slope tools of jvae.testing, and the script's slopes at small sizes."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jvae import testing
from jvae.objectives import make_iwae_loss


@pytest.fixture(scope="module")
def ref():
    return testing.gaussian_latent_reference(20, 1024, seed=0)


def _mean_grad(ref, params, estimator, k, draws, key):
    """Mean and standard error ``[P]`` of the whole data set's loss gradient over draws."""
    loss = make_iwae_loss(ref.model, k, estimator)
    x = jnp.asarray(ref.data)
    g = jax.jit(jax.vmap(lambda kk: ravel_pytree(
        jax.grad(lambda p: loss(p, kk, x)[0])(params))[0]))(jax.random.split(key, draws))
    g = np.asarray(g, np.float64)
    return g.mean(0), g.std(0, ddof=1) / np.sqrt(draws)


def test_closed_form_optimum(ref):
    opt = ref.optimum()
    p = opt["params"]
    mu = ref.data.astype(np.float64).mean(0)
    np.testing.assert_allclose(p["prior"]["loc"], mu, rtol=1e-6)
    np.testing.assert_allclose(p["posterior"]["loc"]["kernel"], 0.5 * np.eye(20))
    np.testing.assert_allclose(p["posterior"]["loc"]["bias"], 0.5 * mu, rtol=1e-6)
    # Stationary for L_1 and L_4 (DReG: unbiased for grad L_K, low variance) ...
    for k in (1, 4):
        mean, se = _mean_grad(ref, opt, "dreg", k, 32, jax.random.key(k))
        z2 = (mean / se) ** 2                     # ~ chi-square(1) per coordinate at a zero
        assert np.mean(z2) < 1.5 and np.max(z2) < 49, (np.mean(z2), np.max(z2))
    # ... and not beside it: b shifted by 0.3 gives grad_b (loss) = 2 * 0.3 per coordinate
    # for K = 1 (grad_b ELBO = x + mu - 2 (A x + b)).
    moved = jax.tree.map(lambda a: a, opt)
    moved["params"]["posterior"]["loc"]["bias"] = p["posterior"]["loc"]["bias"] + 0.3
    mean, se = _mean_grad(ref, moved, "iwae", 1, 8, jax.random.key(3))
    flags = jax.tree.map(jnp.zeros_like, opt)
    flags["params"]["posterior"]["loc"]["bias"] = jnp.ones(20)
    bias_cols = np.flatnonzero(np.asarray(ravel_pytree(flags)[0]))
    np.testing.assert_allclose(mean[bias_cols], 0.6, atol=5 * se[bias_cols].max())
    # The exact marginal: L_K climbs to log p(x) = log N(x | mu, 2 I).
    x = jnp.asarray(ref.data[:32])
    log_px = float(jnp.mean(ref.log_px(opt, x)))
    bound = -float(make_iwae_loss(ref.model, 1000, "iwae")(opt, jax.random.key(5), x)[0])
    assert log_px - 0.1 < bound < log_px + 0.01


def test_perturbed_point_noise(ref):
    a, b = ref.perturbed(jax.random.key(0)), ref.optimum()
    d = np.concatenate([np.ravel(u - v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
    assert d.size == 20 + 400 + 20 and 0.008 < d.std() < 0.012


def test_group_snr_debiased_and_slope():
    rng = np.random.default_rng(0)
    n, p = 4000, 6
    snr_true = 0.02                  # near the plain statistic's floor sqrt(2 / (pi n)) = 0.0126
    draws = snr_true + rng.standard_normal((p, n, 300))
    m = testing.Moments(n, draws.mean(1), ((draws - draws.mean(1, keepdims=True)) ** 2).sum(1))
    s = testing.group_snr(m)
    assert s.resolved and abs(s.snr - snr_true) < 0.004
    assert s.mean_abs > s.snr                    # the plain statistic is inflated by noise
    zero = testing.group_snr(testing.Moments(n, m.mean - snr_true, m.m2))
    assert not zero.resolved
    ks = np.array([1.0, 10.0, 100.0])
    per_point = (0.1 * ks ** -0.5)[:, None] ** 2 * rng.uniform(0.5, 1.5, (1, 12))
    fit = testing.loglog_slope(ks, per_point, num_boot=200)
    assert abs(fit.slope + 0.5) < 1e-9 and fit.low <= fit.slope <= fit.high
    with pytest.raises(ValueError, match="at least two resolved"):
        testing.loglog_slope(ks, per_point, resolved=[True, False, False])


def test_script_slopes_have_the_papers_signs(tmp_path):
    from experiments import snr_scaling

    out = tmp_path / "snr.json"
    snr_scaling.main(["--setups", "gaussian", "--fast", "--ks", "1,4,16", "--points", "8",
                      "--draws", "1000", "--quiet-draws", "300", "--vimco-max-k", "4",
                      "--num-boot", "200", "--out", str(out)])
    fits = {(f["estimator"], f["group"]): f
            for f in json.loads(out.read_text())["setups"]["gaussian"]["fits"]}
    assert fits["iwae", "inference"]["high"] < 0
    assert fits["iwae", "generative"]["low"] > 0
    assert fits["dreg", "inference"]["low"] > 0
    assert fits["iwae_dreg_signal", "inference"]["high"] < 0
