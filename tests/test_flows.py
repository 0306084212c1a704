"""Flow posteriors (jvae.models.flows, jvae.models.made) as mathematics: log-determinants against the
Jacobian, the density's integral, IAF's triangular Jacobian, the bound on probabilistic PCA
and unbiased reparameterised gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jvae.models.flows import CouplingFlowHead, FlowPosterior, IAFHead, PlanarFlowHead
from jvae.models.made import MADE, made_apply, made_masks

KINDS = ("planar", "iaf", "coupling")


def _head(kind, d, layers):
    if kind == "planar":
        return PlanarFlowHead(latent_dim=d, num_layers=layers)
    if kind == "iaf":
        return IAFHead(latent_dim=d, num_layers=layers, hidden=(8,))
    return CouplingFlowHead(latent_dim=d, num_layers=layers, hidden=8)


def _random_params(module, *args, noise=0.3, seed=0):
    """Parameters of ``module`` drawn ``N(0, noise^2)`` on the host (the layers are then
    non-trivial, and no initialiser has to be compiled)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(noise * rng.standard_normal(s.shape), s.dtype),
                        shapes)


def _flow(kind, d=2, layers=2, noise=0.3, seed=0):
    """A flow head with random parameters and features ``h [1, 3]`` (batch shape ``[1]``)."""
    head = _head(kind, d, layers)
    h = jnp.linspace(-1.0, 1.0, 3)[None]
    return head, _random_params(head, h, noise=noise, seed=seed), h


