"""The VampPrior (jvae.models.priors.VampPrior): its density is the logsumexp of the posterior at
the pseudo-inputs, its samples have the mixture's moments, and it trains through the configs."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from jvae.runs import builders

from jvae.runs import schema
from jvae.models.heads import BernoulliHead, DiagGaussianHead
from jvae.models.vae import VAE
from jvae.models.nets import MLP
from jvae.models.priors import VampPrior

K, D, DATA = 3, 2, (4,)
CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"


def _model():
    return VAE(DATA, VampPrior(DATA, K), MLP((6,), "tanh"), DiagGaussianHead(D),
               MLP((6,)), BernoulliHead(DATA))


def _params(model, seed=0):
    """Random parameters drawn on the host (spread-out components, nothing to compile)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1,) + DATA))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype), shapes)


def _components(params):
    """The pseudo-inputs (clipped to [0, 1]) and the posterior's mean and sd at each."""
    model = _model()
    u = jnp.clip(params["params"]["prior"]["pseudo_inputs"], 0.0, 1.0)
    q = model.apply(params, u, method=VAE.encode)
    return u, np.asarray(q.loc, np.float64), np.asarray(q.scale_diag, np.float64)


def test_log_prob_is_the_logsumexp_of_the_posterior_at_the_pseudo_inputs():
    model, params = _model(), _params(_model())
    u, loc, scale = _components(params)
    assert u.shape == (K,) + DATA
    z = np.random.default_rng(1).standard_normal((7, 5, D)).astype(np.float32)   # [S, B, D]
    log_pz = jax.jit(lambda p, z: model.apply(p, method=VAE.prior_distribution).log_prob(z))(
        params, z)
    assert log_pz.shape == (7, 5)
    # explicit: log (1/K) sum_k N(z | loc_k, diag(scale_k^2)) in float64
    zk = z[..., None, :].astype(np.float64)                                     # [S, B, 1, D]
    log_nk = np.sum(-0.5 * ((zk - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi),
                    -1)                                                         # [S, B, K]
    np.testing.assert_allclose(log_pz, logsumexp(log_nk, -1) - np.log(K), rtol=1e-5, atol=1e-5)


def test_samples_have_the_mixture_mean_and_covariance():
    model, params = _model(), _params(_model(), seed=3)
    _, loc, scale = _components(params)
    n = 40000
    z = np.asarray(jax.jit(lambda p, k: model.apply(p, method=VAE.prior_distribution).sample(
        seed=k, sample_shape=(n,)))(params, jax.random.key(5)), np.float64)
    assert z.shape == (n, D)
    mean = loc.mean(0)
    cov = np.mean(np.einsum("ki,kj->kij", loc, loc) + np.stack([np.diag(s ** 2) for s in scale]),
                  0) - np.outer(mean, mean)
    se_mean = np.sqrt(np.diag(cov) / n)
    np.testing.assert_array_less(np.abs(z.mean(0) - mean), 4 * se_mean)
    # sample covariance: sd of each entry ~ sqrt((cov_ii cov_jj + cov_ij^2) / n) for a
    # Gaussian; the mixture's tails are heavier, so allow 6 of those
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
    np.testing.assert_array_less(np.abs(np.cov(z.T) - cov), 6 * se_cov)
    assert np.linalg.norm(loc - mean) > 0.5         # components apart: a real mixture


def _load(name, variant=None):
    spec = importlib.util.spec_from_file_location(name, CONFIG_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config() if variant is None else module.get_config(variant)


def test_one_training_step_moves_the_pseudo_inputs():
    import optax

    from jvae.objectives.elbo import make_elbo_loss

    model = _model()
    params = _params(model, seed=4)
    x = (np.random.default_rng(0).random((8,) + DATA) > 0.5).astype(np.float32)
    loss_fn = make_elbo_loss(model)         # no analytic KL to a VampPrior: Monte Carlo rate
    opt = optax.adam(1e-2)

    @jax.jit
    def step(params, key):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, key, x)
        updates, _ = opt.update(grads, opt.init(params), params)
        return optax.apply_updates(params, updates), loss, aux, grads

    new, loss, aux, grads = step(params, jax.random.key(1))
    assert np.isfinite(float(loss)) and np.isclose(float(loss), -float(aux["elbo"]))
    g_u = np.asarray(grads["params"]["prior"]["pseudo_inputs"])
    assert np.all(np.isfinite(g_u)) and np.any(g_u != 0.0)
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                           params, new)
    assert all(jax.tree.leaves(changed))


