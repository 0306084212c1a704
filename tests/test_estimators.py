"""Gradient estimators tested as mathematics on probabilistic PCA.

PPCA (``conftest.ppca``: x = W z + mu + 0.5 eps, Dx=5, Dz=2) with a Gaussian q has a
closed-form ELBO, so its exact gradient is known: every unbiased estimator's mean gradient
over many independent draws must match it within a few standard errors. Where no closed form
exists (the IWAE bound, mixture posteriors), two estimators of the same gradient are compared
with each other, or with a low-variance enumeration over the mixture components.

Tolerances: ``|mean - reference| <= Z * standard error + small`` per coordinate with Z = 4.5
(about 40 coordinates, so a correct estimator fails with probability ~1e-4; the keys are fixed,
so the outcome is deterministic). Each test also checks that its standard errors are small
enough for the comparison to mean something.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jvae.heads import GaussianHead, MixtureGaussianHead
from jvae.model import VAE, init_params
from jvae.nets import MLP
from jvae.objectives import (EstimatorState, as_objective, centred_reward, chain,
                             learned_baseline, leave_one_out, make_elbo_loss, make_iwae_loss,
                             make_mixture_objective, make_sfe_objective, make_vimco_objective,
                             scaled_reward, score_surrogate, self_critic)
from jvae.objectives.control_variates import RunningMean, RunningStd, vimco_leave_one_out_bound
from jvae.priors import StandardNormalPrior

Z = 4.5
DRAWS = 20000


def _x(ppca, n=3):
    return jnp.asarray(ppca.sample(n, seed=11))


def _exact_neg_elbo(ppca, params, x):
    """``-mean_B ELBO`` in closed form for a linear-Gaussian decoder and Gaussian q."""
    q = ppca.model.apply(params, x, method=VAE.encode)
    m, s = q.loc, q.scale_diag                                                # [B, Dz]
    out = params["params"]["likelihood"]["out"]
    W, mu = out["kernel"].T, out["bias"]                                      # [Dx, Dz]
    sigma = ppca.sigma
    resid = x - m @ W.T - mu
    exp_ll = (-0.5 / sigma**2 * (jnp.sum(resid**2, -1) + jnp.sum(s**2 * jnp.sum(W**2, 0), -1))
              - ppca.dx * jnp.log(sigma) - 0.5 * ppca.dx * jnp.log(2 * jnp.pi))
    kl = 0.5 * jnp.sum(s**2 + m**2 - 1.0 - 2.0 * jnp.log(s), -1)
    return -jnp.mean(exp_ll - kl)


def _draws(objective, params, est, x, n=DRAWS, seed=0):
    """``[n, P]`` flattened gradient draws of the objective's loss (estimator state fixed)."""
    obj = as_objective(objective)

    def one(key):
        return ravel_pytree(jax.grad(lambda p: obj.loss(p, est, key, x)[0])(params))[0]

    keys = jax.random.split(jax.random.key(seed), n)
    return jax.jit(jax.vmap(one))(keys)


def _mask(params, *names):
    """Boolean vector over the flattened params: True where the path contains a name."""
    flags = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.full(leaf.shape, any(
            getattr(p, "key", None) in names for p in path)), params)
    return np.asarray(ravel_pytree(flags)[0]).astype(bool)


def _assert_unbiased(draws, reference, ref_se=0.0, max_rel_se=0.5):
    draws = np.asarray(draws, np.float64)
    mean = draws.mean(0)
    se = np.sqrt(draws.var(0) / len(draws) + np.asarray(ref_se) ** 2)
    reference = np.asarray(reference, np.float64)
    bound = Z * se + 1e-4 * (1 + np.abs(reference))
    bad = np.abs(mean - reference) > bound
    assert not bad.any(), (f"mean {mean[bad]} vs reference {reference[bad]}, "
                           f"se {se[bad]} at {np.flatnonzero(bad)}")
    # The comparison must be informative: on the coordinates with a clearly non-zero
    # gradient, the standard error is a fraction of the value.
    big = np.abs(reference) > 0.05 * np.abs(reference).max()
    assert np.median(se[big] / np.abs(reference[big])) < max_rel_se


def _total_var(draws, mask):
    return float(np.asarray(draws, np.float64)[:, mask].var(0).sum())