@pytest.mark.parametrize("kind", KINDS)
def test_log_det_jacobian_inverse_and_density_integrating_to_one(kind):
    """On a 2-D latent (three layers): each layer stack's log |det| against slogdet of
    jacfwd at random points, the inverse's round trip, the density's integral over a grid
    (trapezoid rule), and log q of q's own draws (read back) against the inverse's."""
    head, params, h = _flow(kind, d=2, layers=3)
    assert isinstance(head.apply(params, h), FlowPosterior)
    n, half = 181, 9.0
    g = np.linspace(-half, half, n)
    grid = jnp.asarray(np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, 2),
                       jnp.float32)

    @jax.jit
    def check(params, z, grid, key):
        q = head.apply(params, h)
        bij = q.bijector
        y, log_det = bij.forward_and_log_det(z)
        jac = jax.vmap(jax.jacfwd(lambda v: bij.forward(v[None])[0]))(z[:, 0])   # [6, 2, 2]
        x, inv_log_det = bij.inverse_and_log_det(y)
        draws, log_q = q.sample_and_log_prob(seed=key, sample_shape=(64,))
        assert draws.shape == (64, 1, 2) and log_q.shape == (64, 1)
        assert q.log_prob(draws) is log_q                   # its own draws: read back
        return (log_det, jnp.linalg.slogdet(jac), x, inv_log_det, q.log_prob(grid), log_q,
                q.log_prob(draws + 0.0))                    # a copy: through the inverse

    z = jnp.asarray(1.5 * np.random.default_rng(7).standard_normal((6, 1, 2)), jnp.float32)
    log_det, (sign, logabs), x, inv_log_det, log_density, log_q, log_q_inverse = check(
        params, z, grid, jax.random.key(4))
    np.testing.assert_array_equal(np.asarray(sign), 1.0)      # orientation kept
    np.testing.assert_allclose(log_det[:, 0], logabs, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(x, z, atol=2e-4)                 # inverse: round trip
    np.testing.assert_allclose(inv_log_det, -log_det, atol=2e-4)
    density = np.exp(np.asarray(log_density, np.float64)).reshape(n, n)
    mass = np.trapezoid(np.trapezoid(density, g, axis=1), g)
    assert abs(mass - 1.0) < 1e-2, mass
    np.testing.assert_allclose(log_q_inverse, log_q, atol=1e-3)


def test_iaf_jacobian_is_triangular_in_its_ordering():
    d = 4
    for reverse in (False, True):
        masks = made_masks(d, (7, 5), reverse)
        made = MADE(d, hidden=(7, 5), reverse=reverse)
        h = jnp.ones((1, 2))

        p = _random_params(made, h, noise=0.5)

        @jax.jit
        def jacobians(x):
            mp = made.apply(p, h)
            return jax.jacfwd(lambda v: jnp.stack(made_apply(mp, v[None]), 0)[:, 0])(x)

        jm, js = jacobians(jnp.asarray(np.random.default_rng(2).standard_normal(d), jnp.float32))
        order = np.arange(d)[::-1] if reverse else np.arange(d)
        rank = np.argsort(order)                  # position of each coordinate in the ordering
        allowed = rank[None, :] < rank[:, None]   # output i may see input j iff j comes first
        for jac in (np.asarray(jm), np.asarray(js)):
            assert np.all(jac[~allowed] == 0.0)
            assert np.any(jac[allowed] != 0.0)     # and the mask is not all zeros
        assert len(masks) == 3
    head, params, h = _flow("iaf", d=d, layers=2)

    @jax.jit
    def layer_jacobians(params, z):
        layers = head.apply(params, h).bijector.bijectors[::-1]   # Chain: last applied first
        return [(jax.jacfwd(lambda v: layer.forward(v[None])[0])(z),
                 layer.forward_log_det_jacobian(z[None])[0]) for layer in layers]

    z = jnp.asarray(np.random.default_rng(3).standard_normal(d), jnp.float32)
    for k, (jac, log_det) in enumerate(layer_jacobians(params, z)):
        jac = np.asarray(jac)
        strict = np.triu(jac, 1) if k % 2 == 0 else np.tril(jac, -1)   # reversed every other
        assert np.all(strict == 0.0) and np.any(np.tril(jac, -1) + np.triu(jac, 1) != 0.0)
        np.testing.assert_allclose(np.sum(np.log(np.abs(np.diag(jac)))), log_det, atol=1e-5)


# ---- probabilistic PCA with a correlated posterior -----------------------------------------
# x = W z + sigma eps, z ~ N(0, I_2): p(z|x) = N(M^-1 W^T x, sigma^2 M^-1), M = W^T W + s^2 I.
# W's columns are far from orthogonal, so the posterior is strongly correlated. Over diagonal
# Gaussians the smallest KL(q || p(z|x)) is reached at q = N(mean, diag(1 / Lambda_ii)) with
# Lambda the posterior precision: gap = 0.5 (sum_i log Lambda_ii - log det Lambda).

_W = np.array([[1.0, 0.9], [0.8, 1.0], [0.5, 0.6]])
_SIGMA = 0.3
_X = np.array([0.7, -0.2, 0.4])


def _ppca_log_joint(z):
    r = jnp.asarray(_X) - z @ jnp.asarray(_W.T, jnp.float32)
    return (-0.5 * jnp.sum(r ** 2, -1) / _SIGMA ** 2 - 3 * np.log(_SIGMA)
            - 0.5 * jnp.sum(z ** 2, -1) - 2.5 * np.log(2 * np.pi))


def _ppca_exact():
    cov = _W @ _W.T + _SIGMA ** 2 * np.eye(3)
    log_px = -0.5 * (_X @ np.linalg.solve(cov, _X) + np.linalg.slogdet(cov)[1]
                     + 3 * np.log(2 * np.pi))
    precision = (_W.T @ _W + _SIGMA ** 2 * np.eye(2)) / _SIGMA ** 2
    diag_gap = 0.5 * (np.sum(np.log(np.diag(precision))) - np.linalg.slogdet(precision)[1])
    return log_px, diag_gap


def _elbo(head, params, h, key, n):
    z, log_q = head.apply(params, h).sample_and_log_prob(seed=key, sample_shape=(n,))
    return jnp.mean(_ppca_log_joint(z[:, 0]) - log_q[:, 0])


@pytest.mark.parametrize("kind", ("iaf",))
def test_flow_bound_on_correlated_ppca_below_log_px_and_tighter_than_diagonal(kind):
    log_px, diag_gap = _ppca_exact()
    assert diag_gap > 0.3                           # the test is meaningful: a real gap
    head, params, h = _flow(kind, d=2, layers=2, noise=0.1)
    n_eval = 10000
    opt = optax.adam(3e-2)

    @jax.jit
    def fit_and_evaluate(params, key):
        """The bound at the (random) initial flow; after fitting q alone by Adam, the log
        weights of fresh draws."""
        k_start, k_fit, k_eval = jax.random.split(key, 3)
        start = _elbo(head, params, h, k_start, n_eval)

        def step(carry, k):
            p, s = carry
            g = jax.grad(lambda p: -_elbo(head, p, h, k, 32))(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)),
                                      jax.random.split(k_fit, 200))
        z, log_q = head.apply(params, h).sample_and_log_prob(seed=k_eval, sample_shape=(n_eval,))
        return start, _ppca_log_joint(z[:, 0]) - log_q[:, 0]

    start, log_w = fit_and_evaluate(params, jax.random.key(10))
    start = float(start)
    assert start <= log_px + 0.05
    log_w = np.asarray(log_w, np.float64)
    elbo, se = log_w.mean(), log_w.std() / np.sqrt(n_eval)
    assert elbo <= log_px + 4 * se + 1e-3           # still a lower bound
    print(f"{kind}: gap {log_px - elbo:.4f} (start {log_px - start:.4f}), best diagonal "
          f"{diag_gap:.4f}")
    assert log_px - elbo < 0.5 * diag_gap, (log_px - elbo, diag_gap)


