"""``model.likelihood_bias = "marginal"``: a Bernoulli decoder's output bias starts at the
training pixels' log-odds (Burda et al.'s IWAE code), for every seed of a run."""

import jax.numpy as jnp
import numpy as np
import pytest

from jvae import default_config
from jvae.models.heads import marginal_logits, with_output_bias
from jvae.runs import builders, schema
from jvae.runs.setup import initial_state


def _config(bias="marginal", likelihood="bernoulli", seeds=2):
    c = default_config()
    c.dataset.name = "mnist"
    c.latent_dim, c.num_seeds = 2, seeds
    c.model.encoder_hidden, c.model.decoder_hidden = (5,), (5,)
    c.model.likelihood, c.model.likelihood_bias = likelihood, bias
    return c


def test_marginal_logits_are_the_log_odds_of_the_pixel_means():
    x = np.array([[[0.0, 1.0, 0.5]], [[0.0, 1.0, 0.25]]], np.float32)        # [2, 1, 3]
    got = marginal_logits(x, eps=1e-3)
    p = np.array([[1e-3, 1 - 1e-3, 0.375]])
    np.testing.assert_allclose(got, np.log(p / (1 - p)), rtol=1e-5)
    pixels = (x * 255).astype(np.uint8)                                      # read as x / 255
    np.testing.assert_allclose(marginal_logits(pixels), marginal_logits(pixels / 255.0),
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        marginal_logits(x + 2.0)


@pytest.mark.parametrize("bias", ["zero", "marginal"])
def test_initial_state_starts_the_output_bias_at_the_marginals(bias):
    c = _config(bias)
    schema.validate_config(c)
    x = (np.random.default_rng(0).random((50, 2, 3)) < [[0.05, 0.5, 0.9]] * 2).astype(np.uint8)
    model = builders.build_model(c, x.shape[1:])
    state = initial_state(c, model, builders.build_optimizer(c), x[:1].astype(np.float32),
                          x_train=x)
    got = np.asarray(state.params["params"]["likelihood"]["out"]["bias"])
    assert got.shape == (2, 6)                                     # two seeds
    want = marginal_logits(x).reshape(-1) if bias == "marginal" else np.zeros(6)
    np.testing.assert_allclose(got, np.broadcast_to(want, (2, 6)), rtol=1e-6, atol=1e-7)
    # the other parameters are those of the default initialisation, seed by seed
    ref = initial_state(_config("zero"), model, builders.build_optimizer(c),
                        x[:1].astype(np.float32))
    np.testing.assert_array_equal(state.params["params"]["decoder"]["dense_0"]["kernel"],
                                  ref.params["params"]["decoder"]["dense_0"]["kernel"])


def test_marginal_bias_needs_a_bernoulli_mlp_decoder():
    with pytest.raises(ValueError, match="likelihood_bias = 'marginal' needs"):
        schema.validate_config(_config(likelihood="gaussian"))
    with pytest.raises(ValueError, match="likelihood_bias"):
        schema.validate_config(_config(bias="data"))
    params = {"params": {"likelihood": {"out": {"bias": jnp.zeros(6)}}}}
    with pytest.raises(ValueError, match="shape"):
        with_output_bias(params, np.zeros(5))
