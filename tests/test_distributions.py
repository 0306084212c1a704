"""Tests for jvae.models.distributions, jvae.models.heads and jvae.models.priors: closed forms and batch shapes.

Every reference value is computed independently in float64 numpy from the textbook formula.
Work is jitted once per test (eager mode would compile every primitive separately), inputs come
from numpy, and the sampling-heavy tests use ``rbg`` keys: on CPU the default
(threefry, partitionable) sampler takes seconds to compile for every new sample shape.
"""

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.models import distributions as dists
from jvae.models.heads import (BernoulliHead, ContinuousBernoulliHead, DiagGaussianHead, GaussianHead,
                        positive_scale)
from jvae.models.priors import MixturePrior, StandardNormalPrior


def _key(seed):
    return jax.random.key(seed, impl="rbg")


# Heads have a field named ``init`` that shadows ``flax.linen.Module.init`` (see
# test_model.py::test_submodules_keep_flax_init), so the base-class method is called directly.
_init = nn.Module.init


def _f32(a):
    return jnp.asarray(a, jnp.float32)


def _logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p) - np.log1p(-p)


def _gauss_kl_np(mq, sq, mp, sp):
    """KL(N(mq, sq^2) || N(mp, sp^2)) summed over the last axis (float64)."""
    mq, sq, mp, sp = (np.asarray(a, np.float64) for a in (mq, sq, mp, sp))
    return np.sum(np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5, axis=-1)


# --------------------------------------------------------------------------- Gaussian KL

_NUM_MC = 20000


@pytest.fixture(scope="module")
def gauss_kls():
    """KLs between q [B=4, D=3] and p [D=3]: closed form (float64) and jvae's three methods."""
    rng = np.random.default_rng(1)
    mq, sq = rng.normal(size=(4, 3)), np.exp(rng.normal(scale=0.3, size=(4, 3)))
    mp, sp = rng.normal(size=(3,)), np.exp(rng.normal(scale=0.3, size=(3,)))

    @jax.jit
    def run(mq, sq, mp, sp, key):
        q, p = dists.diag_gaussian(mq, sq), dists.diag_gaussian(mp, sp)
        z = q.sample(seed=key, sample_shape=(_NUM_MC,))                 # [S, B, D]
        return {"analytic": dists.kl_divergence(q, p, method="analytic"),
                "auto": dists.kl_divergence(q, p),
                "mc": dists.kl_divergence(q, p, z, method="mc"),
                "log_ratio": q.log_prob(z) - p.log_prob(z)}

    out = run(_f32(mq), _f32(sq), _f32(mp), _f32(sp), _key(0))
    assert dists.has_analytic_kl(dists.diag_gaussian(_f32(mq), _f32(sq)),
                                 dists.diag_gaussian(_f32(mp), _f32(sp)))
    return out, _gauss_kl_np(mq, sq, mp, sp)


def test_gaussian_kl_analytic_matches_closed_form(gauss_kls):
    out, expected = gauss_kls
    assert out["analytic"].shape == (4,)
    np.testing.assert_allclose(out["analytic"], expected, rtol=1e-5, atol=1e-6)
    # "auto" picks the analytic form (no samples needed).
    np.testing.assert_allclose(out["auto"], expected, rtol=1e-5, atol=1e-6)


def test_gaussian_kl_monte_carlo_within_standard_errors(gauss_kls):
    out, expected = gauss_kls
    log_ratio = np.asarray(out["log_ratio"], np.float64)               # [S, B]
    assert log_ratio.shape == (_NUM_MC, 4)
    se = log_ratio.std(axis=0) / np.sqrt(_NUM_MC)
    np.testing.assert_allclose(out["mc"], log_ratio.mean(axis=0), rtol=1e-4, atol=1e-4)
    assert np.all(se < 0.05)                                            # a meaningful check
    assert np.all(np.abs(np.asarray(out["mc"]) - expected) < 4 * se + 1e-4), (out, expected, se)


