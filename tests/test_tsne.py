"""jvae.evaluation.embedding.tsne against scikit-learn's exact t-SNE (the reference implementation of the method)."""

import jax
import numpy as np
import pytest

from jvae.evaluation.embedding import joint_probabilities, tsne, tsne_kl_divergence


def _clusters(n_per=30, k=4, dim=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 8.0
    labels = np.repeat(np.arange(k), n_per)
    return (centres[labels] + rng.normal(size=(k * n_per, dim))).astype(np.float32), labels


def _knn_agreement(y, labels, k=5):
    """Fraction of each point's k nearest map neighbours with its label."""
    d = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return float(np.mean(labels[nearest] == labels[:, None]))


def test_joint_probabilities_match_scikit_learn():
    _t_sne = pytest.importorskip("sklearn.manifold._t_sne")
    from scipy.spatial.distance import squareform

    x = (np.random.default_rng(3).normal(size=(40, 10)) * np.linspace(1, 5, 10)).astype(np.float32)
    d = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
    for perplexity in (5.0, 20.0):
        ref = squareform(_t_sne._joint_probabilities(d.astype(np.float32), perplexity, 0))
        p = np.asarray(joint_probabilities(x, perplexity))
        np.testing.assert_allclose(p, ref, atol=1e-5 / len(x), rtol=0)
        np.testing.assert_allclose(p, p.T, rtol=1e-6)
        assert abs(p.sum() - 1.0) < 1e-5 and np.all(np.diag(p) == 0)


def test_kl_and_gradient_match_scikit_learn():
    _t_sne = pytest.importorskip("sklearn.manifold._t_sne")
    from scipy.spatial.distance import squareform

    from jvae.evaluation.embedding import _kl_and_grad

    x, _ = _clusters(n_per=10)
    p = np.asarray(joint_probabilities(x, 8.0))
    y = np.random.default_rng(4).normal(size=(len(x), 2)).astype(np.float32)
    kl_ref, grad_ref = _t_sne._kl_divergence(y.ravel().astype(np.float64),
                                             squareform(p.astype(np.float64), checks=False),
                                             1, len(x), 2)
    kl, grad = jax.jit(_kl_and_grad)(p, y)
    np.testing.assert_allclose(float(kl), kl_ref, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(grad).ravel(), grad_ref, rtol=1e-3, atol=1e-6)
    assert float(tsne_kl_divergence(p, y)) == pytest.approx(kl_ref, rel=1e-4)


def test_tsne_matches_scikit_learn_on_separated_clusters():
    sk = pytest.importorskip("sklearn.manifold")
    from threadpoolctl import threadpool_limits

    x, labels = _clusters()
    ours = tsne(x, perplexity=20.0, num_iters=500)
    with threadpool_limits(1):
        ref = sk.TSNE(method="exact", init="pca", perplexity=20.0, max_iter=500,
                      random_state=0)
        y_ref = ref.fit_transform(x)
    y = np.asarray(ours.embedding)
    assert y.shape == (len(x), 2) and y.dtype == np.float32
    # sklearn reports the KL of its last 50-iteration check; ours is of the final map.
    assert abs(float(ours.kl_divergence) - ref.kl_divergence_) < 0.02 + 0.05 * ref.kl_divergence_
    assert _knn_agreement(y, labels) >= 0.99
    assert _knn_agreement(y_ref, labels) >= 0.99
    # The same input gives the same map.
    np.testing.assert_array_equal(np.asarray(tsne(x, perplexity=20.0, num_iters=500).embedding), y)


def test_random_init_uses_the_key():
    x, labels = _clusters()              # the shapes of the test above: no new compilation
    a = tsne(x, perplexity=20.0, num_iters=500, init="random", key=jax.random.key(0)).embedding
    b = tsne(x, perplexity=20.0, num_iters=500, init="random", key=jax.random.key(0)).embedding
    c = tsne(x, perplexity=20.0, num_iters=500, init="random", key=jax.random.key(1)).embedding
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    assert _knn_agreement(np.asarray(c), labels) >= 0.99


def test_bad_input_is_a_clear_error():
    x, _ = _clusters(n_per=10)
    with pytest.raises(ValueError, match="exceed max_points=30.*subsample"):
        tsne(x, max_points=30, perplexity=5.0)
    with pytest.raises(ValueError, match=r"perplexity must lie in \(0, N - 1\)"):
        tsne(x, perplexity=60.0)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        joint_probabilities(x[0], 5.0)
    with pytest.raises(ValueError, match="non-finite values"):
        tsne(np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), perplexity=5.0)
    with pytest.raises(ValueError, match="needs key"):
        tsne(x, perplexity=5.0, init="random")
    with pytest.raises(ValueError, match="unknown init 'pcaa'"):
        tsne(x, perplexity=5.0, init="pcaa")
