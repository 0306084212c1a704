"""Shared pytest fixtures."""

# --- Probabilistic PCA as a jvae VAE (shared by test_model.py, test_evaluation.py and
# test_estimators.py) -------------------------------------------------------------------------
# x = W z + mu + sigma * eps, z ~ N(0, I): p(x) = N(mu, W W^T + sigma^2 I) and
# p(z|x) = N(M^-1 W^T (x - mu), sigma^2 M^-1), M = W^T W + sigma^2 I. W has orthogonal
# columns, so M and the exact posterior are diagonal and a DiagGaussianHead can represent it.
# The model and its hand-set parameters are jvae.testing.ppca_reference's.

import types as _types

import numpy as _np
import pytest as _pytest


@_pytest.fixture(scope="session")
def ppca():
    """PPCA with Dx=5, Dz=2, sigma=0.5 as a jvae VAE with hand-set (exact or poorer) params.

    Attributes: reference (the :class:`jvae.testing.PPCAReference`), model, params (exact
    posterior), params_poor (loc shifted by 1 posterior sd, sds scaled by 0.8), params_near
    (shifted by 0.3 sd, sds scaled by 0.9), W, mu, sigma, m_diag, post_sd, numpy closed forms
    ``log_px(x)``, ``post_mean(x)``, ``log_joint(x, z)``, ``log_px_given_z(x, z)``,
    ``kl_q_post(shift, f)``, and ``sample(n, seed)`` drawing x from the model (float32).
    """
    from jvae.testing import ppca_reference

    dx, dz, sigma = 5, 2, 0.5
    ref = ppca_reference(dx, dz, sigma=sigma, scales=(2.0, 0.7), orthogonal=True, seed=0,
                         min_scale=1e-5)
    W, mu = ref.ppca.W, ref.ppca.mu                            # orthogonal columns
    m_diag = _np.sum(W * W, axis=0) + sigma**2                 # diag of M
    post_sd = _np.sqrt(sigma**2 / m_diag)
    cov = W @ W.T + sigma**2 * _np.eye(dx)
    cov_inv = _np.linalg.inv(cov)
    logdet = _np.linalg.slogdet(cov)[1]

    def log_px(x):
        r = _np.asarray(x, _np.float64) - mu
        return -0.5 * (_np.einsum("...i,ij,...j->...", r, cov_inv, r)
                       + logdet + dx * _np.log(2 * _np.pi))

    def log_px_given_z(x, z):
        r = _np.asarray(x, _np.float64) - (_np.asarray(z, _np.float64) @ W.T + mu)
        return -0.5 * _np.sum(r**2, -1) / sigma**2 - dx * _np.log(sigma) \
            - 0.5 * dx * _np.log(2 * _np.pi)

    def log_pz(z):
        z = _np.asarray(z, _np.float64)
        return -0.5 * _np.sum(z**2, -1) - 0.5 * dz * _np.log(2 * _np.pi)

    def post_mean(x):
        return ((_np.asarray(x, _np.float64) - mu) @ W) / m_diag

    def kl_q_post(shift, factor):
        """KL(q || p(z|x)) for q = N(post_mean + shift*sd, (factor*sd)^2): same for every x."""
        return dz * 0.5 * (factor**2 + shift**2 - 1.0 - 2.0 * _np.log(factor))

    def sample(n, seed):
        r = _np.random.default_rng(seed)
        z = r.normal(size=(n, dz))
        return (z @ W.T + mu + sigma * r.normal(size=(n, dx))).astype(_np.float32)

    ns = _types.SimpleNamespace(
        reference=ref, model=ref.model, W=W, mu=mu, sigma=sigma, m_diag=m_diag,
        post_sd=post_sd, dx=dx, dz=dz, min_scale=ref.min_scale, log_px=log_px,
        log_px_given_z=log_px_given_z, log_pz=log_pz,
        log_joint=lambda x, z: log_px_given_z(x, z) + log_pz(z), post_mean=post_mean,
        kl_q_post=kl_q_post, sample=sample, poor_shift=1.0, poor_factor=0.8)
    ns.params = ref.params()
    ns.params_poor = ref.params(ns.poor_shift, ns.poor_factor)
    ns.params_near = ref.params(0.3, 0.9)                     # close to the exact posterior
    return ns


# --- One XLA compilation per distinct program per test session ---------------------------------
# Several tests train the same small configuration more than once (a run and its resumed copy,
# univariate vs multivariate data of the same shapes); each run builds fresh jitted closures, so
# without a cache every run recompiles identical programs. A per-session persistent cache in a
# temporary directory (removed at exit) lets XLA reuse them, across pytest-xdist workers too;
# set JVAE_TEST_XLA_CACHE_DIR to keep the cache in that directory across sessions instead.
# It must be configured before the first compilation, hence at import time of this conftest.

import atexit as _atexit
import os as _os
import pathlib as _pathlib
import shutil as _shutil
import tempfile as _tempfile

import jax as _jax