def test_gaussian_kl_against_standard_normal_prior():
    mq = np.array([[0.0, 0.0], [1.0, -2.0], [0.3, 0.1]])
    sq = np.array([[1.0, 1.0], [0.5, 2.0], [0.1, 3.0]])
    kl = jax.jit(lambda m, s: dists.kl_divergence(
        dists.diag_gaussian(m, s), StandardNormalPrior(2).apply({}), method="analytic"))(
            _f32(mq), _f32(sq))
    # KL(q || N(0, I)) = 1/2 sum (s^2 + m^2 - 1 - log s^2); zero when q = p.
    expected = 0.5 * np.sum(sq**2 + mq**2 - 1 - np.log(sq**2), axis=-1)
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-6)
    assert abs(float(kl[0])) < 1e-6


def _mixture_params(locs, scales, logits, min_scale=1e-4):
    raw = np.log(np.expm1(np.asarray(scales) - min_scale))
    return {"params": {"logits": _f32(logits), "locs": _f32(locs), "raw_scales": _f32(raw)}}


def test_kl_against_mixture_prior_falls_back_to_monte_carlo():
    rng = np.random.default_rng(2)
    p = MixturePrior(latent_dim=2, num_components=3).apply(
        _mixture_params(rng.normal(size=(3, 2)), np.ones((3, 2)), np.zeros(3)))
    q = dists.diag_gaussian(jnp.array([[0.5, -0.5], [1.0, 2.0]]), jnp.array([[1.0, 0.5]] * 2))
    assert not dists.has_analytic_kl(q, p)
    with pytest.raises(ValueError, match="[Aa]nalytic"):
        dists.kl_divergence(q, p, method="analytic")
    with pytest.raises(ValueError):
        dists.kl_divergence(q, p, method="auto")            # the MC fallback needs samples
    with pytest.raises(ValueError):
        dists.kl_divergence(q, p, jnp.zeros((1, 2, 2)), method="exact")
    z = _f32(rng.normal(size=(7, 2, 2)))
    kl, ref = jax.jit(lambda z: (dists.kl_divergence(q, p, z, method="auto"),
                                 q.log_prob(z) - p.log_prob(z)))(z)
    assert kl.shape == (2,)
    np.testing.assert_allclose(kl, np.mean(ref, axis=0), rtol=1e-5)


def test_kl_auto_against_one_component_mixture_equals_gaussian_kl():
    # A one-component mixture is the Gaussian itself, so the MC fallback must converge to the
    # closed-form Gaussian KL.
    mp, sp = np.array([0.3, -1.0]), np.array([1.5, 0.7])
    mq, sq = np.array([[0.0, 0.0], [1.0, -0.5]]), np.array([[1.0, 1.0], [0.4, 0.9]])
    mix = MixturePrior(2, num_components=1)

    @jax.jit
    def run(params, key):
        p = mix.apply(params)
        q = dists.diag_gaussian(_f32(mq), _f32(sq))
        z = q.sample(seed=key, sample_shape=(_NUM_MC,))
        return dists.kl_divergence(q, p, z, method="auto"), q.log_prob(z) - p.log_prob(z)

    kl, log_ratio = run(_mixture_params(mp[None], sp[None], [0.0]), _key(2))
    se = np.asarray(log_ratio).std(axis=0) / np.sqrt(_NUM_MC)
    expected = _gauss_kl_np(mq, sq, mp, sp)
    assert np.all(expected > 0.1)
    assert np.all(np.abs(np.asarray(kl) - expected) < 4 * se + 1e-4), (kl, expected, se)


# --------------------------------------------------------------------------- ContinuousBernoulli

CB_PROBS = [0.01, 0.1, 0.3, 0.5 - 1e-3, 0.5, 0.5 + 1e-3, 0.7, 0.9, 0.99]


def _log_norm_np(lam):
    """log C(l), C(l) = 2 atanh(1 - 2l) / (1 - 2l), C(1/2) = 2 (float64)."""
    lam = np.asarray(lam, np.float64)
    t = 1 - 2 * lam
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.log(2 * np.arctanh(t) / t)
    return np.where(t == 0, np.log(2.0), exact)


