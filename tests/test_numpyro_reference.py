"""The epoch benchmark's references (experiments/numpyro_reference.py) compute jvae's objective.

NumPyro is an optional extra (``pip install -e ".[numpyro]"``): its tests are skipped without it;
the hand-written program needs only jax and optax.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import numpyro_reference as ref
from experiments.configs import pytorch_example
from jvae.runs import builders
from jvae.models.vae import VAE, init_params
from jvae.objectives.elbo import make_elbo_loss

B = 16


@pytest.fixture(scope="module")
def setup():
    config = pytorch_example.get_config()
    model = builders.build_model(config, (28, 28, 1))
    x = jax.random.uniform(jax.random.key(0), (B, 28, 28, 1))   # grey levels in [0, 1)
    params = init_params(model, jax.random.key(1), x[:1])
    return model, params, x


@pytest.fixture(scope="module")
def losses(setup):
    """Every loss at jvae's parameters and jvae's noise, in one compiled program: jvae's ELBO
    loss with analytic and Monte Carlo KL, the hand-written loss and (when NumPyro is there)
    NumPyro's Trace_ELBO and TraceMeanField_ELBO, divided by B (NumPyro sums over the batch)."""
    model, params, x = setup
    key = jax.random.key(2)
    flat = x.reshape(B, -1)
    p = ref.params_from_jvae(params)
    analytic, mc = make_elbo_loss(model, kl="analytic"), make_elbo_loss(model, kl="mc")
    svis = {}
    if ref.numpyro_available():
        svis = {elbo: ref.make_numpyro_svi(p, elbo=elbo) for elbo in ("trace", "meanfield")}

    @jax.jit
    def compute(params):
        p = ref.params_from_jvae(params)
        out = {"analytic": analytic(params, key, x)[0], "mc": mc(params, key, x)[0],
               "hand": ref.handwritten_loss(p, key, flat)}
        if svis:
            from numpyro import handlers

            # The guide's sample is jvae's (the draw its ELBO makes from ``key``): substitute
            # keeps "z" a latent site of the guide, so Trace_ELBO scores log q(z) - log p(x, z)
            # there and TraceMeanField_ELBO KL(q || p) - log p(x | z).
            z = model.apply(params, x, method=VAE.encode).sample(seed=key, sample_shape=(1,))[0]
            # What svi.get_params returns after init_numpyro_state (the networks' parameters
            # are unconstrained), without the eager initialisation.
            np_params = {"encoder$params": p["encoder"], "decoder$params": p["decoder"]}
            for elbo, svi in svis.items():
                guide = handlers.substitute(svi.guide, data={"z": z})
                out[elbo] = svi.loss.loss(jax.random.key(5), np_params, svi.model, guide,
                                          flat) / B
        return out

    return {k: float(v) for k, v in compute(params).items()}


def test_handwritten_loss_is_jvaes_elbo_loss(losses):
    np.testing.assert_allclose(losses["hand"], losses["analytic"], rtol=1e-6)
    assert abs(losses["mc"] - losses["analytic"]) > 1e-3     # a different estimate


@pytest.mark.parametrize("elbo,kl", [("trace", "mc"), ("meanfield", "analytic")])
def test_numpyro_loss_is_jvaes_elbo_loss_at_the_same_noise(losses, elbo, kl):
    pytest.importorskip("numpyro", reason="NumPyro is an optional extra (pip install '.[numpyro]')")
    np.testing.assert_allclose(losses[elbo], losses[kl], rtol=1e-6)


def test_numpyro_epoch_trains():
    pytest.importorskip("numpyro", reason="NumPyro is an optional extra (pip install '.[numpyro]')")
    data = (jax.random.uniform(jax.random.key(6), (5 * B, 784)) < 0.2).astype(jnp.float32)
    params = ref.init_torch_params(jax.random.key(7))
    svi = ref.make_numpyro_svi(params)
    epoch = ref.make_numpyro_epoch(svi, batch_size=B)
    # jitted: NumPyro's eager initialisation costs more than the epoch's compilation here
    state = jax.jit(lambda k, b: ref.init_numpyro_state(svi, params, k, b))(jax.random.key(8),
                                                                           data[:B])
    np.testing.assert_array_equal(svi.get_params(state)["decoder$params"]["fc4"]["w"],
                                  params["decoder"]["fc4"]["w"])   # our initialisation
    losses = []
    for e in range(2):                                   # 2 epochs of 5 steps each
        state, loss = epoch(state, jax.random.key(10 + e), data)
        losses.append(float(loss))
    assert int(state.optim_state[0]) == 10               # NumPyro's step counter
    # It starts near 784 log 2 per example (logits near 0) and lowers the loss.
    assert abs(losses[0] - 784 * np.log(2)) < 60
    assert losses[1] < losses[0]
    with pytest.raises(ValueError, match="Unknown elbo"):
        ref.make_numpyro_svi(params, elbo="renyi")
