"""The DPM2 notebook's NVIL estimator selection (make_nvil_objective), its networks' pieces
(the posterior head's hidden layer) and PyTorch's initialisation of convolutions.

``NVIL.forward`` samples with ``rsample`` when ``q`` has it (the reparameterised ELBO) and
with ``sample`` and the score-function surrogate otherwise. On PPCA with a Gaussian ``q`` the
exact ELBO gradient is known; on a mixture ``q`` the objective must be jvae's score-function
estimator itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.models import ConvDecoder, ConvEncoder, DiagGaussianHead, MixtureGaussianHead
from jvae.models.conv import Conv, ConvTranspose
from jvae.models.distributions import is_reparameterised
from jvae.models.nets import conv_init
from jvae.models.vae import init_params
from jvae.objectives import (EstimatorState, centred_reward, learned_baseline,
                             make_elbo_loss, make_nvil_objective, make_sfe_objective)
from jvae.testing import (check_unbiased, exact_elbo_gradient, gradient_draws,
                          param_mask, variance_ratio)


def _x(ppca, n=3):
    return jnp.asarray(ppca.sample(n, seed=11))


def test_gaussian_posterior_takes_the_reparameterised_gradient(ppca):
    x, params = _x(ppca), ppca.params_poor
    exact = np.asarray(exact_elbo_gradient(ppca.model, params, x))
    nvil = make_nvil_objective(ppca.model)
    draws = gradient_draws(nvil, params, x, 3000, jax.random.key(0), state=EstimatorState())
    assert check_unbiased(draws, exact, z=4.5, atol=1e-4, max_relative_se=0.5)
    sfe = make_sfe_objective(ppca.model)
    sfe_draws = gradient_draws(sfe, params, x, 3000, jax.random.key(0), state=EstimatorState())
    # pathwise: far less variance than the score function on the inference parameters
    assert variance_ratio(sfe_draws, draws, mask=param_mask(params, "posterior", "encoder"),
                          above=10.0)
    value, (aux, _) = nvil.loss(params, EstimatorState(), jax.random.key(1), x)
    assert float(aux["sfe"]) == 0.0
    elbo_value, elbo_aux = make_elbo_loss(ppca.model)(params, jax.random.key(1), x)
    # the same analytic rate; the distortion of one draw each
    np.testing.assert_allclose(aux["rate"], elbo_aux["rate"], rtol=1e-6)


def test_control_variates_train_but_leave_the_reparameterised_gradient_alone(ppca):
    x, params = _x(ppca), ppca.params_poor
    plain = make_nvil_objective(ppca.model)
    chained = make_nvil_objective(ppca.model, control_variates=(centred_reward(0.1),
                                                                learned_baseline((4,))))
    est = chained.init(jax.random.key(0), x)

    def grads(obj, est_):
        def f(p, ep):
            return obj.loss(p, EstimatorState(ep, est_.state), jax.random.key(5), x)
        return jax.grad(f, argnums=(0, 1), has_aux=True)(params, est_.params)

    (g_plain, _), _ = grads(plain, EstimatorState())
    (g_chain, g_baseline), (aux, new) = grads(chained, est)
    for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_chain)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(g_baseline))
    assert float(new.state[0].mean) != 0.0 and int(new.state[0].count) == 1
    assert "cv/baseline_loss" in aux


def test_mixture_posterior_takes_the_score_function_estimator_with_its_chain(mixture):
    model, params, x = mixture
    q = model.apply(params, x, method=type(model).encode)
    assert not is_reparameterised(q)
    cvs = (centred_reward(0.1),)
    nvil, sfe = (make_nvil_objective(model, control_variates=cvs),
                 make_sfe_objective(model, control_variates=cvs, kl="mc"))
    est = nvil.init(jax.random.key(0), x)
    est = EstimatorState(est.params, jax.tree.map(lambda s: s - 3.0 if s.dtype == jnp.float32
                                                  else s, est.state))
    (v1, (a1, e1)), g1 = jax.value_and_grad(nvil.loss, has_aux=True)(params, est,
                                                                     jax.random.key(7), x)
    (v2, (a2, e2)), g2 = jax.value_and_grad(sfe.loss, has_aux=True)(params, est,
                                                                    jax.random.key(7), x)
    assert float(a1["sfe"]) == 1.0 and float(v1) == float(v2)
    for a, b in zip(jax.tree.leaves((g1, e1)), jax.tree.leaves((g2, e2))):
        np.testing.assert_array_equal(a, b)


def test_nvil_config_builds_and_a_mixture_elbo_names_it(small_g2d_config):
    from jvae.runs import build_loss, build_model, validate_config

    config = small_g2d_config(**{"objective.name": "nvil", "model.posterior": "mixture",
                                 "objective.control_variates": ("centred",)})
    validate_config(config)
    model = build_model(config, (2,))
    assert isinstance(model.posterior, MixtureGaussianHead)
    objective = build_loss(config, model)
    x = jnp.zeros((4, 2))
    params = init_params(model, jax.random.key(0), x[:1])
    _, (aux, _) = objective.loss(params, objective.init(jax.random.key(1), x),
                                 jax.random.key(2), x)
    assert float(aux["sfe"]) == 1.0    # NVIL's score-function branch for a mixture posterior
    with pytest.raises(ValueError, match="'nvil'"):
        validate_config(small_g2d_config(**{"model.posterior": "mixture"}))


def test_posterior_head_hidden_layer_is_the_notebooks_cpd_encoder():
    h = jax.random.normal(jax.random.key(0), (3, 5, 16))           # [S, B, F]
    head = DiagGaussianHead(4, hidden=6, weight_init="torch")
    params = head.init(jax.random.key(1), h)["params"]
    assert params["hidden"]["kernel"].shape == (16, 6) and params["loc"]["kernel"].shape == (6, 4)
    q = head.apply({"params": params}, h)
    hid = jax.nn.relu(h @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    np.testing.assert_allclose(q.mean(), hid @ params["loc"]["kernel"] + params["loc"]["bias"],
                               rtol=1e-5, atol=1e-6)
    mix = MixtureGaussianHead(4, 2, hidden=6, init_spread=0.0)
    mp = mix.init(jax.random.key(1), h)["params"]
    assert "loc_offset" not in mp and mp["logits"]["kernel"].shape == (6, 2)
    assert set(DiagGaussianHead(4).init(jax.random.key(1), h)["params"]) == {"loc", "raw_scale"}
    with pytest.raises(ValueError, match="hidden must be >= 0"):
        DiagGaussianHead(4, hidden=-1).init(jax.random.key(1), h)


@pytest.mark.parametrize("transpose", [False, True])
def test_torch_conv_init_is_uniform_with_pytorchs_fan_in(transpose):
    """PyTorch's Conv2d / ConvTranspose2d reset_parameters: kaiming_uniform(a=sqrt(5)) and a
    bias of the same bound, both U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in taken from the
    weight's second axis: C_in * k * k for Conv2d, C_out * k * k for ConvTranspose2d (weight
    [C_in, C_out, k, k])."""
    k, c_in, c_out = 5, 64, 48
    bound = 1.0 / np.sqrt(k * k * (c_out if transpose else c_in))
    kernel_init, bias_init = conv_init("torch", (k, k, c_in, c_out), transpose=transpose)
    w = np.asarray(kernel_init(jax.random.key(0), (k, k, c_in, c_out)))
    b = np.asarray(bias_init(jax.random.key(1), (c_out,)))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02)   # uniform's std
    assert np.abs(b).max() <= bound and np.abs(b).max() > 0.5 * bound
    # "lecun" is Flax's default, parameter for parameter
    layer = ConvTranspose if transpose else Conv
    x = jnp.ones((1, 4, 4, c_in))
    k_init, b_init = conv_init("lecun", (3, 3, c_in, 8), transpose=transpose)
    default = layer(8, 3).init(jax.random.key(2), x)
    explicit = layer(8, 3, kernel_init=k_init, bias_init=b_init).init(jax.random.key(2), x)
    for a, c in zip(jax.tree.leaves(default), jax.tree.leaves(explicit)):
        np.testing.assert_array_equal(a, c)


def test_conv_nets_take_the_weight_init_everywhere():
    enc = ConvEncoder(features=(4, 8), out_dim=6, weight_init="torch")
    pe = enc.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    assert float(jnp.abs(pe["conv_1"]["kernel"]).max()) <= 1 / np.sqrt(4 * 4 * 4)
    assert float(jnp.abs(pe["proj"]["bias"]).max()) > 0          # torch: a nonzero bias
    dec = ConvDecoder((8, 8), 1, features=(8, 4), weight_init="torch")
    pd = dec.init(jax.random.key(0), jnp.zeros((1, 3)))["params"]
    assert float(jnp.abs(pd["deconv_0"]["kernel"]).max()) <= 1 / np.sqrt(8 * 4 * 4)
    assert float(jnp.abs(pd["out"]["bias"]).max()) > 0
    with pytest.raises(ValueError, match="Unknown init 'pytorch'"):
        conv_init("pytorch", (3, 3, 1, 1))
