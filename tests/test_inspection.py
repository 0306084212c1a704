"""Tests for jvae.evaluation.inspection (the DPM2 notebook's inspection samples) and its figures:
jvae.plotting.steps, jvae.plotting.mixture and the oversampled / conditional image grids.

Samplers are checked against the distributions they draw from (the Bernoulli means of the
decoder, the mixture prior's weights, means and marginal CDF), figures by the panels, lines and
tiles they hold. Each sampler is jitted once on a tiny MLP model (eager Flax dispatch is slower
than compiling here); keys are ``rbg`` keys, which compile fastest on CPU.
"""

import functools
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure

from jvae import (VAE, BernoulliHead, DiagGaussianHead, GaussianHead, MixturePrior, MLP,
                  StandardNormalPrior, conditional_observations, prior_observations,
                  prior_samples_with_components)
from jvae import plotting, tsne_map
from jvae.plotting import images, steps

SHAPE = (4, 4, 1)          # one observation
DZ, C = 3, 4               # latent dimensions, mixture components


def _key(seed):
    return jax.random.key(seed, impl="rbg")


def _vae(prior, likelihood, data_shape=SHAPE):
    return VAE(data_shape=data_shape, prior=prior,
               encoder=MLP((6,), in_event_ndims=len(data_shape)),
               posterior=DiagGaussianHead(DZ), decoder=MLP((6,)), likelihood=likelihood)