# --- Compilation at LLVM's lowest optimisation level -----------------------------------------
# The suite's time is mostly XLA compiling many small programs once each; LLVM's optimisation
# of the generated CPU code is most of that (a small conv VAE's init: 8.4 s at the default
# level, 1.0 s at 0) and buys little for programs that run for milliseconds. Matrix products,
# convolutions and decompositions call the same library kernels at every level. The flag is
# one every supported jaxlib knows (0.10 and 0.12: XLA aborts the process on an unknown flag),
# set before JAX creates its CPU client and inherited by subprocesses the tests start; set
# JVAE_TEST_XLA_OPT=default to test with XLA's defaults instead. The programs users run, at
# XLA's default flags, are checked against eager execution by tests/test_compiled_eager.py
# (in subprocesses whose XLA_FLAGS drop this setting).
_TEST_XLA_FLAGS = {"xla_backend_optimization_level": "0"}
if _os.environ.get("JVAE_TEST_XLA_OPT", "0") != "default":
    _os.environ["XLA_FLAGS"] = " ".join(
        [_os.environ.get("XLA_FLAGS", "")]
        + [f"--{k}={v}" for k, v in _TEST_XLA_FLAGS.items()
           if k not in _os.environ.get("XLA_FLAGS", "")]).strip()

_XLA_CACHE_DIR = _os.environ.get("JVAE_TEST_XLA_CACHE_DIR")
if not _XLA_CACHE_DIR:
    _XLA_CACHE_DIR = _tempfile.mkdtemp(prefix="jvae-tests-xla-cache-")
    _atexit.register(_shutil.rmtree, _XLA_CACHE_DIR, ignore_errors=True)
    # pytest-xdist's workers start after this (the controller loads this conftest first) and
    # inherit the variable, so every worker shares the one cache; only its creator removes it.
    _os.environ["JVAE_TEST_XLA_CACHE_DIR"] = _XLA_CACHE_DIR
_jax.config.update("jax_compilation_cache_dir", _XLA_CACHE_DIR)
_jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
_jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@_pytest.fixture(scope="session")
def jvae_data_dir():
    """``$JVAE_DATA_DIR`` as a path; skips the test when it is unset or not a directory."""
    d = _os.environ.get("JVAE_DATA_DIR")
    if not d or not _pathlib.Path(d).is_dir():
        _pytest.skip("real data not available: set JVAE_DATA_DIR to the folder with mnist/, "
                     "fashion_mnist/ and binarized_mnist/ (e.g. ../shared/data)")
    return _pathlib.Path(d)


def _small_gaussian2d_config(**changes):
    """The shipped ``experiments/configs/gaussian2d.py`` made small and quiet.

    16 hidden units, batch 64, lr 3e-3, no figures, no log-likelihood; 15000 points (10500
    train, 164 steps per epoch) and softplus scales, the settings the suite's expectations
    were set with (the shipped config has Homework 2's 10000 points and log_std heads). ``changes`` maps dotted field names to values, e.g.
    ``small(**{"dataset.mode": "multivariate"}, num_epochs=3)``. Tests that build their model
    from this config share compiled programs through the cache above.
    """
    import runpy

    path = _pathlib.Path(__file__).resolve().parents[1] / "experiments/configs/gaussian2d.py"
    c = runpy.run_path(str(path))["get_config"]()
    c.batch_size = 64
    c.learning_rate = 3e-3
    c.model.encoder_hidden = (16,)
    c.model.decoder_hidden = (16,)
    c.figures = False
    c.eval.ll_samples = 0
    c.dataset.count = 15000
    c.model.posterior_scale = c.model.likelihood_scale = "softplus"
    for key, value in changes.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


@_pytest.fixture(scope="session")
def small_g2d_config():
    """Factory ``(**changes) -> ConfigDict`` of a small gaussian2d run (no data files)."""
    return _small_gaussian2d_config


@_pytest.fixture(scope="module")
def one_blas_thread():
    """One BLAS thread (numpy's and scipy's OpenBLAS, which also serves JAX's SVD and
    Cholesky on the CPU) for a test module: on a busy 2-core host two OpenBLAS threads ran
    the MNIST SVD about four times slower. Use with
    ``pytestmark = pytest.mark.usefixtures("one_blas_thread")``."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


# --- Longest test files first -----------------------------------------------------------------
# The README's command runs the suite on pytest-xdist workers, one test file per worker at a
# time (``--dist loadfile``); starting the longest files first keeps one worker from being left
# with a long file at the end (longest-processing-time-first scheduling). Measured on the 2-core
# CI host with ``--durations``; every other file keeps its collection order after these.
_LONGEST_FIRST = (
    "test_notebook_ports.py", "test_objective_training.py", "test_multiseed.py",
    "test_estimators.py", "test_launch.py",
    "test_configs.py", "test_sharding.py", "test_reliability.py", "test_lecture.py",
    "test_linear_vae.py", "test_experiment.py", "test_estimator_variance_script.py",
    "test_evaluation.py", "test_steplog.py", "test_dropout.py", "test_inspection.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: order kept


@_pytest.fixture(scope="module")
def mixture(ppca):
    """``(model, params, x)``: a 3-component mixture posterior on the PPCA model (components
    spread 0.7, scales 0.3) and three observations of it, for the mixture estimators' tests."""
    import jax
    import jax.numpy as jnp
    from jvae.testing import mixture_reference

    x = jnp.asarray(ppca.sample(3, seed=11))
    model, params = mixture_reference(ppca.reference, jax.random.key(4), x, components=3,
                                      init_spread=0.7, scale=0.3)
    return model, params, x