@pytest.mark.parametrize("kind", ("planar", "iaf"))
def test_reparameterised_gradient_matches_score_function(kind):
    """grad_theta E_q[f(z)]: pathwise through the samples vs E[(f(z) - b) grad log q(z)]
    with the samples stopped (log q through the iterative inverses: planar's root with its
    implicit gradient, IAF's fixed point), per parameter within 5 s.e."""
    head, params, h = _flow(kind, d=2, layers=2, noise=0.3)
    n = 4000

    def f(z):
        return jnp.sum((z - 0.5) ** 2, -1) + jnp.sin(2.0 * z[..., 0])

    def one_path(p, eps):                 # z = f(loc + scale * eps): the pathwise sample
        q = head.apply(p, h)
        return f(q.bijector.forward(q.distribution.loc + q.distribution.scale_diag * eps)[0])

    @jax.jit
    def estimates(params, eps, key_score):
        path = jax.vmap(jax.grad(one_path), (None, 0))(params, eps)
        z = jax.lax.stop_gradient(head.apply(params, h).sample(seed=key_score,
                                                               sample_shape=(n,)))  # [n, 1, 2]
        fz = f(z[:, 0])
        signal = fz - jnp.mean(fz)
        score = jax.vmap(jax.grad(lambda p, zi: head.apply(p, h).log_prob(zi[None])[0]),
                         (None, 0))(params, z[:, 0])
        score = jax.tree.map(lambda g: g * signal.reshape((-1,) + (1,) * (g.ndim - 1)), score)
        return path, score, _elbo(head, params, h, key_score, n)

    eps = jnp.asarray(np.random.default_rng(20).standard_normal((n, 1, 2)), jnp.float32)
    path, score, elbo = estimates(params, eps, jax.random.key(21))
    # and on the correlated PPCA below, the bound with this (random) flow is below log p(x)
    log_px, _ = _ppca_exact()
    assert float(elbo) <= log_px + 0.05
    flat_p = np.concatenate([np.asarray(a).reshape(n, -1) for a in jax.tree.leaves(path)], 1)
    flat_s = np.concatenate([np.asarray(a).reshape(n, -1) for a in jax.tree.leaves(score)], 1)
    used = np.std(flat_p, 0) > 0                   # parameters the flow depends on
    assert used.sum() >= 10
    diff = flat_p.mean(0) - flat_s.mean(0)
    se = np.sqrt(flat_p.var(0) / n + flat_s.var(0) / n)
    z_scores = np.abs(diff[used]) / se[used]
    assert np.max(z_scores) < 5.0, np.sort(z_scores)[-5:]
    assert np.max(np.abs(flat_p.mean(0)[used]) / se[used]) > 10   # a gradient to compare


