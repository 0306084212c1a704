"""jvae.testing itself: the exact ELBO gradient against autodiff and finite differences, the
checks against numpy and against estimators known to be biased or unbiased, chunked draws,
and the guide's code run as written."""

from __future__ import annotations

import contextlib
import io
import math
import pathlib
import re

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jvae
from jvae import testing

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs/guides/testing-estimators.md"


@pytest.fixture(scope="module")
def correlated():
    """A PPCA reference with correlated columns of W (D=4, k=3): non-diagonal posterior."""
    ref = testing.ppca_reference(4, 3, sigma=0.7, orthogonal=False, seed=3)
    return ref, ref.sample(jax.random.key(1), 3)


def _neg_elbo(model, params, x):
    return -jnp.mean(testing.exact_elbo(model, params, x))


def test_exact_gradient_matches_autodiff_and_finite_differences(correlated):
    ref, x = correlated
    params = ref.params(0.7, 1.3)

    def exact_and_autodiff(model, p):
        auto = ravel_pytree(jax.grad(lambda q: _neg_elbo(model, q, x))(p))[0]
        return testing.exact_elbo_gradient(model, p, x), auto

    exact, auto = jax.jit(exact_and_autodiff, static_argnums=0)(ref.model, params)
    exact, auto = np.asarray(exact), np.asarray(auto)
    np.testing.assert_allclose(exact, auto, rtol=1e-4, atol=1e-5 * np.abs(auto).max())
    # Central differences of the closed form in float64 (no autodiff anywhere).
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params))
        x64 = jnp.asarray(x, jnp.float64)
        h = 1e-5
        steps = h * jnp.eye(flat.size, dtype=jnp.float64)
        fd = jax.jit(lambda v: jax.vmap(lambda d: (_neg_elbo(ref.model, unravel(v + d), x64)
                                                   - _neg_elbo(ref.model, unravel(v - d), x64))
                                        / (2 * h))(steps))(flat)
    np.testing.assert_allclose(exact, np.asarray(fd), rtol=1e-4, atol=1e-5 * np.abs(fd).max())
    # The learned noise scale and an x-dependent posterior scale (a random linear VAE).
    model = jvae.make_linear_vae(4, 2, noise="learned", noise_scale=0.8)
    exact, auto = jax.jit(lambda k: exact_and_autodiff(model, jvae.init_params(model, k, x)))(
        jax.random.key(2))
    np.testing.assert_allclose(exact, auto, rtol=1e-4, atol=1e-5 * float(jnp.abs(auto).max()))


def test_exact_elbo_is_log_px_minus_the_kl_to_the_exact_posterior(ppca, correlated):
    ref, x = correlated
    xo = jnp.asarray(ppca.sample(4, seed=5))

    @jax.jit
    def closed_forms(params, best):
        q = ref.model.apply(params, x, method=jvae.VAE.encode)
        post = ref.posterior(x)
        kl = distrax.MultivariateNormalFullCovariance(q.mean(), q.covariance()).kl_divergence(
            post)
        return {"elbo": testing.exact_elbo(ref.model, params, x),
                "log_px_minus_kl": ref.log_px(x) - kl,
                "elbo_at_posterior": testing.gaussian_elbo(ref.ppca, x, post.mean(),
                                                           post.covariance()),
                "log_px": ref.log_px(x),
                "gap_best": ref.log_px(x) - testing.exact_elbo(ref.model, best, x),
                "grad_best": testing.exact_elbo_gradient(ref.model, best, x),
                "elbo_orthogonal": testing.exact_elbo(ppca.model, ppca.params, xo),
                "log_px_orthogonal": ppca.reference.log_px(xo)}

    c = closed_forms(ref.params(0.5, 0.7), ref.params())
    np.testing.assert_allclose(c["elbo"], c["log_px_minus_kl"], rtol=1e-5, atol=1e-4)
    # A full-covariance q at the exact posterior: ELBO = log p(x).
    np.testing.assert_allclose(c["elbo_at_posterior"], c["log_px"], rtol=1e-5, atol=1e-4)
    # The best diagonal q: the inference network's exact gradient is zero, the bound is loose.
    g = np.asarray(c["grad_best"])
    inf = testing.param_mask(ref.params(), "posterior")
    assert np.abs(g[inf]).max() < 1e-4 < np.abs(g[~inf]).max()
    assert np.all(np.asarray(c["gap_best"]) > 1e-2)
    # Orthogonal columns: the exact posterior is diagonal and the ELBO is tight.
    np.testing.assert_allclose(c["elbo_orthogonal"], c["log_px_orthogonal"], rtol=1e-5)


