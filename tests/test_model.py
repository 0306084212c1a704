"""Tests for jvae.models.nets and jvae.models.vae: structured batch shapes, probabilistic PCA's closed forms,
the sampling helpers, bad input, and the ELBO loss with and without ``jit``.

The PPCA model (fixture ``ppca`` in conftest.py) is a jvae VAE whose parameters are set by hand
so that ``p(x|z)``, ``p(x)`` and the exact posterior are known in closed form. Work is jitted once
per test; sampling-heavy tests use ``rbg`` keys, which compile much faster on CPU than the
default threefry keys (those are used where the key type matters: jit vs no jit).
"""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.evaluation import importance_log_likelihood
from jvae.models.heads import BernoulliHead, DiagGaussianHead
from jvae.models.vae import (VAE, init_params, log_joint, naive_lower_bound, reconstruct,
                        sample_prior)
from jvae.models.conv_nets import ConvDecoder, ConvEncoder
from jvae.models.nets import MLP
from jvae.objectives.elbo import make_elbo_loss
from jvae.models.priors import MixturePrior


def _key(seed):
    return jax.random.key(seed, impl="rbg")


def _f32(a):
    return jnp.asarray(a, jnp.float32)


def _random_params(module, *args, seed=0, scale=0.3, method=None):
    """Parameters with ``init``'s structure, drawn in numpy: ``eval_shape`` compiles nothing,
    whereas a real ``init`` compiles a random initialiser per parameter shape."""
    rng = np.random.default_rng(seed)
    # nn.Module.init, not module.init: see test_submodules_keep_flax_init.
    shapes = jax.eval_shape(functools.partial(nn.Module.init, module, method=method),
                            jax.random.PRNGKey(0), *args)
    return jax.tree.map(lambda s: _f32(rng.normal(size=s.shape) * scale), shapes)


# --------------------------------------------------------------------------- networks

IMAGE_SHAPES = [(28, 28, 1), (32, 32, 3), (64, 64, 1)]


def test_networks_on_structured_batches():
    rng = np.random.default_rng(0)
    z = _f32(rng.normal(size=(3, 2, 5)))                                  # [3, 2, D]
    cases = {}
    for (h, w, c) in IMAGE_SHAPES:
        x = _f32(rng.uniform(size=(3, 2, h, w, c)))                       # [3, 2, H, W, C]
        cases[(h, w, c)] = {
            "mlp": (MLP(hidden=(8, 4), in_event_ndims=3), x),
            "enc": (ConvEncoder(features=(4, 4, 4, 6), out_dim=5), x),
            "dec": (ConvDecoder(image_shape=(h, w), out_channels=c, features=(8, 4, 4)), z),
        }
    params = {s: {n: _random_params(net, inp) for n, (net, inp) in nets.items()}
              for s, nets in cases.items()}

    @jax.jit
    def run(params, inputs):
        return {s: {n: (net.apply(params[s][n], inputs[s][n]),
                        net.apply(params[s][n], inputs[s][n][1, 0]))
                    for n, (net, _) in nets.items()} for s, nets in cases.items()}

    out = run(params, {s: {n: inp for n, (_, inp) in nets.items()} for s, nets in cases.items()})
    for (h, w, c), res in out.items():
        assert res["mlp"][0].shape == (3, 2, 4)
        assert res["enc"][0].shape == (3, 2, 5)
        assert res["dec"][0].shape == (3, 2, h, w, c)                     # exactly H, W, C
        for name, (batched, single) in res.items():
            assert np.all(np.isfinite(batched)), name
            # The [1, 0] element of the structured batch equals the network on that element.
            assert single.shape == batched.shape[2:], name
            np.testing.assert_allclose(batched[1, 0], single, rtol=2e-5, atol=2e-6,
                                       err_msg=f"{(h, w, c)} {name}")


def test_submodules_keep_flax_init():
    # Every network and head is a Linen module that can be initialised on its own.
    x = jnp.zeros((2, 4))
    for module in (MLP((8,)), BernoulliHead((3,)), DiagGaussianHead(2),
                   ConvEncoder(features=(4,)), ConvDecoder((4, 4), 1, features=(4,))):
        inp = jnp.zeros((2, 4, 4, 1)) if isinstance(module, ConvEncoder) else x
        shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), inp)
        assert jax.tree.leaves(shapes), type(module).__name__