def test_configs_build_a_vamp_prior_with_the_likelihood_s_range():
    config = _load("pytorch_example")
    config.model.prior, config.model.prior_components = "vamp", 5
    config.model.posterior = "planar"
    schema.validate_config(config)
    model = builders.build_model(config, (28, 28, 1))
    assert isinstance(model.prior, VampPrior) and model.prior.clip == (0.0, 1.0)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    assert shapes["params"]["prior"]["pseudo_inputs"].shape == (5, 28, 28, 1)
    config = _load("gaussian2d")
    config.model.prior = "vamp"
    schema.validate_config(config)
    prior = builders.build_model(config, (2,)).prior
    assert prior.clip is None and prior.num_components == config.model.prior_components


@pytest.mark.parametrize("field, value, match", [
    ("model.prior", "vampp", "did you mean 'vamp'"),
    ("model.posterior", "iaff", "did you mean 'iaf'"),
    ("model.posterior", "coupled", "did you mean 'coupling'"),
    ("model.flow_layers", 0, "flow_layers"),
    ("model.flow_layers", -1, "flow_layers"),
    ("model.prior_components", 0, "prior_components"),
])
def test_bad_flow_and_prior_settings_are_one_line_errors(field, value, match):
    config = _load("iwae_mnist")
    section, key = field.split(".")
    config[section][key] = value
    if key == "flow_layers":
        config.model.posterior = "planar"
    elif key == "prior_components":
        config.model.prior = "vamp"
    with pytest.raises(ValueError, match=match) as err:
        schema.validate_config(config)
    assert "\n" not in str(err.value)


def test_flow_width_and_latent_size_are_checked():
    config = _load("iwae_mnist")
    config.model.posterior, config.model.flow_hidden = "iaf", 20        # latent_dim 50
    with pytest.raises(ValueError, match="flow_hidden >= latent_dim - 1 = 49"):
        schema.validate_config(config)
    config.model.posterior, config.latent_dim = "coupling", 1
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        schema.validate_config(config)


@pytest.mark.parametrize("sd", [0.11, 0.05, 0.019])
def test_log_prob_is_accurate_in_float32_for_narrow_components(sd):
    """200 components in 50 dimensions, points drawn from the mixture: float32 against
    float64 below 1e-3 nats at every width (the components visited in two chunks here); the
    expanded-square form jvae used before is off by more at the narrowest."""
    from experiments.numerics import expanded_log_prob, reference_log_prob, vamp_problem
    from jvae.models.distributions import diag_gaussian
    from jvae.models.priors import vamp_mixture

    loc, scale, z = vamp_problem(sd, 200, 50, 500)
    ref = reference_log_prob(loc, scale, z)
    f32 = [jnp.asarray(a, jnp.float32) for a in (loc, scale, z)]
    log_p = jax.jit(lambda l, s, z: vamp_mixture(diag_gaussian(l, s)).log_prob(z))(*f32)
    assert log_p.shape == (500,)
    assert np.max(np.abs(np.asarray(log_p, np.float64) - ref)) < 1e-3
    if sd == 0.019:
        old = np.asarray(jax.jit(expanded_log_prob)(*f32), np.float64)
        assert np.max(np.abs(old - ref)) > 1e-2