@pytest.fixture(scope="module")
def setup(ppca):
    x = _x(ppca)
    params = ppca.params_poor
    exact = ravel_pytree(jax.grad(lambda p: _exact_neg_elbo(ppca, p, x))(params))[0]
    inf = _mask(params, "posterior", "encoder")
    return x, params, np.asarray(exact), inf


# ------------------------------------------------------------------------- closed-form ELBO

def test_closed_form_elbo_matches_the_library_elbo(ppca, setup):
    x, params, _, _ = setup
    analytic = make_elbo_loss(ppca.model, num_samples=20000, kl="analytic")
    value, _ = analytic(params, jax.random.key(0), x)
    np.testing.assert_allclose(value, _exact_neg_elbo(ppca, params, x), rtol=2e-3)


def test_reparameterised_gradient_is_unbiased(ppca, setup):
    x, params, exact, _ = setup
    for kl in ("analytic", "mc"):
        draws = _draws(make_elbo_loss(ppca.model, kl=kl), params, EstimatorState(), x, 4000)
        _assert_unbiased(draws, exact)


# ------------------------------------------------------------------------- score function

def _sfe(ppca, cvs=(), **kw):
    return make_sfe_objective(ppca.model, control_variates=cvs, **kw)


def _state_for(objective, ppca, x, seed=3):
    """The estimator state of ``objective`` from its init, with running statistics set to
    informative non-default values (mean -3, std 1.5) so that the test exercises them."""
    est = objective.init(jax.random.key(seed), x)

    def fix(s):
        if isinstance(s, RunningMean):
            return RunningMean(jnp.asarray(-3.0), s.count)
        if isinstance(s, RunningStd):
            return RunningStd(jnp.asarray(1.5), s.count)
        return s

    state = jax.tree.map(fix, est.state, is_leaf=lambda s: isinstance(s, (RunningMean,
                                                                         RunningStd)))
    return EstimatorState(est.params, state)


@pytest.mark.parametrize("name", ["none", "centred", "self_critic", "baseline", "leave_one_out",
                                  "analytic_kl"])
def test_score_function_estimator_is_unbiased(ppca, setup, name):
    x, params, exact, _ = setup
    cvs = {"none": (), "centred": (centred_reward(),), "self_critic": (self_critic(),),
           "baseline": (learned_baseline((8,)),), "leave_one_out": (leave_one_out(),),
           "analytic_kl": ()}[name]
    kw = {"num_samples": 4} if name == "leave_one_out" else {}
    if name == "analytic_kl":
        kw["kl"] = "analytic"
    obj = _sfe(ppca, cvs, **kw)
    est = _state_for(obj, ppca, x)
    draws = _draws(obj, params, est, x)
    _assert_unbiased(draws, exact)


def test_scaled_reward_and_the_full_chain_rescale_the_inference_gradient(ppca, setup):
    """Dividing the signal by the running std s (here 1.5) divides the expected inference
    gradient by s and leaves the generative gradient unchanged: still the right direction."""
    x, params, exact, inf = setup
    expected = np.where(inf, exact / 1.5, exact)
    for cvs in ((scaled_reward(),),
                (self_critic(), centred_reward(), scaled_reward(), learned_baseline((8,)))):
        obj = _sfe(ppca, cvs)
        draws = _draws(obj, params, _state_for(obj, ppca, x), x)
        _assert_unbiased(draws, expected)


def test_scaled_reward_refuses_an_analytic_kl(ppca, setup):
    x, params, _, _ = setup
    with pytest.raises(ValueError, match="kl='mc'"):
        _sfe(ppca, (scaled_reward(),), kl="analytic")
    obj = _sfe(ppca, (centred_reward(), scaled_reward()), kl="auto")   # resolves to analytic
    with pytest.raises(ValueError, match="kl='mc'"):
        obj.loss(params, obj.init(jax.random.key(0), x), jax.random.key(0), x)


def test_score_surrogate_value_is_zero_and_gradient_is_signal_times_score():
    theta = jnp.asarray([0.3, -0.2])

    def log_q(t):
        return -0.5 * jnp.sum((jnp.asarray([1.0, 2.0]) - t) ** 2)

    signal = jnp.asarray(7.0)
    value, grad = jax.value_and_grad(lambda t: score_surrogate(log_q(t), signal * t[0]))(theta)
    assert value == 0.0
    np.testing.assert_allclose(grad, signal * theta[0] * jax.grad(log_q)(theta), rtol=1e-6)