def test_check_unbiased_on_a_biased_and_an_unbiased_estimator(ppca):
    x = jnp.asarray(ppca.sample(3, seed=11))
    params = ppca.params_poor
    exact = jax.jit(lambda p: testing.exact_elbo_gradient(ppca.model, p, x))(params)
    loss = jvae.make_elbo_loss(ppca.model)
    # The same program for both: the biased one is the gradient of 1.1 * loss.
    draws = testing.gradient_draws(loss, params, x, 4000, jax.random.key(0))
    good = testing.check_unbiased(draws, exact)
    assert good and good.passed and good.num_failed == 0
    assert good.assert_() is good
    biased = testing.check_unbiased(1.1 * draws, exact)
    assert not biased and biased.num_failed > 0 and biased.statistic > 4.5
    with pytest.raises(AssertionError, match=r"unbiased FAIL: max \|bias\|/se = "):
        biased.assert_()
    assert str(biased).startswith("unbiased FAIL") and "coordinate" in repr(biased)
    # The worst coordinate's numbers are those of numpy.
    d = np.asarray(1.1 * draws, np.float64)[:, biased.worst]
    assert biased.mean == pytest.approx(d.mean(), rel=1e-9)
    assert biased.standard_error == pytest.approx(d.std() / math.sqrt(len(d)), rel=1e-9)
    # Uninformative: too few draws for the standard errors to be a fraction of the values.
    assert not testing.check_unbiased(draws[:4], exact, max_relative_se=0.01)


def test_check_unbiased_false_alarm_rate_and_numbers_on_synthetic_draws():
    rng = np.random.default_rng(0)
    ref = np.linspace(1.0, 3.0, 20)
    fails = sum(not testing.check_unbiased(ref + rng.normal(size=(500, 20)), ref, z=2.0)
                for _ in range(200))
    # P(any of 20 |z| > 2) = 1 - 0.9545^20 = 0.607: within a few binomial sds.
    assert abs(fails / 200 - 0.607) < 4 * math.sqrt(0.607 * 0.393 / 200)
    draws = ref + rng.normal(size=(400, 20)) * 0.1
    draws[:, 7] += 0.2                                      # a bias of ~40 se at one coordinate
    r = testing.check_unbiased(draws, ref)
    assert not r and r.worst == 7 and r.num_failed == 1
    se = draws[:, 7].std() / 20
    assert r.statistic == pytest.approx(abs(draws[:, 7].mean() - ref[7]) / se, rel=1e-9)
    mask = np.ones(20, bool)
    mask[7] = False
    assert testing.check_unbiased(draws, ref, mask=mask)
    with pytest.raises(ValueError, match=r"reference must be \[P=20\]"):
        testing.check_unbiased(draws, ref[:3])
    with pytest.raises(ValueError, match="non-finite"):
        testing.check_unbiased(np.full((4, 20), np.nan), ref)


def test_variance_ratio_and_snr_against_numpy():
    rng = np.random.default_rng(1)
    mean = np.array([1.0, -2.0, 0.5, 0.0])
    a = mean + rng.normal(size=(3000, 4)) * np.array([1.0, 2.0, 0.5, 1.0])
    b = mean + rng.normal(size=(2000, 4)) * 3.0
    r = testing.variance_ratio(a, b, below=1.0)
    assert r and r.statistic == pytest.approx(a.var(0).sum() / b.var(0).sum(), rel=1e-10)
    assert r.worst == 1                                    # the largest per-coordinate ratio
    assert not testing.variance_ratio(a, b, above=1.0)
    mask = np.array([True, False, True, False])
    m = testing.variance_ratio(a, b, mask=mask)
    assert m.statistic == pytest.approx(a[:, mask].var(0).sum() / b[:, mask].var(0).sum())
    # The standard error is the spread of the ratio over repeated experiments.
    ratios = [testing.variance_ratio(rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) * 2)
              for _ in range(300)]
    spread = np.std([x.statistic for x in ratios])
    assert np.median([x.standard_error for x in ratios]) == pytest.approx(spread, rel=0.2)
    s = testing.snr(a)
    want = np.abs(a.mean(0)) / a.std(0)
    np.testing.assert_allclose(s.values, want, rtol=1e-12)
    assert s.statistic == pytest.approx(np.median(want)) and s.worst == 3
    assert testing.snr(a, mask=mask).statistic == pytest.approx(np.median(want[mask]))
    assert testing.snr(a, above=0.5) and not testing.snr(a, below=0.5)
    with pytest.raises(ValueError, match="mask must be"):
        testing.snr(a, mask=[True])


def test_check_bound_ordering():
    ok = testing.check_bound_ordering({1: (-5.0, 0.1), 5: (-4.5, 0.1), 50: (-4.1, 0.05)},
                                      upper=-3.5)
    assert ok and ok.worst == "5" and ok.statistic == pytest.approx(4.0)
    assert "1: -5.0000 (se 0.1) < 5: -4.5000" in str(ok)
    assert not testing.check_bound_ordering([(-5.0, 0.1), (-4.8, 0.1)])      # 2 se < 3 se
    assert not testing.check_bound_ordering([(-5.0, 0.1), (-3.0, 0.1)], upper=-3.5)
    draws = np.random.default_rng(2).normal(size=(2, 1000)) * 0.1 + np.array([[-2.0], [-1.0]])
    r = testing.check_bound_ordering({"a": draws[0], "b": draws[1]})
    assert r and r.means[0] == pytest.approx(draws[0].mean())
    assert r.standard_errors[0] == pytest.approx(draws[0].std() / math.sqrt(1000))
    with pytest.raises(ValueError, match="at least two bounds"):
        testing.check_bound_ordering([(-1.0, 0.1)])


