"""Tests for the lecture's figures (jvae.plotting.latent_space, jvae.plotting.image_panels):
each writes a non-blank PNG with the titles, axis labels and colour bars it promises, and bad
input (a latent space that is not 2-D, t-SNE of 2-D latents, no scikit-learn) fails clearly."""

import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

import jvae
from jvae import plotting
from jvae.plotting import image_panels, latent_space


def _nonblank(path):
    assert path.is_file() and path.stat().st_size > 1000
    img = mpimg.imread(path)
    rgb = np.round(img[..., :3] * 255).astype(np.int64) @ np.array([65536, 256, 1])
    assert len(np.unique(rgb)) > 20
    return img


@pytest.fixture
def figures(monkeypatch):
    """Records every Figure the two modules save."""
    saved = []
    for module in (latent_space, image_panels):
        real = module._save

        def record(fig, path, tight=True, real=real):
            saved.append(fig)
            return real(fig, path, tight)

        monkeypatch.setattr(module, "_save", record)
    return saved


def _texts(fig):
    out = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.texts]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
            out.append(ax.get_legend().get_title().get_text())
    return [t for t in out if t]


def _codes(n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    return rng.normal(size=(n, 2)) + 2.0 * np.stack([np.cos(labels), np.sin(labels)], 1), labels


def test_code_scatter_with_and_without_error_bars(tmp_path, figures):
    codes, labels = _codes()
    _nonblank(plotting.save_code_scatter(codes, labels, tmp_path / "pca.png",
                                         axis_labels=("PC 1", "PC 2"), title="PCA projection"))
    texts = _texts(figures[-1])
    assert {"PC 1", "PC 2", "PCA projection", "label"} <= set(texts)
    assert {str(d) for d in range(10)} <= set(texts)          # a legend entry per digit
    errors = np.abs(np.random.default_rng(1).normal(0.2, 0.05, codes.shape))
    codes[0] = [1e3, 1e3]                                     # a far outlier is counted, not shown
    _nonblank(plotting.save_code_scatter(codes, labels, tmp_path / "vae.png", errors=errors,
                                         title="posterior means"))
    texts = _texts(figures[-1])
    assert "z[0]" in texts and "z[1]" in texts
    assert any("outside the axes" in t and "posterior standard deviation" in t for t in texts)
    assert figures[-1].axes[0].get_xlim()[1] < 100
    with pytest.raises(ValueError, match="errors must have the shape"):
        plotting.save_code_scatter(codes, labels, tmp_path / "bad.png", errors=errors[:5])
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        plotting.save_code_scatter(np.zeros((5, 3)), None, tmp_path / "bad.png")


def _decode(z):
    """A smooth fake decoder: a blob whose position follows z."""
    g = np.linspace(-3, 3, 28)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    return np.exp(-((xx[None] - z[:, :1, None]) ** 2 + (yy[None] + z[:, 1:, None]) ** 2))[..., None]


def test_manifold(tmp_path, figures):
    codes, _ = _codes()
    calls = []

    def decode(z):
        calls.append(z)
        return _decode(z)

    img = _nonblank(plotting.save_manifold(decode, codes * 0.5, tmp_path / "m.png"))
    assert img.shape[0] > 500
    z = calls[0]
    assert z.shape == (900, 2)
    np.testing.assert_allclose(z[0], [-3, 3], atol=1e-6)      # top-left tile: z = (-3, +3)
    np.testing.assert_allclose(z[-1], [3, -3], atol=1e-6)
    fig = figures[-1]
    texts = _texts(fig)
    assert "z[0]" in texts and "z[1]" in texts
    assert "50% of the encoded data" in texts and "90% of the encoded data" in texts
    assert any("30x30" in t for t in texts)
    assert any(ax.get_ylabel().startswith("decoder mean") for ax in fig.axes)   # colour bar
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((-3 - 3 / 29, 3 + 3 / 29))
    # Flat decoder outputs and per-axis limits.
    _nonblank(plotting.save_manifold(lambda z: _decode(z).reshape(len(z), -1), codes,
                                     tmp_path / "m2.png", num=10, limits=((-5, 5), (0, 2))))


def test_manifold_refuses_latents_that_are_not_2d(tmp_path):
    with pytest.raises(ValueError, match="needs a 2-D latent space.*save_latent_tsne") as e:
        plotting.save_manifold(_decode, np.zeros((50, 20)), tmp_path / "m.png")
    assert "\n" not in str(e.value) and "(50, 20)" in str(e.value)
    with pytest.raises(ValueError, match="limits"):
        plotting.save_manifold(_decode, np.zeros((50, 2)), tmp_path / "m.png", limits=(3, -3))
    with pytest.raises(ValueError, match="decode returned"):
        plotting.save_manifold(lambda z: _decode(z)[:5], np.zeros((50, 2)), tmp_path / "m.png")


def test_components(tmp_path, figures):
    rng = np.random.default_rng(0)
    comps = rng.normal(size=(7, 784))
    _nonblank(plotting.save_components(comps, tmp_path / "c.png",
                                       titles=[f"PC {i + 1} ({r:.0%})" for i, r in
                                               enumerate(np.linspace(0.1, 0.02, 7))]))
    fig = figures[-1]
    texts = _texts(fig)
    assert "PC 1 (10%)" in texts and "principal components" in texts
    assert any(ax.get_ylabel() == "weight" for ax in fig.axes)           # the colour bar
    images = [im for ax in fig.axes for im in ax.images]
    lo, hi = images[0].get_clim()
    assert lo == -hi == -np.abs(comps).max()                             # one symmetric scale
    with pytest.raises(ValueError, match="titles"):
        plotting.save_components(comps, tmp_path / "c.png", titles=["a"])


def test_reconstruction_rows_four_and_three(tmp_path, figures):
    rng = np.random.default_rng(0)
    data = rng.random((12, 28, 28, 1))
    mean = np.clip(data + 0.1 * rng.normal(size=data.shape), 0, 1)
    sample = np.clip(mean + 0.1 * rng.normal(size=data.shape), 0, 1)
    _nonblank(plotting.save_reconstruction_rows(data, mean, tmp_path / "r4.png", sample=sample,
                                                n=6, diff_range=0.05, title="VAE"))
    fig = figures[-1]
    texts = _texts(fig)
    assert {"data", "decoded\nposterior mean", "decoded\nposterior sample",
            "mean - sample", "VAE", "grey level", "difference"} <= set(texts)
    diff_images = [im for ax in fig.axes for im in ax.images if im.get_cmap().name == "RdBu_r"]
    assert len(diff_images) == 6
    assert all(im.get_clim() == (-0.05, 0.05) for im in diff_images)    # fixed symmetric range
    np.testing.assert_allclose(diff_images[0].get_array(), (mean - sample)[0, ..., 0])
    _nonblank(plotting.save_reconstruction_rows(data[..., 0], mean[..., 0], tmp_path / "r3.png",
                                                n=4))
    texts = _texts(figures[-1])
    assert "reconstruction" in texts and "data -\nreconstruction" in texts
    with pytest.raises(ValueError, match="one shape"):
        plotting.save_reconstruction_rows(data, mean[:3], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="diff_range"):
        plotting.save_reconstruction_rows(data, mean, tmp_path / "bad.png", diff_range=0)


def test_tsne(tmp_path, figures):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 120)
    latents = rng.normal(size=(120, 8)) + 4 * np.eye(8)[labels]
    m = jvae.tsne_map(latents, labels, perplexity=10, max_points=100)
    assert m.embedding.shape == (100, 2) and m.labels.shape == (100,) and m.total == 120
    _nonblank(plotting.save_latent_tsne(m.embedding, m.labels, tmp_path / "t.png",
                                        total=m.total, perplexity=m.perplexity,
                                        title="t-SNE of 8-D latents"))
    texts = _texts(figures[-1])
    assert {"t-SNE 1", "t-SNE 2", "t-SNE of 8-D latents", "0", "3"} <= set(texts)
    assert any("100 points of 120, perplexity 10" in t for t in texts)
    with pytest.raises(ValueError, match="more than 2 dimensions.*save_code_scatter"):
        jvae.tsne_map(latents[:, :2], labels)
    with pytest.raises(ValueError, match=r"embedding must be a non-empty \[N, 2\]"):
        plotting.save_latent_tsne(latents, labels, tmp_path / "t.png")


def test_tsne_needs_no_scikit_learn(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)   # makes any sklearn import fail
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    x = np.random.default_rng(1).normal(size=(50, 5))
    m = jvae.tsne_map(x, None, perplexity=5, num_iters=50)
    _nonblank(plotting.save_latent_tsne(m.embedding, m.labels, tmp_path / "t.png"))