@jax.jit
def _cb_log_prob(logits, x):
    return dists.continuous_bernoulli(logits, 0).log_prob(x)


def test_continuous_bernoulli_density_integrates_to_one():
    nodes, weights = np.polynomial.legendre.leggauss(64)
    x = 0.5 * (nodes + 1.0)                                             # Gauss-Legendre on [0, 1]
    lam = np.array(CB_PROBS)
    lp = _cb_log_prob(_f32(_logit(lam)[:, None]), _f32(x[None, :]))     # [L, 64]
    integrals = 0.5 * np.exp(np.asarray(lp, np.float64)) @ weights
    np.testing.assert_allclose(integrals, 1.0, atol=2e-5)


def test_continuous_bernoulli_log_normalizer_closed_form():
    lam = np.array(CB_PROBS + [0.5 - 1e-5, 0.5 + 1e-5, 0.25, 0.75], np.float32)
    got = np.asarray(jax.jit(dists.continuous_bernoulli_log_normalizer)(jnp.asarray(lam)))
    np.testing.assert_allclose(got, _log_norm_np(lam), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[4], np.log(2.0), rtol=1e-7)          # the limit at l = 1/2
    np.testing.assert_allclose(got[[9, 10]], np.log(2.0), rtol=1e-6)   # and next to it
    # C is symmetric, C(l) = C(1 - l), and log C >= log 2 with its minimum at 1/2.
    np.testing.assert_allclose(got[0], got[8], rtol=1e-5)
    np.testing.assert_allclose(got[11], got[12], rtol=1e-5)
    assert np.all(np.asarray(got) >= np.log(2.0) - 1e-6)


def test_continuous_bernoulli_log_normalizer_near_zero_and_one():
    lam = np.array([1e-6, 1e-8, 1e-10], np.float32)
    got = np.asarray(jax.jit(dists.continuous_bernoulli_log_normalizer)(jnp.asarray(lam)))
    # C(l) = 2 atanh(1 - 2l) / (1 - 2l) = log((1 - l) / l) / (1 - 2l), finite for 0 < l < 1.
    lam64 = lam.astype(np.float64)
    expected = np.log(np.log((1 - lam64) / lam64) / (1 - 2 * lam64))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # TFP's log-probability (what the likelihood uses) is accurate there.
    lp = _cb_log_prob(_f32(_logit(lam64)), jnp.zeros(3))
    np.testing.assert_allclose(lp, expected + np.log1p(-lam64), rtol=1e-5)