def test_chunked_draws_equal_one_chunk_and_bound_the_chunk(ppca):
    x = jnp.asarray(ppca.sample(3, seed=11))

    def loss(p, key, x):               # gradient: a standard-normal draw of the key, plus 2 w
        return jnp.sum(p["w"] * jax.random.normal(key, (5,)) + p["w"] ** 2), {}

    params = {"w": jnp.arange(5.0)}
    key = jax.random.key(3)
    one = testing.gradient_draws(loss, params, x, 20, key)
    chunked = testing.gradient_draws(loss, params, x, 20, key, chunk_size=7)   # 7 + 7 + 6
    assert one.shape == chunked.shape == (20, 5) and chunked.dtype == np.float32
    np.testing.assert_allclose(chunked, one, rtol=1e-6, atol=1e-6)
    # Row i is the gradient under the i-th key of jax.random.split(key, n).
    want = jax.vmap(lambda k: jax.random.normal(k, (5,)))(jax.random.split(key, 20)) + 2 * params["w"]
    np.testing.assert_allclose(chunked, want, rtol=1e-6, atol=1e-6)
    again = testing.gradient_draws(loss, params, x, 20, key, chunk_size=7)
    np.testing.assert_array_equal(again, chunked)                      # same seed, same draws
    # A million parameters: the default chunk holds 64 MiB of float32 draws (16 draws).
    big = {"params": {"w": jnp.zeros((1000, 1000))}}
    sampler = testing.make_gradient_sampler(lambda p, k, x: (jnp.sum(p["params"]["w"]), {}),
                                            big, x, num_draws=1000)
    assert sampler.chunk_size == testing.DEFAULT_CHUNK_BYTES // (4 * 10**6) == 16
    with pytest.raises(ValueError, match="n must be a positive integer"):
        testing.gradient_draws(loss, params, x, 0, key)
    with pytest.raises(ValueError, match="state="):
        testing.make_gradient_sampler(jvae.make_sfe_objective(ppca.model), ppca.params, x)
    with pytest.raises(ValueError, match=r"No parameter path contains \['encoderr'\]; the names"):
        testing.param_mask(ppca.params, "encoderr")


def _blocks(text):
    """The guide's fenced blocks in order: ``[(language, code), ...]``."""
    return re.findall(r"```(\w+)\n(.*?)```", text, re.S)


def _shape(text):
    """A printout with every number replaced by '#': its structure."""
    return [re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", line).rstrip()
            for line in text.strip().splitlines()]


def test_the_guide_runs_as_written_and_prints_what_it_shows():
    blocks = _blocks(GUIDE.read_text())
    namespace: dict = {"__name__": "guide"}
    checked = 0
    for i, (lang, code) in enumerate(blocks):
        if lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{GUIDE.name}:block{i}", "exec"), namespace)
        shown = blocks[i + 1][1] if i + 1 < len(blocks) and blocks[i + 1][0] == "text" else None
        if shown is not None:
            assert _shape(out.getvalue()) == _shape(shown), out.getvalue()
            checked += 1
        else:
            assert out.getvalue() == "", f"block {i} prints but the guide shows no output"
    assert checked == 3
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    assert len(tests) == 1
    tests[0]()


def test_estimator_report_against_another_estimator_and_its_table(ppca, capsys):
    ref = ppca.reference
    loss = jvae.make_elbo_loss(ref.model)
    r = testing.estimator_report(loss, model=ref, name="reparam", n=1000, key=jax.random.key(0),
                                 reference=jvae.make_elbo_loss(ref.model, kl="mc"))
    printed = capsys.readouterr().out
    assert printed.startswith("estimator report: reparam (n = 1000 draws)\n") and str(r) in printed
    assert r and r.reference == "reference estimator (1000 draws)"
    assert r.draws.shape == (1000, 39)
    # The baseline is the same estimator with other keys: a variance ratio of 1 within 4 se.
    assert abs(r.variance.statistic - 1.0) < 4 * r.variance.standard_error
    # Against its own draws: exactly 1; no reference, no bias entry.
    same = testing.estimator_report(loss, model=ref, name="itself", n=1000,
                                    key=jax.random.key(0), reference=None, baseline=r.draws,
                                    print_report=False)
    assert same.variance.statistic == 1.0 and same.bias is None and same
    assert "  bias: n/a (no reference)" in str(same).splitlines()
    table = testing.report_table([r, same]).splitlines()
    assert len(table) == 4 and table[3].startswith("| itself | n/a | n/a | 1 | 1 |")
    assert set(r.as_dict()) >= {"bias_z", "variance_ratio_inference", "seconds_per_1000_draws"}
    with pytest.raises(ValueError, match="Unknown reference 'exact'"):
        testing.estimator_report(loss, model=ref, n=10, reference="exact", baseline=r.draws)