def test_control_variates_lower_the_score_function_variance(ppca, setup):
    """Every control variate lowers the variance of the inference-network gradient of plain
    SFE on this model; the factors are printed (run pytest -s to see them)."""
    _, params, _, inf = setup
    x = _x(ppca, 16)            # 16 examples: the signal's spread over the batch exceeds 1
    plain = _draws(_sfe(ppca), params, EstimatorState(), x, 4000)
    base_var = _total_var(plain, inf)

    # Warm up the running statistics and fit the learned baseline, as training would.
    baseline = _sfe(ppca, (learned_baseline((16,)),))
    est = baseline.init(jax.random.key(1), x)
    import optax
    opt = optax.adam(3e-2)
    opt_state = opt.init(est.params)

    @jax.jit
    def fit(est, opt_state, key):
        g = jax.grad(lambda bp: baseline.loss(params, EstimatorState(bp, est.state), key, x)[0])(
            est.params)
        updates, opt_state = opt.update(g, opt_state)
        return EstimatorState(optax.apply_updates(est.params, updates), est.state), opt_state

    _, (aux0, _) = baseline.loss(params, est, jax.random.key(0), x)
    for i in range(300):
        est, opt_state = fit(est, opt_state, jax.random.key(100 + i))
    _, (aux1, _) = baseline.loss(params, est, jax.random.key(0), x)
    assert aux1["cv/baseline_loss"] < 0.2 * aux0["cv/baseline_loss"]
    fitted_baseline = est

    def warmed(obj):
        e = obj.init(jax.random.key(2), x)
        step = jax.jit(lambda e, k: obj.loss(params, e, k, x)[1][1])
        for i in range(50):
            e = step(e, jax.random.key(500 + i))
        return e

    factors = {}
    cases = {
        "centred": (_sfe(ppca, (centred_reward(0.8),)), None),
        "scaled": (_sfe(ppca, (scaled_reward(0.8),)), None),
        "self_critic": (_sfe(ppca, (self_critic(),)), None),
        "baseline": (baseline, fitted_baseline),
        "leave_one_out(S=4) vs SFE(S=4)": (_sfe(ppca, (leave_one_out(),), num_samples=4), None),
    }
    plain4 = _total_var(_draws(_sfe(ppca, num_samples=4), params, EstimatorState(), x, 4000),
                        inf)
    for name, (obj, est) in cases.items():
        est = warmed(obj) if est is None else est
        var = _total_var(_draws(obj, params, est, x, 4000), inf)
        factors[name] = (plain4 if "S=4" in name else base_var) / var
    print("variance reduction factors of the inference gradient:", factors)
    for name, factor in factors.items():
        assert factor > 1.5, (name, factor)


def test_running_statistics_follow_their_closed_forms_under_jit():
    decay = 0.7
    signals = jax.random.normal(jax.random.key(0), (9, 4, 6)) * 3.0 + 2.0
    ctx = None

    def run(cv):
        params, state = cv.init(jax.random.key(0), jnp.zeros((1, 2)))

        def body(state, r):
            out, state, _, _ = cv.apply(params, state, r, ctx)
            return state, out

        return jax.jit(lambda s: jax.lax.scan(body, s, signals))(state)

    state, outs = run(centred_reward(decay))
    means = np.asarray(signals.mean(axis=(1, 2)), np.float64)
    n = len(means)
    closed = (1 - decay) * sum(decay ** (n - 1 - i) * means[i] for i in range(n))
    np.testing.assert_allclose(state.mean, closed, rtol=1e-5)
    assert int(state.count) == n
    prev = (1 - decay) * sum(decay ** (n - 2 - i) * means[i] for i in range(n - 1))
    np.testing.assert_allclose(outs[-1], signals[-1] - prev, rtol=1e-5, atol=1e-5)

    state, outs = run(scaled_reward(decay))
    s = 1.0
    for r in np.asarray(signals, np.float64):
        s = max(decay * s + (1 - decay) * r.std(), 1.0)
    np.testing.assert_allclose(state.std, s, rtol=1e-5)
    small, _ = jax.jit(lambda st: scaled_reward(decay).apply((), st, jnp.full((2, 3), 0.01),
                                                            ctx)[1])(RunningStd(
                                                                jnp.asarray(1.0),
                                                                jnp.asarray(0))), None
    assert float(small.std) == 1.0                      # floored at 1