def test_continuous_bernoulli_log_prob_matches_closed_form():
    # log p(x | l) = log C(l) + x log l + (1 - x) log(1 - l), including l -> 1/2 (log C -> log 2).
    lam = np.array(CB_PROBS + [0.5 - 1e-4, 0.5 + 1e-4])
    x = np.array([0.0, 0.05, 0.3, 0.5, 0.77, 1.0])
    logits = _f32(_logit(lam)[:, None])
    got = _cb_log_prob(logits, _f32(x[None]))
    lam32 = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))          # the float32 lambda
    expected = _log_norm_np(lam32) + x * np.log(lam32) + (1 - x) * np.log1p(-lam32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-5)
    # At exactly l = 1/2 the density is uniform: log p(x) = 0.
    np.testing.assert_allclose(got[4], 0.0, atol=1e-6)
    # The Independent wrapper sums the trailing event axes.
    summed = jax.jit(lambda l, v: dists.continuous_bernoulli(l, 1).log_prob(v))(
        jnp.broadcast_to(logits, (len(lam), len(x))), _f32(x))
    np.testing.assert_allclose(summed, expected.sum(-1), rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- Bernoulli


@pytest.mark.parametrize("grey", [False, True], ids=["binary", "grey"])
def test_bernoulli_log_prob_closed_form_and_distrax(grey):
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=4.0, size=(3, 5, 4))
    logits[0, 0] = [-30.0, 30.0, 0.0, 1e-3]
    x = rng.uniform(size=logits.shape) if grey else (rng.uniform(size=logits.shape) < 0.5) * 1.0
    # x log p + (1 - x) log(1 - p) with log p = -log(1 + e^-l), log(1 - p) = -log(1 + e^l).
    expected = x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits)

    @jax.jit
    def run(lj, xj):
        d = dists.bernoulli(lj, 2)
        return (dists.Bernoulli(logits=lj).log_prob(xj),
                distrax.Bernoulli(logits=lj).log_prob(xj), d.log_prob(xj))

    elementwise, reference, summed = run(_f32(logits), _f32(x))
    np.testing.assert_allclose(elementwise, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(elementwise, reference, rtol=1e-5, atol=1e-5)
    d = dists.bernoulli(_f32(logits), 2)
    assert d.batch_shape == (3,) and d.event_shape == (5, 4)
    np.testing.assert_allclose(summed, expected.sum((1, 2)), rtol=1e-5, atol=1e-4)


def test_bernoulli_log_prob_gradient_is_x_minus_sigmoid():
    rng = np.random.default_rng(4)
    logits = _f32(rng.normal(scale=3.0, size=(6, 7)))
    grad = jax.jit(jax.grad(lambda l, x: jnp.sum(dists.bernoulli(l, 1).log_prob(x))))
    for x in (_f32(rng.uniform(size=(6, 7)) < 0.5), _f32(rng.uniform(size=(6, 7)))):
        np.testing.assert_allclose(grad(logits, x), x - jax.nn.sigmoid(logits),
                                   rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- positive_scale


@pytest.mark.parametrize("kind", ["softplus", "exp"])
def test_positive_scale_is_positive_and_finite_for_extreme_inputs(kind):
    raw = jnp.array([-1e4, -1e3, -100.0, -30.0, 0.0, 30.0, 100.0, 1e3, 1e4], jnp.float32)
    s, g = jax.jit(jax.value_and_grad(lambda r: positive_scale(r, kind, 1e-5)))(raw[0])
    assert np.isfinite(s) and s > 0 and np.isfinite(g)
    s = jax.jit(lambda r: positive_scale(r, kind, 1e-5))(raw)
    g = jax.jit(jax.grad(lambda r: jnp.sum(positive_scale(r, kind))))(raw)
    assert np.all(np.isfinite(s)) and np.all(np.asarray(s) >= 1e-5)
    assert np.all(np.diff(np.asarray(s)) >= 0)                          # monotone in raw
    assert np.all(np.isfinite(g))
    # Interior values follow the formula.
    mid = np.array([-2.0, 0.0, 3.0])
    ref = np.log1p(np.exp(mid)) if kind == "softplus" else np.exp(0.5 * mid)
    np.testing.assert_allclose(positive_scale(_f32(mid), kind, 1e-3), ref + 1e-3, rtol=1e-6)


def test_positive_scale_unknown_kind_raises():
    with pytest.raises(ValueError, match="softplus"):
        positive_scale(jnp.zeros(3), "relu")


# --------------------------------------------------------------------------- batch shapes


def test_prior_log_prob_and_sample_shapes():
    z = _f32(np.random.default_rng(5).normal(size=(4, 3, 2)))            # [S, B, D]
    std_prior, mix = StandardNormalPrior(2), MixturePrior(2, num_components=3)
    shapes = {}

    @jax.jit
    def run(key, z):
        params = mix.init(key)
        std, pm = std_prior.apply({}), mix.apply(params)
        shapes.update(std=(std.batch_shape, std.event_shape), mix=(pm.batch_shape, pm.event_shape))
        return (params, std.log_prob(z), pm.log_prob(z), std.sample(seed=key, sample_shape=(4, 3)),
                pm.sample(seed=key, sample_shape=(4, 3)))

    params, lp, lpm, zs, zm = run(_key(0), z)
    assert shapes == {"std": ((), (2,)), "mix": ((), (2,))}
    assert params["params"]["locs"].shape == (3, 2)
    assert lp.shape == (4, 3) and lpm.shape == (4, 3)
    assert zs.shape == (4, 3, 2) and zm.shape == (4, 3, 2)
    np.testing.assert_allclose(lp, -0.5 * np.sum(np.asarray(z) ** 2, -1) - np.log(2 * np.pi),
                               rtol=1e-5)
    # Mixture density: log sum_c w_c N(z | mu_c, diag s_c^2), weights uniform at init.
    locs = np.asarray(params["params"]["locs"], np.float64)
    scales = np.log1p(np.exp(np.asarray(params["params"]["raw_scales"], np.float64))) + 1e-4
    zz = np.asarray(z, np.float64)[..., None, :]
    comp = np.sum(-0.5 * ((zz - locs) / scales) ** 2 - np.log(scales) - 0.5 * np.log(2 * np.pi),
                  -1)
    np.testing.assert_allclose(lpm, np.log(np.mean(np.exp(comp), -1)), rtol=1e-5, atol=1e-5)


_HEAD_CASES = [
    ("bernoulli", lambda ev, proj: BernoulliHead(ev, project=proj), 1),
    ("cbernoulli", lambda ev, proj: ContinuousBernoulliHead(ev, project=proj), 1),
    ("gauss_fixed", lambda ev, proj: GaussianHead(ev, project=proj, scale="fixed",
                                                  fixed_scale=0.3), 1),
    ("gauss_learned", lambda ev, proj: GaussianHead(ev, project=proj, scale="learned",
                                                    fixed_scale=0.3), 1),
    ("gauss_predicted", lambda ev, proj: GaussianHead(ev, project=proj, scale="predicted"), 2),
]


@pytest.mark.parametrize("project", [True, False], ids=["project", "maps"])
@pytest.mark.parametrize("name,make,k", _HEAD_CASES, ids=[c[0] for c in _HEAD_CASES])
def test_likelihood_head_structured_batch(name, make, k, project):
    s, b = 3, 2
    rng = np.random.default_rng(6)
    events = [(4, 5, 2)] + ([(6,)] if name in ("bernoulli", "gauss_predicted") else [])
    heads = [make(ev, project) for ev in events]
    feats = [(7,) if project else ev[:-1] + (ev[-1] * k,) for ev in events]
    hs = [_f32(rng.normal(size=(s, b) + f)) for f in feats]             # [S, B, F]
    xs = [_f32(rng.uniform(size=ev)) for ev in events]                   # broadcast over [S, B]
    shapes = []

    @jax.jit
    def run(key, hs, xs):
        outs = []
        for head, h, x in zip(heads, hs, xs):
            params = _init(head, key, h)
            d, d01 = head.apply(params, h), head.apply(params, h[0, 1])
            shapes.append((d.batch_shape, d.event_shape, d01.batch_shape))
            outs.append((params, d.log_prob(x), d01.log_prob(x), d.mean(), d.stddev()))
        return outs

    for ev, h, (params, lp, lp01, mean, std), shp in zip(events, hs, run(_key(1), hs, xs),
                                                         shapes):
        assert shp == ((s, b), ev, ()), (name, project, ev)
        assert lp.shape == (s, b) and np.all(np.isfinite(lp))
        assert mean.shape == (s, b) + ev and std.shape == (s, b) + ev
        # Batch elements do not mix: the [S, B] result equals the per-element result.
        np.testing.assert_allclose(lp01, lp[0, 1], rtol=1e-5, atol=1e-4)
        if name in ("gauss_fixed", "gauss_learned"):
            np.testing.assert_allclose(std, 0.3, rtol=1e-4)              # (initial) scale
        if name == "gauss_learned":
            assert params["params"]["raw_scale"].shape == ev
        if project and name != "cbernoulli":
            # One dense map to [..., *event, k] parameters: loc / logit first, then raw scale.
            out = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"]["out"])
            theta = (np.asarray(h, np.float64) @ out["kernel"] + out["bias"]).reshape(
                (s, b) + ev + (k,))
            ref_mean = 1 / (1 + np.exp(-theta[..., 0])) if name == "bernoulli" else theta[..., 0]
            np.testing.assert_allclose(mean, ref_mean, rtol=1e-4, atol=1e-5)
            if name == "gauss_predicted":
                np.testing.assert_allclose(std, np.log1p(np.exp(theta[..., 1])) + 1e-3,
                                           rtol=1e-4)
        if not project:
            # The features are the parameter maps: no parameters but a learned scale.
            assert all(p.shape == ev for p in jax.tree.leaves(params))
            if name == "gauss_predicted":
                loc = np.asarray(h).reshape((s, b) + ev + (2,))[..., 0]
                np.testing.assert_allclose(mean, loc, rtol=1e-6)


def test_likelihood_head_without_projection_rejects_wrong_features():
    head = GaussianHead((4, 5, 2), project=False, scale="predicted")
    with pytest.raises(ValueError, match="expects features"):
        _init(head, _key(0), jnp.zeros((3, 4, 5, 2)))                    # needs 2 * 2 channels


@pytest.mark.parametrize("scale", ["softplus", "exp"])
def test_diag_gaussian_head_structured_batch(scale):
    h = _f32(np.random.default_rng(7).normal(size=(3, 2, 7)))
    head = DiagGaussianHead(4, scale=scale)
    shapes = []

    @jax.jit
    def run(key, h):
        params = _init(head, key, h)
        q = head.apply(params, h)
        shapes.append((q.batch_shape, q.event_shape))
        z = q.sample(seed=key, sample_shape=(5,))
        return params, z, q.log_prob(z), q.mean(), q.stddev()

    params, z, lq, mean, std = run(_key(1), h)
    assert shapes[0] == ((3, 2), (4,))
    assert z.shape == (5, 3, 2, 4) and lq.shape == (5, 3, 2)
    p = jax.tree.map(np.asarray, params["params"])
    loc = np.asarray(h) @ p["loc"]["kernel"] + p["loc"]["bias"]
    raw = np.asarray(h) @ p["raw_scale"]["kernel"] + p["raw_scale"]["bias"]
    ref_std = (np.log1p(np.exp(raw)) if scale == "softplus" else np.exp(0.5 * raw)) + 1e-5
    np.testing.assert_allclose(mean, loc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, ref_std, rtol=1e-5)


@pytest.mark.parametrize("kind", ["bernoulli", "continuous_bernoulli", "gaussian", "other"])
def test_flat_independent_log_prob_equals_distrax_independent(kind):
    # Likelihood parameters [S, B, 4, 3, 2] against values [B, 4, 3, 2] (broadcast over S),
    # [S, B, 4, 3, 2] and a single [4, 3, 2] observation: the flattened path must give
    # exactly distrax.Independent's per-example log-probs.
    ks = jax.random.split(jax.random.key(3), 3)
    shape = (5, 2, 4, 3, 2)
    logits = 3.0 * jax.random.normal(ks[0], shape)
    x = jax.random.uniform(ks[1], shape[1:])
    if kind == "bernoulli":
        base = dists.Bernoulli(logits=logits)
    elif kind == "continuous_bernoulli":
        base = dists.tfd.ContinuousBernoulli(logits=logits)
    elif kind == "gaussian":
        base = distrax.Normal(logits, jnp.exp(0.3 * jax.random.normal(ks[2], shape[-3:])))
    else:
        base = distrax.Laplace(logits, 1.5)   # no flat path: distrax's own reduction
    flat, ref = dists.FlatIndependent(base, 3), distrax.Independent(base, 3)
    for value in (x, jnp.broadcast_to(x, shape), x[0]):
        got, want = flat.log_prob(value), ref.log_prob(value)
        assert got.shape == want.shape == jnp.broadcast_shapes(value.shape[:-3], shape[:-3])
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-4)
    assert flat.event_shape == (4, 3, 2) and flat.batch_shape == (5, 2)
    # A value with the wrong trailing shape is left to distrax, which rejects it.
    with pytest.raises((ValueError, TypeError)):
        flat.log_prob(jnp.zeros((2, 3, 4, 2)))