@pytest.mark.parametrize("name,arg,latent", [("iwae_mnist", "k=5,estimator=dreg", 50),
                                              ("pytorch_example", None, 20)])
@pytest.mark.parametrize("kind", KINDS)
def test_the_configs_build_each_flow_posterior(kind, name, arg, latent):
    import importlib.util
    import pathlib

    from jvae.runs import builders

    from jvae.runs import schema

    path = pathlib.Path(__file__).resolve().parents[1] / f"experiments/configs/{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    config.model.posterior, config.model.flow_layers = kind, 3
    schema.validate_config(config)
    model = builders.build_model(config, (28, 28, 1))
    head = {"planar": PlanarFlowHead, "iaf": IAFHead, "coupling": CouplingFlowHead}[kind]
    assert isinstance(model.posterior, head) and model.posterior.num_layers == 3
    q = jax.eval_shape(lambda: model.apply(
        model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1))), jnp.zeros((2, 28, 28, 1)),
        method=type(model).encode).sample(seed=jax.random.key(1), sample_shape=(5,)))
    assert q.shape == (5, 2, latent)


def test_iwae_estimators_run_through_the_flow_inverse():
    """DReG evaluates log q(z) of a re-encoded, stopped q (the IAF inverse, differentiated in
    z): a finite loss equal to -L_K and finite gradients reaching the MADE."""
    from jvae.models.heads import BernoulliHead
    from jvae.models.vae import VAE
    from jvae.models.nets import MLP
    from jvae.objectives.iwae import make_iwae_loss
    from jvae.models.priors import StandardNormalPrior

    model = VAE((4,), StandardNormalPrior(2), MLP((6,), "tanh"),
                IAFHead(latent_dim=2, num_layers=2, hidden=(4,)), MLP((6,)), BernoulliHead((4,)))
    params = _random_params(model, jnp.zeros((1, 4)), noise=0.5, seed=5)
    x = (np.random.default_rng(0).random((3, 4)) > 0.5).astype(np.float32)

    loss = jax.jit(jax.value_and_grad(make_iwae_loss(model, 3, "dreg"), has_aux=True))
    (value, aux), grads = loss(params, jax.random.key(2), x)
    assert np.isfinite(float(value)) and np.isclose(float(value), -float(aux["iwae"]))
    assert float(aux["iwae"]) >= float(aux["elbo"]) - 1e-6
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(grads))
    # the path term reaches the MADE through z and through log q's inverse
    assert np.any(np.asarray(grads["params"]["posterior"]["made_0"]["kernel_0"]) != 0.0)


def test_the_evaluator_with_an_identity_flow_at_the_exact_ppca_posterior_gives_log_px(ppca):
    """Coupling layers whose output layers are zero are the identity, so q is the exact
    posterior of the conftest PPCA (orthogonal W): every importance weight equals p(x), and
    the evaluator's ELBO (Monte Carlo rate, log q read back from the draws) and its
    importance-sampled log-likelihood (log q of the chunks' own draws) are log p(x)."""
    from jvae.evaluation import make_evaluator

    head = CouplingFlowHead(latent_dim=2, num_layers=2, hidden=4, min_scale=ppca.min_scale)
    model = ppca.model.clone(posterior=head)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 5)))
    rng = np.random.default_rng(0)
    flow = {name: jax.tree.map(lambda s: jnp.asarray(
        (0.0 if name.startswith("out_") else 0.5) * rng.standard_normal(s.shape), s.dtype), p)
        for name, p in shapes["params"]["posterior"].items()}
    flow.update(ppca.params["params"]["posterior"])              # loc, raw_scale: exact
    params = {"params": {**ppca.params["params"], "posterior": flow}}
    x = ppca.sample(6, seed=3)
    metrics = make_evaluator(model, batch_size=6, ll_samples=20, ll_chunk=10)(
        params, jax.random.key(1), jnp.asarray(x))
    exact = np.mean(ppca.log_px(x))
    np.testing.assert_allclose(metrics["log_likelihood"], exact, atol=2e-3)
    np.testing.assert_allclose(metrics["elbo"], exact, atol=2e-3)