def test_vimco_leave_one_out_bound_matches_a_direct_computation():
    log_w = np.random.default_rng(0).normal(size=(5, 3)) * 2
    got = np.asarray(vimco_leave_one_out_bound(jnp.asarray(log_w, jnp.float32)))
    for k in range(5):
        w = log_w.copy()
        w[k] = np.delete(log_w, k, axis=0).mean(0)
        want = np.log(np.mean(np.exp(w), axis=0))
        np.testing.assert_allclose(got[k], want, rtol=1e-5)


# ------------------------------------------------------------------------- mixtures

@pytest.fixture(scope="module")
def mixture(ppca):
    model = VAE(data_shape=(ppca.dx,), prior=StandardNormalPrior(ppca.dz),
                encoder=MLP(hidden=()), posterior=MixtureGaussianHead(ppca.dz, 3,
                                                                      init_spread=0.7),
                decoder=MLP(hidden=()),
                likelihood=GaussianHead((ppca.dx,), scale="fixed", fixed_scale=ppca.sigma))
    x = _x(ppca)
    params = init_params(model, jax.random.key(4), x)
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: (jnp.asarray(ppca.params["params"]["likelihood"]["out"][path[-1].key])
                         if getattr(path[1], "key", "") == "likelihood" else 0.3 * v), params)
    return model, params, x


def _enumerated_mixture_gradient(model, params, x, chunks=64, per_chunk=500):
    """``grad sum_c w_c E_eps[f(mu_c + sigma_c eps)]`` with common eps, by chunks: a
    low-variance unbiased reference (mean, standard error)."""
    from jvae.distributions import mixture_parts

    def neg_elbo(p, eps):                                          # eps [M, B, 1, D]
        q = model.apply(p, x, method=VAE.encode)
        logits, loc, scale = mixture_parts(q)
        z = loc + scale * eps                                      # [M, B, C, D]
        zt = jnp.moveaxis(z, -2, 0)                                # [C, M, B, D]
        f = (model.apply(p, x, zt, method=VAE.log_joint) - q.log_prob(zt))   # [C, M, B]
        w = jax.nn.softmax(logits)                                 # [B, C]
        return -jnp.mean(jnp.sum(w.T * f.mean(1), 0))

    eps = jax.random.normal(jax.random.key(9), (chunks, per_chunk, x.shape[0], 1, 2))
    grads = jax.jit(jax.vmap(lambda e: ravel_pytree(jax.grad(neg_elbo)(params, e))[0]))(eps)
    grads = np.asarray(grads, np.float64)
    return grads.mean(0), grads.std(0) / np.sqrt(chunks)


def test_mixture_estimator_and_sfe_are_unbiased_on_a_mixture_posterior(mixture):
    model, params, x = mixture
    ref, ref_se = _enumerated_mixture_gradient(model, params, x)
    mix = _draws(make_mixture_objective(model), params, EstimatorState(), x)
    _assert_unbiased(mix, ref, ref_se)
    sfe_obj = make_sfe_objective(model, control_variates=(self_critic(),))
    sfe = _draws(sfe_obj, params, EstimatorState(*sfe_obj.init(jax.random.key(0), x)), x)
    _assert_unbiased(sfe, ref, ref_se, max_rel_se=0.8)
    inf = _mask(params, "posterior")
    ratio = _total_var(sfe, inf) / _total_var(mix, inf)
    print(f"mixture estimator: inference-gradient variance {ratio:.1f}x lower than SFE")
    assert ratio > 1.0


def test_reparameterised_objectives_refuse_a_mixture_posterior(mixture):
    model, params, x = mixture
    with pytest.raises(ValueError, match="mixture"):
        make_elbo_loss(model)(params, jax.random.key(0), x)
    with pytest.raises(ValueError, match="mixture"):
        make_iwae_loss(model, 5)(params, jax.random.key(0), x)


# ------------------------------------------------------------------------- IWAE family

def _bound(ppca, params, x, k, reps=3000):
    loss = make_iwae_loss(ppca.model, k)
    keys = jax.random.split(jax.random.key(k), reps)
    vals = jax.jit(jax.vmap(lambda key: loss(params, key, x)[1]["iwae"]))(keys)
    return float(np.mean(vals)), float(np.std(vals) / np.sqrt(reps))


