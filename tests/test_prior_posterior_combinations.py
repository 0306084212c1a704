"""Every prior with every posterior head: each combination the config accepts builds from a
run config, initialises and trains one step with finite values (the VampPrior with an IAF
posterior included: its prior evaluates the IAF inverse at K pseudo-inputs at once)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jvae
from jvae.runs.schema import POSTERIORS, PRIORS

DATA_SHAPE, BATCH = (6,), 8


def _config(prior, posterior):
    c = jvae.default_config()
    c.latent_dim, c.batch_size = 2, BATCH
    m = c.model
    m.prior, m.posterior, m.likelihood = prior, posterior, "bernoulli"
    m.encoder_hidden, m.decoder_hidden = (8,), (8,)
    # Only the fields that apply (a field the run would ignore is refused).
    if posterior in ("planar", "iaf", "coupling"):
        m.flow_layers = 2
    if posterior in ("iaf", "coupling"):
        m.flow_hidden = 8
    if prior in ("mixture", "vamp"):
        m.prior_components = 3
    # A mixture posterior is not reparameterisable: it trains with the mixture objective.
    c.objective.name = "mixture" if posterior == "mixture" else "elbo"
    return c


def _accepted(prior, posterior) -> bool:
    try:
        jvae.validate_config(_config(prior, posterior))
    except ValueError:
        return False
    return True


COMBINATIONS = list(itertools.product(PRIORS, POSTERIORS))


def test_every_prior_posterior_combination_is_accepted():
    refused = [c for c in COMBINATIONS if not _accepted(*c)]
    assert not refused, f"combinations the config refuses: {refused}"
    assert len(COMBINATIONS) == 15


@pytest.mark.parametrize("prior, posterior", [
    pytest.param(*c, marks=() if c == ("vamp", "iaf") else (pytest.mark.exhaustive,))
    for c in COMBINATIONS])   # all of them also train in test_combinations (one objective each)
def test_each_combination_trains_one_step(prior, posterior):
    """Built by the run builders; initialised and trained one optimiser step (the
    objective's loss, its gradient and the config's optimiser) as one compiled program."""
    config = _config(prior, posterior)
    jvae.validate_config(config)
    model = jvae.build_model(config, DATA_SHAPE)
    x = jnp.asarray(np.random.default_rng(0).random((BATCH,) + DATA_SHAPE) > 0.5, jnp.float32)
    objective = jvae.as_objective(jvae.build_loss(config, model))
    optimizer = jvae.build_optimizer(config, steps_per_epoch=1)

    @jax.jit
    def init_and_step(key):
        k_init, k_est, k_loss = jax.random.split(key, 3)
        params = model.init(k_init, x)
        est = objective.init(k_est, x)
        trained = jvae.trainable(params, est)
        (loss, (aux, _)), grads = jax.value_and_grad(
            lambda p: objective.loss(p, est, k_loss, x), has_aux=True)(params)
        updates, _ = optimizer.update(grads, optimizer.init(trained), trained)
        return params, optax.apply_updates(params, updates), loss, aux

    params, new, loss, aux = init_and_step(jax.random.key(0))
    assert np.isfinite(float(loss)) and all(np.isfinite(float(v)) for v in aux.values()), aux
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(new))
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         params["params"], new["params"])
    assert all(jax.tree.leaves(moved["encoder"])) and all(jax.tree.leaves(moved["decoder"]))
    if prior != "standard":
        assert any(jax.tree.leaves(moved["prior"])), "the prior's parameters did not train"
