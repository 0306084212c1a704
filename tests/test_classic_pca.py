"""PCA by SVD (jvae.classic.pca) against scikit-learn and against its own mathematics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.classic import PCA, fit_pca, pca_decode, pca_encode


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _data(n=400, d=8, seed=0):
    """Anisotropic Gaussian data with well-separated variances (so components are defined)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    scales = np.geomspace(5.0, 0.2, d)
    return ((rng.normal(size=(n, d)) * scales) @ q.T + rng.normal(size=d)).astype(np.float32)


def _compare_with_sklearn(x, k):
    decomposition = pytest.importorskip("sklearn.decomposition")
    ref = decomposition.PCA(n_components=k, svd_solver="full").fit(x.astype(np.float64))
    pca = fit_pca(x, k)
    comps = np.asarray(pca.components, np.float64)
    cos = np.abs(np.sum(comps * ref.components_, axis=1)
                 / np.linalg.norm(comps, axis=1) / np.linalg.norm(ref.components_, axis=1))
    return pca, ref, cos


def test_pca_matches_sklearn_synthetic():
    x = _data()
    pca, ref, cos = _compare_with_sklearn(x, 3)
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(pca.explained_variance, ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(pca.explained_variance_ratio, ref.explained_variance_ratio_,
                               rtol=1e-4)
    np.testing.assert_allclose(pca.singular_values, ref.singular_values_, rtol=1e-4)
    np.testing.assert_allclose(pca.mean, ref.mean_, atol=1e-5)
    # Same sign convention as sklearn's svd_flip: each row's largest |entry| is positive.
    np.testing.assert_allclose(pca.components, ref.components_, atol=1e-4)
    np.testing.assert_allclose(pca_encode(pca, x), ref.transform(x.astype(np.float64)),
                               atol=1e-3)


def test_pca_matches_sklearn_mnist(jvae_data_dir):
    from jvae.data import load_split

    images = load_split("mnist", "test", data_dir=jvae_data_dir).images[:2000]
    x = np.asarray(images.reshape(len(images), -1))
    pca, ref, cos = _compare_with_sklearn(x, 5)
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(pca.explained_variance, ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(pca.explained_variance_ratio, ref.explained_variance_ratio_,
                               rtol=1e-4)


def test_pca_geometry():
    """Orthonormal components, sorted variances, decode(encode(.)) an orthogonal projection
    whose squared error is the discarded variance (Eckart-Young)."""
    x = _data()
    n, k = x.shape[0], 3
    pca = fit_pca(x, k)
    assert isinstance(pca, PCA)
    assert pca.components.shape == (k, 8) and pca.mean.shape == (8,)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(k), atol=1e-5)
    assert np.all(np.diff(np.asarray(pca.explained_variance)) <= 0)
    z = pca_encode(pca, x)
    assert z.shape == (n, k)
    np.testing.assert_allclose(jnp.mean(z, 0), 0.0, atol=1e-4)
    np.testing.assert_allclose(jnp.var(z, 0, ddof=1), pca.explained_variance, rtol=1e-4)
    x_hat = pca_decode(pca, z)
    np.testing.assert_allclose(pca_decode(pca, pca_encode(pca, x_hat)), x_hat, atol=1e-4)
    s_all = np.linalg.svd(x - x.mean(0), compute_uv=False).astype(np.float64)
    err = np.sum((np.asarray(x, np.float64) - np.asarray(x_hat, np.float64)) ** 2)
    np.testing.assert_allclose(err, np.sum(s_all[k:] ** 2), rtol=1e-3)
    # Structured batches: any leading axes.
    assert pca_encode(pca, x[:6].reshape(2, 3, 8)).shape == (2, 3, k)
    assert pca_decode(pca, jnp.zeros((2, 3, k))).shape == (2, 3, 8)


def test_fit_pca_jits_with_static_k():
    x = _data()
    eager = fit_pca(x, 2)
    jitted = jax.jit(fit_pca, static_argnums=1)(jnp.asarray(x), 2)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x, k, match", [
    (np.zeros((10, 4), np.float32), 4, "smaller than the data dimension"),
    (np.zeros((10, 4), np.float32), 7, "smaller than the data dimension"),
    (np.zeros((3, 8), np.float32), 5, "more than the number of examples"),
    (np.zeros((10, 4), np.float32), 0, "positive integer"),
    (np.zeros((10, 4), np.float32), 1.5, "positive integer"),
    (np.zeros(10, np.float32), 1, "2-D array"),
    (np.zeros((5, 4, 2), np.float32), 1, "2-D array"),
    (np.array([[0.0, 1.0], [np.nan, 2.0]], np.float32), 1, "NaN"),
    (np.array([[0.0, 1.0], [np.inf, 2.0]], np.float32), 1, "Inf"),
    (np.zeros((10, 4), np.uint8), 1, "integer"),
    ([[0.0, 1.0], [1.0, 2.0]], 1, "expected an array"),
])
def test_fit_pca_bad_input(x, k, match):
    with pytest.raises(ValueError, match=match) as info:
        fit_pca(x, k)
    assert "\n" not in str(info.value)


def test_encode_decode_bad_shapes():
    pca = fit_pca(_data(), 2)
    with pytest.raises(ValueError, match="D=8"):
        pca_encode(pca, np.zeros((3, 7), np.float32))
    with pytest.raises(ValueError, match="k=2"):
        pca_decode(pca, np.zeros((3, 3), np.float32))
