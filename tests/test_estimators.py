"""Gradient estimators tested as mathematics on probabilistic PCA.

PPCA (``conftest.ppca``, built by ``jvae.testing.ppca_reference``: x = W z + mu + 0.5 eps,
Dx=5, Dz=2) with a Gaussian q has a closed-form ELBO, so its exact gradient is known
(``jvae.testing.exact_elbo_gradient``): every unbiased estimator's mean gradient
over many independent draws must match it within a few standard errors. Where no closed form
exists (the IWAE bound, mixture posteriors), two estimators of the same gradient are compared
with each other, or with a low-variance enumeration over the mixture components.

Tolerances: ``|mean - reference| <= Z * standard error + small`` per coordinate with Z = 4.5
(about 40 coordinates, so a correct estimator fails with probability ~1e-4; the keys are fixed,
so the outcome is deterministic). Each test also checks that its standard errors are small
enough for the comparison to mean something. The draws and checks are jvae.testing's
(``gradient_draws``, ``check_unbiased``, ``variance_ratio``, ``snr``, ``check_bound_ordering``),
the tools users check their own estimators with.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.objectives import (EstimatorState, centred_reward, learned_baseline, leave_one_out,
                             make_elbo_loss, make_iwae_loss, make_mixture_objective,
                             make_sfe_objective, make_vimco_objective, scaled_reward,
                             score_surrogate, self_critic)
from jvae.objectives.control_variates import RunningMean, RunningStd, vimco_leave_one_out_bound
from jvae.testing import (check_bound_ordering, check_unbiased, enumerated_mixture_gradient,
                          exact_elbo, exact_elbo_gradient, gradient_draws,
                          param_mask, snr, variance_ratio)

Z = 4.5
DRAWS = 20000


def _x(ppca, n=3):
    return jnp.asarray(ppca.sample(n, seed=11))


def _exact_neg_elbo(ppca, params, x):
    """``-mean_B ELBO`` in closed form for a linear-Gaussian decoder and Gaussian q."""
    return -jnp.mean(exact_elbo(ppca.model, params, x))


def _draws(objective, params, est, x, n=DRAWS, seed=0):
    """``[n, P]`` flattened gradient draws of the objective's loss (estimator state fixed)."""
    return gradient_draws(objective, params, x, n, jax.random.key(seed), state=est)


def _assert_unbiased(draws, reference, ref_se=0.0, max_rel_se=0.5):
    # |mean - reference| <= Z se + 1e-4 (1 + |reference|) per coordinate, and informative:
    # on the coordinates with a clearly non-zero gradient, the median se / |reference| is
    # below max_rel_se.
    assert check_unbiased(draws, reference, reference_se=ref_se, z=Z, atol=1e-4,
                          max_relative_se=max_rel_se)


@pytest.fixture(scope="module")
def setup(ppca):
    x = _x(ppca)
    params = ppca.params_poor
    exact = exact_elbo_gradient(ppca.model, params, x)
    inf = param_mask(params, "posterior", "encoder")
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

    reports = {}
    cases = {
        "centred": (_sfe(ppca, (centred_reward(0.8),)), None),
        "scaled": (_sfe(ppca, (scaled_reward(0.8),)), None),
        "self_critic": (_sfe(ppca, (self_critic(),)), None),
        "baseline": (baseline, fitted_baseline),
        "leave_one_out(S=4) vs SFE(S=4)": (_sfe(ppca, (leave_one_out(),), num_samples=4), None),
    }
    plain4 = _draws(_sfe(ppca, num_samples=4), params, EstimatorState(), x, 4000)
    for name, (obj, est) in cases.items():
        est = warmed(obj) if est is None else est
        draws = _draws(obj, params, est, x, 4000)
        # The variance reduction factor tr Cov[plain] / tr Cov[with the control variate].
        reports[name] = variance_ratio(plain4 if "S=4" in name else plain, draws, mask=inf,
                                       above=1.5)
    print("variance reduction factors of the inference gradient:",
          {name: round(r.statistic, 3) for name, r in reports.items()})
    for name, report in reports.items():
        assert report, (name, str(report))


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

def test_mixture_estimator_and_sfe_are_unbiased_on_a_mixture_posterior(mixture):
    model, params, x = mixture
    ref, ref_se = enumerated_mixture_gradient(model, params, x, jax.random.key(9), chunks=64,
                                              per_chunk=500)
    mix = _draws(make_mixture_objective(model), params, EstimatorState(), x)
    _assert_unbiased(mix, ref, ref_se)
    sfe_obj = make_sfe_objective(model, control_variates=(self_critic(),))
    sfe = _draws(sfe_obj, params, EstimatorState(*sfe_obj.init(jax.random.key(0), x)), x)
    _assert_unbiased(sfe, ref, ref_se, max_rel_se=0.8)
    ratio = variance_ratio(sfe, mix, mask=param_mask(params, "posterior"), above=1.0)
    print(f"mixture estimator: inference-gradient variance {ratio.statistic:.1f}x lower than SFE")
    assert ratio


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
    # l1 + 3 s1 < l5, l5 + 3 s5 < l50 and every bound below log p(x).
    assert check_bound_ordering(bounds, z=3.0, upper=log_px)
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
    inf = param_mask(ppca.params_poor, "posterior", "encoder")
    iwae, dreg = iwae_draws["iwae"], iwae_draws["dreg"]
    _assert_unbiased(dreg, iwae.mean(0), iwae.std(0) / np.sqrt(len(iwae)))
    # The generative gradient is the same estimator, draw for draw.
    np.testing.assert_allclose(dreg[:, ~inf], iwae[:, ~inf], rtol=1e-4, atol=1e-4)
    assert variance_ratio(dreg, iwae, mask=inf, below=1.0)


def test_stl_is_unbiased_for_k1_and_biased_for_k5(ppca, setup, iwae_draws):
    """STL drops the score term ``-sum_k w~_k grad log q(z_k)``, which has zero mean only for
    K = 1 (Tucker et al., 2018): for K > 1, STL's expectation is not the IWAE gradient."""
    x, params, exact, inf = setup
    stl1 = _draws(make_iwae_loss(ppca.model, 1, "stl"), params, EstimatorState(), x)
    _assert_unbiased(stl1, exact)
    iwae, stl = iwae_draws["iwae"], iwae_draws["stl"]
    # se = sqrt(var_stl / n + var_iwae / n); the largest z-score on the inference network:
    bias = check_unbiased(stl, iwae.mean(0), reference_se=iwae.std(0) / np.sqrt(len(iwae)),
                          z=Z, mask=inf)
    assert bias.statistic > 8, str(bias)      # a clear, documented bias
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
    inf = param_mask(params, "posterior", "encoder")

    def median_snr(est, k):
        d = _draws(make_iwae_loss(ppca.model, k, est), params, EstimatorState(), x, 4000)
        return snr(d, mask=inf).statistic            # median |mean| / std over coordinates

    iwae = {k: median_snr("iwae", k) for k in (1, 10, 100)}
    dreg = {k: median_snr("dreg", k) for k in (1, 10, 100)}
    print("median inference-gradient SNR, IWAE:", iwae, "DReG:", dreg)
    assert iwae[100] < 0.6 * iwae[10] < 0.6 * iwae[1]      # about 1/sqrt(K)
    assert dreg[100] > dreg[1] and dreg[10] > 0.8 * dreg[1]