def test_iwae_bounds_are_ordered_and_approach_log_px(ppca):
    x = _x(ppca, 4)
    log_px = float(np.mean(ppca.log_px(np.asarray(x))))
    bounds = {k: _bound(ppca, ppca.params_poor, x, k) for k in (1, 5, 50)}
    (l1, s1), (l5, s5), (l50, s50) = bounds[1], bounds[5], bounds[50]
    assert l1 + 3 * s1 < l5 and l5 + 3 * s5 < l50 and l50 < log_px
    assert log_px - l50 < 0.5 * (log_px - l5) < 0.5 * (log_px - l1)
    # K=1 is the ELBO, whose closed form is known.
    np.testing.assert_allclose(l1, -float(_exact_neg_elbo(ppca, ppca.params_poor, x)),
                               atol=4 * s1)
    # With the exact posterior every weight equals p(x): L_K = log p(x) for every K.
    for k in (1, 5):
        value = make_iwae_loss(ppca.model, k)(ppca.params, jax.random.key(0), x)[1]["iwae"]
        np.testing.assert_allclose(value, log_px, rtol=1e-4)


@pytest.fixture(scope="module")
def iwae_draws(ppca):
    x = _x(ppca)
    out = {}
    for est in ("iwae", "dreg", "stl"):
        out[est] = np.asarray(_draws(make_iwae_loss(ppca.model, 5, est), ppca.params_poor,
                                     EstimatorState(), x), np.float64)
    return out


def test_dreg_is_unbiased_for_the_iwae_gradient(ppca, iwae_draws):
    inf = _mask(ppca.params_poor, "posterior", "encoder")
    iwae, dreg = iwae_draws["iwae"], iwae_draws["dreg"]
    _assert_unbiased(dreg, iwae.mean(0), iwae.std(0) / np.sqrt(len(iwae)))
    # The generative gradient is the same estimator, draw for draw.
    np.testing.assert_allclose(dreg[:, ~inf], iwae[:, ~inf], rtol=1e-4, atol=1e-4)
    assert _total_var(dreg, inf) < _total_var(iwae, inf)


def test_stl_is_unbiased_for_k1_and_biased_for_k5(ppca, setup, iwae_draws):
    """STL drops the score term ``-sum_k w~_k grad log q(z_k)``, which has zero mean only for
    K = 1 (Tucker et al., 2018): for K > 1, STL's expectation is not the IWAE gradient."""
    x, params, exact, inf = setup
    stl1 = _draws(make_iwae_loss(ppca.model, 1, "stl"), params, EstimatorState(), x)
    _assert_unbiased(stl1, exact)
    iwae, stl = iwae_draws["iwae"], iwae_draws["stl"]
    se = np.sqrt(iwae.var(0) / len(iwae) + stl.var(0) / len(stl))
    z = np.abs(stl.mean(0) - iwae.mean(0)) / np.maximum(se, 1e-12)
    assert z[inf].max() > 8, z[inf]            # a clear, documented bias
    np.testing.assert_allclose(stl[:, ~inf], iwae[:, ~inf], rtol=1e-4, atol=1e-4)


def test_vimco_is_unbiased_for_the_iwae_gradient(ppca, iwae_draws):
    x = _x(ppca)
    iwae = iwae_draws["iwae"]
    obj = make_vimco_objective(ppca.model, 5)
    vimco = _draws(obj, ppca.params_poor, obj.init(jax.random.key(0), x), x, 40000)
    _assert_unbiased(vimco, iwae.mean(0), iwae.std(0) / np.sqrt(len(iwae)), max_rel_se=0.8)


def test_inference_snr_falls_with_k_for_iwae_but_not_for_dreg(ppca):
    """Rainforth et al. (2018): the encoder gradient's signal-to-noise ratio of IWAE decays
    like 1/sqrt(K); DReG's does not (it grows)."""
    x = _x(ppca)
    params = ppca.params_near          # q near the exact posterior: the regime of the theory
    inf = _mask(params, "posterior", "encoder")

    def snr(est, k):
        d = np.asarray(_draws(make_iwae_loss(ppca.model, k, est), params,
                              EstimatorState(), x, 4000), np.float64)[:, inf]
        return float(np.median(np.abs(d.mean(0)) / d.std(0)))

    iwae = {k: snr("iwae", k) for k in (1, 10, 100)}
    dreg = {k: snr("dreg", k) for k in (1, 10, 100)}
    print("median inference-gradient SNR, IWAE:", iwae, "DReG:", dreg)
    assert iwae[100] < 0.6 * iwae[10] < 0.6 * iwae[1]      # about 1/sqrt(K)
    assert dreg[100] > dreg[1] and dreg[10] > 0.8 * dreg[1]