def test_chunked_and_single_pass_densities_agree():
    """Few points: one pass over all components; many: chunks (with padding). Same values,
    under jit and eagerly, for any leading shape."""
    from jvae.models.distributions import diag_gaussian
    from jvae.models.priors import vamp_mixture

    rng = np.random.default_rng(2)
    loc = jnp.asarray(rng.normal(size=(37, 8)), jnp.float32)
    scale = jnp.asarray(rng.uniform(0.1, 1.0, (37, 8)), jnp.float32)
    prior = vamp_mixture(diag_gaussian(loc, scale))
    z = jnp.asarray(rng.normal(size=(15, 500, 8)), jnp.float32)     # 60000 * 8 * 37 > 2^22
    many = jax.jit(prior.log_prob)(z)
    few = jnp.stack([prior.log_prob(z[i, :4]) for i in range(3)])
    assert many.shape == (15, 500)
    np.testing.assert_allclose(many[:3, :4], few, rtol=1e-6, atol=1e-5)
    with jax.disable_jit():
        np.testing.assert_allclose(prior.log_prob(z[:2]), many[:2], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("sd", [0.05, 1.0, 3.0])
@pytest.mark.parametrize("chunked", [False, True])
def test_log_prob_gradient_is_the_responsibility_weighted_closed_form(sd, chunked, monkeypatch):
    """``d/d mu_k sum_n log p(z_n) = sum_n r_nk (z_n - mu_k) / s_k^2`` and ``d/d s_k =
    sum_n r_nk ((z_n - mu_k)^2 / s_k^3 - 1 / s_k)`` (``r`` the float64 responsibilities), for
    narrow and wide components, in one pass over the components and in chunks."""
    import jvae.models.priors as priors
    from experiments.numerics import vamp_problem
    from jvae.models.distributions import diag_gaussian
    from scipy.special import softmax

    loc, scale, z = vamp_problem(sd, 40, 6, 30, seed=3)
    if chunked:                                   # chunks of 7 of the 40 components (padded)
        monkeypatch.setattr(priors, "_CHUNK_ELEMENTS", 7 * 30 * 6)
    f32 = [jnp.asarray(a, jnp.float32) for a in (loc, scale, z)]
    g_loc, g_scale = jax.grad(
        lambda l, s: jnp.sum(priors.vamp_mixture(diag_gaussian(l, s)).log_prob(f32[2])),
        argnums=(0, 1))(f32[0], f32[1])
    diff = z[:, None, :] - loc                                                   # [N, K, D]
    log_n = np.sum(-0.5 * (diff / scale) ** 2 - np.log(scale), -1)               # [N, K]
    r = softmax(log_n, -1)[..., None]
    ref_loc = np.sum(r * diff / scale ** 2, 0)
    ref_scale = np.sum(r * (diff ** 2 / scale ** 3 - 1 / scale), 0)
    for got, ref in ((g_loc, ref_loc), (g_scale, ref_scale)):
        np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=2e-3,
                                   atol=2e-3 * np.abs(ref).max())


def test_the_elbo_s_rate_is_the_monte_carlo_kl_to_the_encoder_s_own_mixture():
    """The rate is ``log q(z|x) - log 1/K sum_k q(z|u_k)`` with the posterior's encoder at the
    pseudo-inputs, and its gradient reaches the encoder through the prior as well (the
    paper's shared encoder): differentiating with the prior's encoder frozen gives another
    encoder gradient and the same pseudo-input gradient."""
    from jvae.models.distributions import diag_gaussian
    from jvae.objectives.elbo import elbo_terms

    model = _model()
    params = _params(model, seed=5)
    x = (np.random.default_rng(6).random((9,) + DATA) > 0.5).astype(np.float32)
    key = jax.random.key(7)
    _, rate = elbo_terms(model, params, key, x, kl="mc")
    q = model.apply(params, x, method=VAE.encode)
    z, log_q = q.sample_and_log_prob(seed=key)
    _, loc, scale = _components(params)
    zk = np.asarray(z, np.float64)[:, None, :]
    log_nk = np.sum(-0.5 * ((zk - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi),
                    -1)
    np.testing.assert_allclose(rate, np.asarray(log_q) - (logsumexp(log_nk, -1) - np.log(K)),
                               rtol=1e-5, atol=1e-5)

    def mean_rate(p, frozen_prior_encoder):
        q = model.apply(p, x, method=VAE.encode)
        z, log_q = q.sample_and_log_prob(seed=key)
        u = jnp.clip(p["params"]["prior"]["pseudo_inputs"], 0.0, 1.0)
        pe = jax.lax.stop_gradient(p) if frozen_prior_encoder else p
        qu = model.apply(pe, u, method=VAE.encode)
        prior = diag_gaussian(qu.loc, qu.scale_diag)
        log_p = jax.nn.logsumexp(prior.log_prob(z[:, None, :]), -1) - np.log(K)
        return jnp.mean(log_q - log_p)

    g_lib = jax.grad(lambda p: jnp.mean(elbo_terms(model, p, key, x, kl="mc")[1]))(params)
    g_shared, g_frozen = (jax.grad(mean_rate)(params, f) for f in (False, True))
    for a, b in zip(jax.tree.leaves(g_lib), jax.tree.leaves(g_shared)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    enc = lambda g: np.concatenate([np.ravel(v) for v in jax.tree.leaves(  # noqa: E731
        {k: g["params"][k] for k in ("encoder", "posterior")})])
    assert np.max(np.abs(enc(g_shared) - enc(g_frozen))) > 1e-2 * np.max(np.abs(enc(g_shared)))
    np.testing.assert_allclose(g_shared["params"]["prior"]["pseudo_inputs"],
                               g_frozen["params"]["prior"]["pseudo_inputs"], rtol=1e-5, atol=1e-6)