def test_conv_encoder_feature_size():
    # Four stride-2 SAME convolutions: spatial size ceil(H / 16) x ceil(W / 16).
    for (h, w, c) in IMAGE_SHAPES + [(30, 20, 2)]:
        enc = ConvEncoder(features=(4, 4, 4, 6))
        x = jnp.zeros((3, 2, h, w, c))
        shape = jax.eval_shape(lambda: enc.apply(enc.init(_key(0), x), x)).shape
        assert shape == (3, 2, -(-h // 16) * -(-w // 16) * 6)


def test_conv_decoder_crops_non_square_images():
    dec = ConvDecoder(image_shape=(30, 20), out_channels=2, features=(4, 4, 4))
    z = jnp.zeros((2, 3))
    shape = jax.eval_shape(lambda: dec.apply(dec.init(_key(0), z), z)).shape
    assert shape == (2, 30, 20, 2)


# --------------------------------------------------------------------------- a small VAE

DATA_SHAPE = (6, 6, 1)


@pytest.fixture(scope="module")
def bernoulli_vae():
    """MLP VAE on 6x6x1 images: Bernoulli likelihood, mixture prior (KL by Monte Carlo)."""
    model = VAE(data_shape=DATA_SHAPE, prior=MixturePrior(3, num_components=4),
                encoder=MLP((16,), in_event_ndims=3), posterior=DiagGaussianHead(3),
                decoder=MLP((16,)), likelihood=BernoulliHead(DATA_SHAPE))
    rng = np.random.default_rng(1)
    x = _f32(rng.uniform(size=(4,) + DATA_SHAPE) < 0.4)
    params = _random_params(model, x, seed=1)
    assert jax.tree.structure(params) == jax.tree.structure(
        jax.eval_shape(functools.partial(init_params, model), jax.random.PRNGKey(0), x))
    return model, params, x


def test_vae_encode_decode_log_joint_shapes(bernoulli_vae):
    model, params, x = bernoulli_vae
    x = x[:2]                                                            # [B=2, 6, 6, 1]
    z = _f32(np.random.default_rng(2).normal(size=(3, 2, 3)))            # [S=3, B=2, D=3]
    shapes = {}

    @jax.jit
    def run(params, x, z):
        q = model.apply(params, x, method=VAE.encode)
        q_sb = model.apply(params, jnp.broadcast_to(x, (3,) + x.shape), method=VAE.encode)
        px = model.apply(params, z, method=VAE.decode)
        pz = model.apply(params, method=VAE.prior_distribution)
        shapes.update(q=(q.batch_shape, q.event_shape), q_sb=q_sb.batch_shape,
                      px=(px.batch_shape, px.event_shape), pz=pz.batch_shape)
        return (q.mean(), q_sb.mean(), px.log_prob(x), px.mean(), pz.log_prob(z),
                model.apply(params, x, z, method=VAE.log_joint), log_joint(model, params, x, z),
                model.apply(params, z[1, 0], method=VAE.decode).log_prob(x[0]))

    q_mean, q_sb_mean, log_px_z, px_mean, log_pz, lj, lj2, lp10 = run(params, x, z)
    assert shapes == {"q": ((2,), (3,)), "q_sb": (3, 2), "px": ((3, 2), DATA_SHAPE),
                      "pz": ()}
    assert q_mean.shape == (2, 3) and q_sb_mean.shape == (3, 2, 3)
    np.testing.assert_allclose(q_sb_mean[2], q_mean, rtol=1e-5, atol=1e-6)
    assert log_px_z.shape == (3, 2) and px_mean.shape == (3, 2) + DATA_SHAPE
    assert lj.shape == (3, 2)
    np.testing.assert_allclose(lj, log_px_z + log_pz, rtol=1e-5)
    np.testing.assert_allclose(lj2, lj, rtol=1e-6)
    np.testing.assert_allclose(lp10, log_px_z[1, 0], rtol=1e-5)
    # Bernoulli mean is a probability; log p(x|z) of binary x is negative.
    assert np.all((np.asarray(px_mean) > 0) & (np.asarray(px_mean) < 1))
    assert np.all(np.asarray(log_px_z) < 0)


def test_vae_rejects_observations_of_the_wrong_shape(bernoulli_vae, ppca):
    model, params, x = bernoulli_vae
    for bad in (jnp.zeros((2, 6, 6)), jnp.zeros((2, 5, 6, 1)), jnp.zeros((2, 6, 6, 3))):
        with pytest.raises(ValueError, match=re.escape("(6, 6, 1)")):
            model.apply(params, bad, method=VAE.encode)
        with pytest.raises(ValueError, match=re.escape("(6, 6, 1)")):
            model.apply(params, bad, jnp.zeros((2, 3)), method=VAE.log_joint)
    with pytest.raises(ValueError, match=re.escape("(5,)")):
        ppca.model.apply(ppca.params, jnp.zeros((3, 4)), method=VAE.encode)


def test_helpers_reject_bad_arguments(bernoulli_vae):
    model, params, x = bernoulli_vae
    key = _key(0)

    def raises(fn, match):
        # Under jit the error surfaces while tracing, before anything is compiled.
        with pytest.raises(ValueError, match=match):
            jax.jit(fn)(params, key, x)

    for num in (0, -1):
        raises(lambda p, k, x: sample_prior(model, p, k, num), "num")
        raises(lambda p, k, x: naive_lower_bound(model, p, k, x, num), "num_samples")
    raises(lambda p, k, x: sample_prior(model, p, k, 2, mode="median"), "mode")
    raises(lambda p, k, x: reconstruct(model, p, k, x, mode="median"), "mode")
    raises(lambda p, k, x: reconstruct(model, p, k, x, latent="mode"), "latent")


def test_sample_prior_and_reconstruct_bernoulli(bernoulli_vae):
    model, params, x = bernoulli_vae

    @jax.jit
    def run(params, key, x):
        z_m, x_m = sample_prior(model, params, key, 5, mode="mean")
        z_s, x_s = sample_prior(model, params, key, 5, mode="sample")
        rec = {(m, l): reconstruct(model, params, key, x, mode=m, latent=l)
               for m in ("mean", "sample") for l in ("mean", "sample")}
        return z_m, x_m, z_s, x_s, rec, model.apply(params, z_m, method=VAE.decode).mean()

    z_m, x_m, z_s, x_s, rec, px_mean = run(params, _key(3), x)
    assert z_m.shape == (5, 3) and z_s.shape == (5, 3)
    assert x_m.shape == (5,) + DATA_SHAPE and x_s.shape == (5,) + DATA_SHAPE
    np.testing.assert_allclose(z_s, z_m)                     # same key, same z ~ p(z)
    np.testing.assert_allclose(x_m, px_mean, rtol=1e-6)      # mode="mean" is E[x|z]
    x_m = np.asarray(x_m)
    assert np.all((x_m > 0) & (x_m < 1)) and not np.all(np.isin(x_m, [0.0, 1.0]))
    assert np.all(np.isin(np.asarray(x_s), [0, 1]))          # mode="sample" is binary
    for (mode, latent), r in rec.items():
        assert r.shape == x.shape, (mode, latent)
        if mode == "sample":
            assert np.all(np.isin(np.asarray(r), [0, 1]))
        else:
            assert np.all((np.asarray(r) > 0) & (np.asarray(r) < 1))


# --------------------------------------------------------------------------- PPCA closed forms


def test_ppca_parameters_give_the_exact_posterior(ppca):
    x = ppca.sample(6, seed=10)

    @jax.jit
    def run(params, x):
        q = ppca.model.apply(params, x, method=VAE.encode)
        return q.mean(), q.stddev()

    mean, sd = run(ppca.params, x)
    np.testing.assert_allclose(mean, ppca.post_mean(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sd, np.broadcast_to(ppca.post_sd, sd.shape), rtol=1e-5)
    # Sanity of the closed forms themselves: Bayes' rule, log p(x) = log p(x, z) - log p(z|x).
    z = ppca.post_mean(x) + 0.3
    log_post = np.sum(-0.5 * ((z - ppca.post_mean(x)) / ppca.post_sd) ** 2
                      - np.log(ppca.post_sd) - 0.5 * np.log(2 * np.pi), -1)
    np.testing.assert_allclose(ppca.log_joint(x, z) - log_post, ppca.log_px(x), rtol=1e-10)


def test_ppca_decode_and_log_joint_match_closed_forms(ppca):
    rng = np.random.default_rng(11)
    x = ppca.sample(4, seed=11)                                           # [B=4, Dx]
    z = _f32(rng.normal(size=(3, 4, ppca.dz)))                            # [S=3, B=4, Dz]

    @jax.jit
    def run(params, x, z):
        px = ppca.model.apply(params, z, method=VAE.decode)
        return px.log_prob(x), px.mean(), ppca.model.apply(params, x, z, method=VAE.log_joint)

    log_px_z, mean, lj = run(ppca.params, x, z)
    assert log_px_z.shape == (3, 4) and lj.shape == (3, 4)
    np.testing.assert_allclose(mean, np.asarray(z, np.float64) @ ppca.W.T + ppca.mu,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_px_z, ppca.log_px_given_z(x, z), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lj, ppca.log_joint(x, z), rtol=1e-5, atol=1e-5)


def test_ppca_sample_prior_and_reconstruct_closed_forms(ppca):
    n = 4000
    x = ppca.sample(8, seed=12)

    @jax.jit
    def run(params, key, x):
        return (sample_prior(ppca.model, params, key, n, mode="mean"),
                sample_prior(ppca.model, params, key, n, mode="sample"),
                reconstruct(ppca.model, params, key, x),
                reconstruct(ppca.model, params, key, x, mode="mean", latent="sample"))

    (z_m, x_m), (z_s, x_s), rec, rec_s = run(ppca.params, _key(4), x)
    assert z_m.shape == (n, ppca.dz) and x_s.shape == (n, ppca.dx)
    z_m = np.asarray(z_m, np.float64)
    # E[x|z] = W z + mu, exactly; z ~ N(0, I).
    np.testing.assert_allclose(x_m, z_m @ ppca.W.T + ppca.mu, rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(z_m.mean(0)) < 4 / np.sqrt(n))
    assert np.all(np.abs(z_m.std(0) - 1) < 4 / np.sqrt(2 * n))
    # x ~ p(x|z): the standardised residual (x - W z - mu) / sigma is N(0, 1).
    eps = (np.asarray(x_s, np.float64) - np.asarray(z_s, np.float64) @ ppca.W.T - ppca.mu)
    eps = eps / ppca.sigma
    assert np.all(np.abs(eps.mean(0)) < 4 / np.sqrt(n))
    assert np.all(np.abs(eps.std(0) - 1) < 4 / np.sqrt(2 * n))
    # Reconstruction through the posterior mean: W M^-1 W^T (x - mu) + mu.
    np.testing.assert_allclose(rec, ppca.post_mean(x) @ ppca.W.T + ppca.mu, rtol=1e-5,
                               atol=1e-5)
    assert rec_s.shape == x.shape and not np.allclose(rec_s, rec)


def test_ppca_naive_lower_bound(ppca):
    n, s = 1000, 10
    x = ppca.sample(n, seed=13)

    @jax.jit
    def run(params, params_poor, key, x):
        # The importance estimate uses a poorer q (K = 10), so that it is a real estimate.
        return (naive_lower_bound(ppca.model, params, key, x, s),
                importance_log_likelihood(ppca.model, params_poor, key, x, 10))

    naive, is10 = (np.asarray(v, np.float64) for v in run(ppca.params, ppca.params_poor,
                                                          _key(5), x))
    assert naive.shape == (n,)
    # E_{z ~ N(0, I)} log N(x | W z + mu, sigma^2 I)
    #   = -Dx/2 log(2 pi sigma^2) - (|x - mu|^2 + tr(W^T W)) / (2 sigma^2).
    expected = (-0.5 * ppca.dx * np.log(2 * np.pi * ppca.sigma**2)
                - (np.sum((x - ppca.mu) ** 2, -1) + np.sum(ppca.W**2)) / (2 * ppca.sigma**2))
    diff = naive - expected
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(n)
    # Jensen: the bound is below log p(x) for every x in closed form, and on average here.
    exact = ppca.log_px(x)
    assert np.all(expected <= exact)
    gap = exact - naive
    assert gap.mean() > 10 * gap.std() / np.sqrt(n)
    # The naive bound is far looser than importance sampling with a (poor) encoder.
    d = is10 - naive
    assert d.mean() > 10 * d.std() / np.sqrt(n)


# --------------------------------------------------------------------------- ELBO gradients


def test_ppca_elbo_gradient_is_unbiased_for_log_px_at_the_exact_posterior(ppca):
    # At q = p(z|x), grad_theta ELBO = grad_theta log p_theta(x) - grad_theta KL(q || p(z|x)),
    # and the KL term vanishes (its minimum, 0, is attained at theta). The reparameterised
    # one-sample gradient must therefore average to grad log p(x) for the decoder (W, mu).
    x = _f32(ppca.sample(8, seed=14))
    s = 2000
    loss_fn = make_elbo_loss(ppca.model, num_samples=1, kl="analytic")

    @jax.jit
    def per_sample_grads(params, keys, x):
        return jax.vmap(lambda k: jax.grad(lambda p: -loss_fn(p, k, x)[0])(params))(keys)

    g = per_sample_grads(ppca.params, jax.random.split(_key(6), s), x)
    g = g["params"]["likelihood"]["out"]

    def mean_log_px(wt, mu):                                            # closed form in jnp
        cov = wt.T @ wt + ppca.sigma**2 * jnp.eye(ppca.dx)
        r = x - mu
        quad = jnp.sum(r * jnp.linalg.solve(cov, r.T).T, -1)
        return jnp.mean(-0.5 * (quad + jnp.linalg.slogdet(cov)[1]
                                + ppca.dx * jnp.log(2 * jnp.pi)))

    out = ppca.params["params"]["likelihood"]["out"]
    exact = jax.grad(mean_log_px, argnums=(0, 1))(out["kernel"], out["bias"])
    for name, e in zip(("kernel", "bias"), exact):
        samples = np.asarray(g[name], np.float64)
        mean, se = samples.mean(0), samples.std(0) / np.sqrt(s)
        assert np.all(np.abs(mean - np.asarray(e)) < 4 * se + 1e-4), (name, mean, e, se)
        assert np.max(np.abs(e)) > 10 * np.max(se)                      # the check has power


# --------------------------------------------------------------------------- jit vs no jit


def test_elbo_loss_and_gradient_same_with_and_without_jit(ppca):
    # The rate is analytic ("auto": standard normal prior) or Monte Carlo ("mc"): both branches
    # of kl_divergence must give the same numbers under jit as without. Without jit every
    # primitive is compiled on its own, so this test uses the smallest model (PPCA, poorer q).
    x = _f32(ppca.sample(4, seed=15))
    params = ppca.params_poor
    key = jax.random.PRNGKey(7)                                         # the default key type
    vgs = {kl: jax.value_and_grad(make_elbo_loss(ppca.model, beta=0.5, num_samples=2, kl=kl),
                                  has_aux=True) for kl in ("auto", "mc")}
    eager = {kl: vg(params, key, x) for kl, vg in vgs.items()}
    jitted = jax.jit(lambda p, k, x: {kl: vg(p, k, x) for kl, vg in vgs.items()})(params, key, x)
    for kl in vgs:
        (loss_e, aux_e), grad_e = eager[kl]
        (loss_j, aux_j), grad_j = jitted[kl]
        assert np.isfinite(loss_e)
        np.testing.assert_allclose(loss_j, loss_e, rtol=1e-5, err_msg=kl)
        for k in ("loss", "elbo", "distortion", "rate"):
            np.testing.assert_allclose(aux_j[k], aux_e[k], rtol=1e-5, atol=1e-6, err_msg=k)
        # loss = mean(D + beta R) and elbo = -mean(D + R).
        np.testing.assert_allclose(aux_e["loss"], aux_e["distortion"] + 0.5 * aux_e["rate"],
                                   rtol=1e-5)
        np.testing.assert_allclose(aux_e["elbo"], -(aux_e["distortion"] + aux_e["rate"]),
                                   rtol=1e-5)
        assert jax.tree.structure(grad_e) == jax.tree.structure(params)
        assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grad_e))
        for ge, gj in zip(jax.tree.leaves(grad_e), jax.tree.leaves(grad_j)):
            np.testing.assert_allclose(gj, ge, rtol=1e-4, atol=1e-5, err_msg=kl)
    # The two rate estimators differ (one is Monte Carlo), the distortions are the same
    # samples: the key is consumed identically by both.
    assert float(eager["auto"][0][1]["rate"]) != float(eager["mc"][0][1]["rate"])
    np.testing.assert_allclose(eager["auto"][0][1]["distortion"],
                               eager["mc"][0][1]["distortion"], rtol=1e-6)


def test_encoder_that_does_not_flatten_images_is_rejected():
    # An image VAE whose MLP encoder forgets in_event_ndims=3 would give q a batch shape of
    # [B, H, W]; encode must refuse instead of returning a silently wrong posterior.
    from jvae.models.heads import BernoulliHead as _Bern
    from jvae.models.priors import StandardNormalPrior as _Prior

    model = VAE(data_shape=(4, 4, 1), prior=_Prior(2), encoder=MLP((8,)),
                posterior=DiagGaussianHead(2), decoder=MLP((8,)), likelihood=_Bern((4, 4, 1)))
    x = jnp.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="in_event_ndims=3"):
        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))


def test_glorot_init_has_the_glorot_variance():
    import jax
    import numpy as np

    from jvae.models.nets import dense

    layer = dense(300, 500, "glorot")
    params = layer.init(jax.random.key(0), np.zeros((1, 500), np.float32))["params"]
    np.testing.assert_allclose(np.var(params["kernel"]), 2.0 / (500 + 300), rtol=0.03)
    assert not np.any(params["bias"])
