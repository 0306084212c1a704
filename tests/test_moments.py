"""jvae.testing's streaming moments against numpy's mean and variance of the same draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jvae
from jvae import testing


def test_combined_blocks_equal_the_moments_of_all_draws():
    """Blocks of 1, 3, 50 and 7 rows combined in turn: numpy's mean and var(ddof=1) of their
    concatenation, far from zero (where the textbook sum of squares loses digits)."""
    rng = np.random.default_rng(0)
    draws = 1e4 + rng.normal(size=(61, 6)) * np.arange(1, 7)
    total = testing.Moments(0, np.zeros(6), np.zeros(6))
    for block in np.split(draws, [1, 4, 54]):
        total = testing.combine_moments(total, testing.moments_of(block))
    assert total.count == 61
    np.testing.assert_allclose(total.mean, draws.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(total.var, draws.var(axis=0, ddof=1), rtol=1e-9)
    one = testing.moments_of(draws)
    assert one.count == 61 and one.mean.dtype == one.m2.dtype == np.float64
    np.testing.assert_allclose(one.var, draws.var(axis=0, ddof=1), rtol=1e-12)
    empty = testing.Moments(0, np.zeros(6), np.zeros(6))
    assert testing.combine_moments(one, empty) is one
    with pytest.raises(ValueError, match=r"\[n, P\]"):
        testing.moments_of(np.zeros(3))


@pytest.fixture(scope="module")
def sfe():
    """The score-function estimator on the PPCA reference, its state initialised."""
    ref = testing.ppca_reference(5, 2)
    x = ref.sample(jax.random.key(1), 4)
    objective = jvae.make_sfe_objective(ref.model)
    params = ref.params(1.0, 0.8)
    return objective, params, x, objective.init(jax.random.key(2), x)


@pytest.mark.parametrize("modules", [None, ("posterior",)])
def test_gradient_moments_are_numpys_of_the_same_draws(sfe, modules):
    """21 draws in chunks of 7 (the keys of chunk i split from fold_in(key, i)): the mean
    and unbiased variance of the same draws taken by make_gradient_sampler, restricted to
    the columns param_mask selects when only the inference network is differentiated."""
    objective, params, x, state = sfe
    key = jax.random.key(5)
    mom = testing.gradient_moments(objective, params, x, 20, key, state=state, chunk_size=7,
                                   modules=modules)
    sample = testing.make_gradient_sampler(objective, params, x, state=state, chunk_size=7)
    draws = np.concatenate([sample(jax.random.split(jax.random.fold_in(key, i), 7))
                            for i in range(3)]).astype(np.float64)
    if modules is not None:
        draws = draws[:, testing.param_mask(params, *modules)]
    assert mom.count == 21 and mom.mean.shape == mom.var.shape == draws.shape[1:]
    assert mom.mean.dtype == np.float64
    scale = np.abs(draws).max()
    np.testing.assert_allclose(mom.mean, draws.mean(axis=0), rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(mom.var, draws.var(axis=0, ddof=1), rtol=1e-4,
                               atol=1e-6 * scale ** 2)
    assert np.all(mom.var > 0)


def test_gradient_moments_defaults_and_errors(sfe):
    """A stateless loss, the default chunk (all draws in one) and state; bad arguments."""
    def loss(p, key, x):               # gradient: a standard-normal draw, plus 2 w
        return jnp.sum(p["w"] * jax.random.normal(key, (3,)) + p["w"] ** 2), {}

    params = {"w": jnp.arange(3.0)}
    mom = testing.gradient_moments(loss, params, jnp.zeros(1), 400, jax.random.key(0))
    assert mom.count == 400
    np.testing.assert_allclose(mom.mean, 2 * np.arange(3.0), atol=5 / np.sqrt(400))
    np.testing.assert_allclose(mom.var, 1.0, atol=5 * np.sqrt(2 / 399))
    objective, vae_params, x, state = sfe
    with pytest.raises(ValueError, match="num_draws .*at least 2"):
        testing.gradient_moments(loss, params, x, 1, jax.random.key(0))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        testing.gradient_moments(loss, params, x, 4, jax.random.key(0), chunk_size=0)
    with pytest.raises(ValueError, match=r"No module \['encoderr'\]"):
        testing.gradient_moments(objective, vae_params, x, 4, jax.random.key(0), state=state,
                                 modules=("encoderr",))