def _params(model, x_example, seed=0, scale=0.5):
    """Parameters with ``init``'s structure drawn in numpy: ``eval_shape`` compiles nothing."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(functools.partial(nn.Module.init, model), jax.random.PRNGKey(0),
                            x_example)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * scale, jnp.float32),
                        shapes)


W = np.array([0.1, 0.2, 0.3, 0.4])                      # the mixture prior, set by hand
LOCS = np.array([[-4.0, 0.0, 1.0], [0.0, 4.0, -1.0], [4.0, 0.0, 2.0], [0.0, -4.0, 0.0]])
SCALES = np.array([[0.5], [1.0], [1.5], [0.7]]) * np.ones((C, DZ))
N_MIX, OVERSAMPLE = 4000, 3000


@pytest.fixture(scope="module")
def mixture_vae():
    """A Bernoulli VAE with a hand-set mixture prior, and every sampler's output from one
    compiled program (called twice with one key, once with another)."""
    model = _vae(MixturePrior(DZ, C), BernoulliHead(SHAPE))
    params = _params(model, jnp.zeros((1,) + SHAPE))
    raw = np.log(np.expm1(SCALES - 1e-4))                 # softplus(raw) + min_scale = SCALES
    prior = {"logits": jnp.log(jnp.asarray(W, jnp.float32)),
             "locs": jnp.asarray(LOCS, jnp.float32), "raw_scales": jnp.asarray(raw, jnp.float32)}
    params = {"params": {**params["params"], "prior": prior}}
    x = _uniform(5)

    @jax.jit
    def draw(params, key, x):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"prior": prior_observations(model, params, k1, 3, OVERSAMPLE),
                "cond": conditional_observations(model, params, k2, x, 2),
                "mix": prior_samples_with_components(model, params, k3, N_MIX)}

    out = jax.tree.map(np.asarray, draw(params, _key(1), x))
    again = jax.tree.map(np.asarray, draw(params, _key(1), x))
    other = jax.tree.map(np.asarray, draw(params, _key(2), x))
    return types.SimpleNamespace(model=model, params=params, x=x, out=out, again=again,
                                 other=other)


def _uniform(n, shape=SHAPE, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(n,) + shape), jnp.float32)


# ------------------------------------------------------------------------------- samplers


def test_prior_observations_are_bernoulli_samples_of_a_fixed_z(mixture_vae):
    m = mixture_vae
    z, x = m.out["prior"]
    assert z.shape == (3, DZ) and x.shape == (3, OVERSAMPLE) + SHAPE and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}                  # samples, not means
    # the z returned is the one decoded and held fixed: row j's draws have mean E[x | z_j]
    p = np.asarray(m.model.apply(m.params, z, method=VAE.decode).mean())   # [3, *SHAPE]
    se = np.sqrt(p * (1 - p) / OVERSAMPLE) + 1e-6
    assert np.all(np.abs(x.mean(axis=1) - p) < 5 * se)
    for a, b in zip(jax.tree.leaves(m.out), jax.tree.leaves(m.again)):   # same key, same result
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(m.other["prior"][0], z)      # another key, other samples
    with pytest.raises(ValueError, match="oversample must be a positive integer"):
        prior_observations(m.model, m.params, _key(1), 3, 0)
    with pytest.raises(ValueError, match="num must be a positive integer"):
        prior_observations(m.model, m.params, _key(1), 2.5)


def test_conditional_observations_hold_or_resample_the_latent():
    # a Gaussian likelihood of tiny fixed noise on flat data: draws that share z agree to ~1e-3
    model = _vae(StandardNormalPrior(DZ), GaussianHead((5,), scale="fixed", fixed_scale=1e-3),
                 data_shape=(5,))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 5)), jnp.float32)
    params = _params(model, x)

    @jax.jit
    def both(params, key, x):
        return (conditional_observations(model, params, key, x, 8),
                conditional_observations(model, params, key, x, 8, resample_latent=True))

    held, fresh = (np.asarray(a) for a in both(params, _key(3), x))
    assert held.shape == fresh.shape == (6, 8, 5)
    spread_held = held.std(axis=1).mean()
    spread_fresh = fresh.std(axis=1).mean()
    assert 0.5e-3 < spread_held < 2e-3 < 0.02 < spread_fresh       # noise only vs q(z|x) too
    with pytest.raises(ValueError, match="shape"):
        conditional_observations(model, params, _key(3), x[:, :4])
    with pytest.raises(ValueError, match="oversample must be"):
        conditional_observations(model, params, _key(3), x, -1)


def test_conditional_observations_bernoulli_and_bad_input(mixture_vae):
    m = mixture_vae
    out = m.out["cond"]
    assert out.shape == (5, 2) + SHAPE and set(np.unique(out)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="support|outside"):    # a Bernoulli needs [0, 1]
        conditional_observations(m.model, m.params, _key(4), m.x + 2.0)


def test_mixture_sampler_has_the_mixture_distribution(mixture_vae):
    from scipy import stats

    z, c = mixture_vae.out["mix"]
    n = N_MIX
    assert z.shape == (n, DZ) and c.shape == (n,) and c.dtype == np.int32
    freq = np.bincount(c, minlength=C) / n
    assert np.all(np.abs(freq - W) < 4 * np.sqrt(W * (1 - W) / n))
    mean = W @ LOCS                                           # the mixture's mean
    var = W @ (SCALES**2 + LOCS**2) - mean**2
    assert np.all(np.abs(z.mean(0) - mean) < 4 * np.sqrt(var / n))
    for k in range(C):                                        # z drawn from its own component
        zk = z[c == k]
        assert np.all(np.abs(zk.mean(0) - LOCS[k]) < 4 * SCALES[k] / np.sqrt(len(zk)))
        assert np.all(np.abs(zk.std(0) / SCALES[k] - 1) < 4 / np.sqrt(2 * len(zk)))
    # the marginal of each coordinate against the mixture's CDF (Kolmogorov-Smirnov, seeded)
    for d in range(DZ):
        cdf = lambda t: np.sum(W * stats.norm.cdf((t[:, None] - LOCS[:, d]) / SCALES[:, d]),
                               axis=1)
        assert stats.kstest(z[:, d], cdf).pvalue > 1e-3


def test_non_mixture_prior_has_no_components():
    model = _vae(StandardNormalPrior(DZ), BernoulliHead(SHAPE))
    params = _params(model, jnp.zeros((1,) + SHAPE))
    f = jax.jit(functools.partial(prior_samples_with_components, model), static_argnums=(2,))
    z, c = f(params, _key(1), 5)
    assert z.shape == (5, DZ) and c is None
    with pytest.raises(ValueError, match="num must be"):
        prior_samples_with_components(model, params, _key(1), 0)


# ------------------------------------------------------------------------------- image grids


def _capture_grid(monkeypatch):
    """Records the grid (and row labels) each image figure draws."""
    seen = []
    orig = images._save_grid

    def spy(grid, path, title, row_labels=None):
        seen.append((grid, row_labels))
        return orig(grid, path, title, row_labels=row_labels)

    monkeypatch.setattr(images, "_save_grid", spy)
    return seen


def _tile(grid, r, c, h, w, pad=2):
    top, left = pad + r * (h + pad), pad + c * (w + pad)
    return grid[top:top + h, left:left + w]


def test_save_oversampled_one_column_per_latent_draw(tmp_path, monkeypatch):
    num, s, h, w = 5, 3, 6, 7
    x = (np.arange(num * s, dtype=np.float32).reshape(num, s, 1, 1) + 1) / 20
    x = np.broadcast_to(x, (num, s, h, w)).copy()
    seen = _capture_grid(monkeypatch)
    path = plotting.save_oversampled(x, tmp_path / "o.png", title=None)
    grid = seen[0][0]
    assert grid.shape == (s * (h + 2) + 2, num * (w + 2) + 2)
    for j in range(num):
        for r in range(s):
            np.testing.assert_allclose(_tile(grid, r, j, h, w), x[j, r])
    zoom = images.grid_zoom(*grid.shape)                     # _save_grid's integer upscaling
    assert mpimg.imread(path).shape[:2] == (grid.shape[0] * zoom, grid.shape[1] * zoom)
    # flat observations with an image shape draw the same picture; [H, W, 1] too
    flat = plotting.save_oversampled(x.reshape(num, s, h * w), tmp_path / "f.png", title=None,
                                     image_shape=(h, w))
    np.testing.assert_array_equal(mpimg.imread(flat), mpimg.imread(path))
    plotting.save_oversampled(x[..., None], tmp_path / "c.png", title=None)
    np.testing.assert_array_equal(seen[-1][0], grid)
    with pytest.raises(ValueError, match="image_shape"):
        plotting.save_oversampled(x.reshape(num, s, h * w), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="do not fit image_shape"):
        plotting.save_oversampled(x.reshape(num, s, h * w), tmp_path / "bad.png",
                                  image_shape=(h, h))


def test_save_conditional_samples_inputs_above_their_samples(tmp_path, monkeypatch):
    b, s, h, w = 4, 2, 5, 5
    inputs = np.linspace(0.1, 0.4, b, dtype=np.float32)[:, None, None] * np.ones((b, h, w))
    samples = np.clip(inputs[:, None] + np.array([0.3, 0.5])[None, :, None, None], 0, 1)
    seen = _capture_grid(monkeypatch)
    path = plotting.save_conditional_samples(inputs, samples, tmp_path / "c.png", n=3)
    assert path.stat().st_size > 0
    grid, labels = seen[0]
    assert grid.shape == ((s + 1) * (h + 2) + 2, 3 * (w + 2) + 2)   # the first n = 3 inputs
    for j in range(3):
        np.testing.assert_allclose(_tile(grid, 0, j, h, w), inputs[j])
        for r in range(s):
            np.testing.assert_allclose(_tile(grid, r + 1, j, h, w), samples[j, r])
    assert [text for _, text in labels] == ["data", "x' ~ p(x|z)"]
    with pytest.raises(ValueError, match="same B"):
        plotting.save_conditional_samples(inputs[:3], samples, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="n must be"):
        plotting.save_conditional_samples(inputs, samples, tmp_path / "bad.png", n=0)


def test_save_image_grid_flat_vectors(tmp_path):
    x = np.random.default_rng(0).uniform(size=(6, 12))
    a = plotting.save_image_grid(x, tmp_path / "a.png", nrow=3, image_shape=(3, 4))
    b = plotting.save_image_grid(x.reshape(6, 3, 4), tmp_path / "b.png", nrow=3)
    np.testing.assert_array_equal(mpimg.imread(a), mpimg.imread(b))
    assert plotting.as_images(x, (3, 4, 1)).shape == (6, 3, 4, 1)
    with pytest.raises(ValueError, match="image_shape must be"):
        plotting.as_images(x, (12,))


# ------------------------------------------------------------------------------- step curves


def _spy_savefig(monkeypatch):
    figures = []
    orig = Figure.savefig

    def spy(self, *a, **k):
        figures.append(self)
        return orig(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_save_step_curves_panels_raw_and_smoothed(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    elbo = -100 - 50 * np.exp(-np.arange(200) / 30) + rng.normal(size=200)
    records = [{"step": i + 1, "train/elbo": elbo[i], "train/distortion": 80.0 - elbo[i] / 10,
                "train/rate": 20.0} for i in range(200)]
    records[7].pop("train/rate")                              # a missing value is skipped
    figures = _spy_savefig(monkeypatch)
    path = plotting.save_step_curves(records, tmp_path / "s.png", smooth=9)
    assert mpimg.imread(path).shape[0] > 100
    axes = _visible(figures[0])
    assert [ax.get_title() for ax in axes] == ["train ELBO", "train distortion D",
                                               "train rate R"]   # no cv loss: no panel
    raw, smoothed = axes[0].get_lines()
    np.testing.assert_array_equal(raw.get_xdata(), np.arange(1, 201))
    np.testing.assert_allclose(raw.get_ydata(), elbo)
    # centred moving average over 9 steps, shorter at the ends
    expect = [elbo[max(0, i - 4):i + 5].mean() for i in range(200)]
    np.testing.assert_allclose(smoothed.get_ydata(), expect)
    assert len(axes[2].get_lines()[0].get_xdata()) == 199
    # the notebook's control-variate key gets its own panel
    records[0]["train/cv_loss"] = 1.0
    plotting.save_step_curves(records, tmp_path / "cv.png", keys=("train/cv_loss", "x"))
    assert [ax.get_title() for ax in _visible(figures[1])] == ["train control-variate loss"]


def test_save_step_curves_long_runs_draw_a_range(tmp_path, monkeypatch):
    y = np.sin(np.arange(10_000) / 300.0) + np.random.default_rng(1).normal(size=10_000)
    records = [{"step": i, "train/elbo": v} for i, v in enumerate(y)]
    bands = []
    orig = type(Figure().add_subplot()).fill_between
    monkeypatch.setattr(type(Figure().add_subplot()), "fill_between",
                        lambda self, x, lo, hi, **k: bands.append((x, lo, hi)) or
                        orig(self, x, lo, hi, **k))
    plotting.save_step_curves(records, tmp_path / "long.png")
    ((x, lo, hi),) = bands
    assert len(x) == 2000                                     # 2,000 buckets of 5 steps
    np.testing.assert_allclose(lo, y.reshape(2000, 5).min(1))
    np.testing.assert_allclose(hi, y.reshape(2000, 5).max(1))


def test_save_dev_curves_markers_at_the_evaluations(tmp_path, monkeypatch):
    at = [0, 50, 100, 175]
    records = [{"step": s, "epoch": s / 100, "dev/elbo": -100.0 - 100 / (1 + s),
                "dev/distortion": 90.0, "dev/rate": [10.0, 12.0],
                "dev/log_likelihood": -95.0 + s / 100} for s in at]
    records[1].pop("dev/log_likelihood")
    figures = _spy_savefig(monkeypatch)
    plotting.save_dev_curves(records, tmp_path / "d.png")
    axes = _visible(figures[0])
    assert [ax.get_title() for ax in axes] == ["dev ELBO", "dev distortion D", "dev rate R",
                                               "dev log-likelihood L"]
    (line,) = axes[0].get_lines()
    assert line.get_marker() == "o"
    np.testing.assert_array_equal(line.get_xdata(), at)
    np.testing.assert_allclose(axes[2].get_lines()[0].get_ydata(), 11.0)   # mean over seeds
    np.testing.assert_array_equal(axes[3].get_lines()[0].get_xdata(), [0, 100, 175])
    plotting.save_dev_curves(records, tmp_path / "d2.png", keys=("dev/rate", "dev/missing"))
    assert len(_visible(figures[1])) == 1


@pytest.mark.parametrize("records", [[], {"step": 1}, [1.0], [{"step": 1, "other": 2.0}]])
def test_step_figures_reject_bad_records(tmp_path, records):
    with pytest.raises(ValueError, match="records|none of the keys"):
        plotting.save_step_curves(records, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="records|none of the keys"):
        plotting.save_dev_curves(records, tmp_path / "bad.png")


def test_moving_average_matches_a_direct_window():
    y = np.random.default_rng(2).normal(size=50)
    for window in (1, 2, 5, 50, 80):
        expect = [y[max(0, i - (min(window, 50) - 1) // 2):i + min(window, 50) // 2 + 1].mean()
                  for i in range(50)]
        np.testing.assert_allclose(steps.moving_average(y, window), expect)


# ------------------------------------------------------------------------------- mixture figures


def _mixture_samples(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 3, n)
    return rng.normal(size=(n, d)) + 3.0 * c[:, None], c


def test_save_prior_histograms_one_panel_per_coordinate(tmp_path, monkeypatch):
    z, c = _mixture_samples(d=6)
    figures = _spy_savefig(monkeypatch)
    path = plotting.save_prior_histograms(z, c, tmp_path / "h.png", max_coords=3, bins=10)
    assert path.stat().st_size > 0
    axes = _visible(figures[0])
    assert [ax.get_title() for ax in axes] == ["z[0]", "z[1]", "z[2]"]
    # stacked: the top of each bar is the histogram of all samples of that coordinate
    tops = {}
    for patch in axes[1].patches:
        x0 = round(patch.get_x(), 6)
        tops[x0] = max(tops.get(x0, 0.0), patch.get_y() + patch.get_height())
    counts, _ = np.histogram(z[:, 1], bins=10)
    np.testing.assert_allclose(sorted(tops.items()), sorted(zip(tops, counts)))
    assert [t.get_text() for t in figures[0].legends[0].get_texts()] == ["0", "1", "2"]


def test_save_prior_pairs_lower_triangle(tmp_path, monkeypatch):
    z, c = _mixture_samples(d=5)
    figures = _spy_savefig(monkeypatch)
    plotting.save_prior_pairs(z, c, tmp_path / "p.png", num_coords=2, max_points=100)
    axes = _visible(figures[0])
    assert len(axes) == 2 * 3 // 2                           # d (d + 1) / 2 panels
    (scatter,) = [ax for ax in axes if ax.collections]      # one off-diagonal panel
    assert sum(len(coll.get_offsets()) for coll in scatter.collections) == 100
    assert len(scatter.collections) == 3                     # one colour per component
    assert scatter.get_xlabel() == "z[0]" and scatter.get_ylabel() == "z[1]"
    with pytest.raises(ValueError, match="at least 2 coordinates"):
        plotting.save_prior_pairs(z[:, :1], c, tmp_path / "bad.png")


def test_save_prior_tsne_colours_by_component(tmp_path):
    z, c = _mixture_samples(n=40, d=4)
    m = tsne_map(z, c, perplexity=5.0, num_iters=60)
    assert m.embedding.shape == (40, 2) and m.total == 40 and np.array_equal(m.labels, c)
    path = plotting.save_prior_tsne(m.embedding, m.labels, tmp_path / "t.png", total=m.total,
                                    perplexity=m.perplexity)
    assert mpimg.imread(path).shape[0] > 100
    with pytest.raises(ValueError, match="more than 2 dimensions"):
        tsne_map(z[:, :2], c)
    with pytest.raises(ValueError, match=r"\[N, 2\].*tsne_map"):
        plotting.save_prior_tsne(z, c, tmp_path / "bad.png")


@pytest.mark.parametrize("fn", [plotting.save_prior_histograms, plotting.save_prior_pairs,
                                plotting.save_prior_tsne])
def test_mixture_figures_reject_non_mixture_and_bad_shapes(tmp_path, fn):
    z, c = _mixture_samples(n=50, d=4)
    with pytest.raises(ValueError, match="not a mixture"):
        fn(z, None, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"components must be \[50\] integers"):
        fn(z, c[:10], tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        fn(z[0], c, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="NaN"):
        fn(np.where(z > 5, np.nan, z), c, tmp_path / "bad.png")
