"""A run's figures that earn their place: the rate per latent dimension (values against closed
forms and quadrature, the bar chart), the 2-D versus higher-dimensional choice of latent
figures, image grids at a readable size, every title naming its run and split, and clipped
step curves that show what they clip."""

import json

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats

import jvae
from jvae import plotting
from jvae.evaluation import latent_marginals, rate_per_dimension
from jvae.models.vae import VAE
from jvae.plotting import images

SHAPE = (6, 6, 1)


def _vae(latent_dim, prior=None, posterior=None):
    return jvae.VAE(SHAPE, prior or jvae.StandardNormalPrior(latent_dim),
                    jvae.MLP((16,), in_event_ndims=3),
                    posterior or jvae.DiagGaussianHead(latent_dim), jvae.MLP((16,)),
                    jvae.BernoulliHead(SHAPE))


def _data(n, seed=3):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(n,) + SHAPE) > 0.5,
                       jnp.float32)


def _spy_savefig(monkeypatch):
    """Every figure saved, with the file name it went to (texts and axes are final then)."""
    saved = {}
    orig = Figure.savefig

    def spy(self, path, *a, **k):
        saved[getattr(path, "name", str(path))] = self
        return orig(self, path, *a, **k)

    monkeypatch.setattr(Figure, "savefig", spy)
    return saved


def _titles(fig) -> str:
    """All the title text of a figure: suptitle, free texts, axes titles."""
    texts = [t.get_text() for t in fig.texts]
    texts += [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center", "right")]
    if fig._suptitle is not None:
        texts.append(fig._suptitle.get_text())
    return "\n".join(texts)


# --------------------------------------------------------------------------- rate_per_dimension


def test_rate_per_dimension_is_the_closed_form_gaussian_kl(tmp_path):
    model = _vae(5)
    x = _data(37)                               # 37 = 2 chunks of 16 and a padded one of 5
    params = jvae.init_params(model, jax.random.key(1), x[:1])
    rates = np.asarray(rate_per_dimension(model, params, jax.random.key(2), x, batch_size=16))
    q = model.apply(params, x, method=VAE.encode)
    mu, s = np.asarray(q.loc, np.float64), np.asarray(q.scale_diag, np.float64)
    expected = np.mean(0.5 * (mu ** 2 + s ** 2 - 1.0) - np.log(s), axis=0)   # KL(N(mu,s)||N(0,1))
    assert rates.shape == (5,) and rates.dtype == np.float32
    np.testing.assert_allclose(rates, expected, rtol=1e-5, atol=1e-6)
    # For a factorised posterior and prior the per-dimension rates sum to the rate R.
    _, rate = jvae.objectives.elbo.elbo_terms(model, params, jax.random.key(0), x, kl="analytic")
    assert rates.sum() == pytest.approx(float(jnp.mean(rate)), rel=1e-5)
    # A dimension whose posterior is the prior costs nothing.
    params_off = jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.zeros_like(a) if "loc" in jax.tree_util.keystr(path) else a, params)
    collapsed = np.asarray(rate_per_dimension(model, params_off, jax.random.key(2), x))
    q_off = model.apply(params_off, x, method=VAE.encode)
    s_off = np.asarray(q_off.scale_diag, np.float64)
    np.testing.assert_allclose(collapsed, np.mean(0.5 * (s_off ** 2 - 1) - np.log(s_off), 0),
                               rtol=1e-5, atol=1e-6)


def test_rate_per_dimension_of_a_mixture_prior_matches_quadrature():
    """Monte Carlo against the 1-D integral of q(z_d) log(q(z_d) / p(z_d)) on a fine grid."""
    d = 3
    model = _vae(d, prior=jvae.MixturePrior(d, num_components=3))
    x = _data(4)
    params = jvae.init_params(model, jax.random.key(7), x[:1])
    rates = np.asarray(rate_per_dimension(model, params, jax.random.key(3), x,
                                          num_samples=20000))
    q = model.apply(params, x, method=VAE.encode)
    pz = latent_marginals(model.apply(params, method=VAE.prior_distribution))
    mu, s = np.asarray(q.loc, np.float64), np.asarray(q.scale_diag, np.float64)
    w = np.asarray(jax.nn.softmax(pz.mixture_distribution.logits), np.float64)   # [D, C]
    m = np.asarray(pz.components_distribution.loc, np.float64)
    sd = np.asarray(pz.components_distribution.scale, np.float64)
    expected = np.zeros(d)
    for j in range(d):
        for b in range(len(x)):
            z = np.linspace(mu[b, j] - 12 * s[b, j], mu[b, j] + 12 * s[b, j], 20001)
            qz = stats.norm.pdf(z, mu[b, j], s[b, j])
            pzz = np.sum(w[j] * stats.norm.pdf(z[:, None], m[j], sd[j]), axis=1)
            expected[j] += np.trapezoid(qz * (np.log(qz + 1e-300) - np.log(pzz)), z) / len(x)
    # 20000 draws for each of 4 examples: a few hundredths of a nat of Monte Carlo error at most
    np.testing.assert_allclose(rates, expected, atol=0.03)


def test_rate_per_dimension_refuses_a_posterior_without_marginals():
    d = 3
    model = _vae(d, posterior=jvae.PlanarFlowHead(d, num_layers=1))
    x = _data(4)
    params = jvae.init_params(model, jax.random.key(0), x[:1])
    with pytest.raises(ValueError, match="posterior FlowPosterior has none"):
        rate_per_dimension(model, params, jax.random.key(0), x)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        rate_per_dimension(_vae(2), jvae.init_params(_vae(2), jax.random.key(0), x[:1]),
                           jax.random.key(0), x, num_samples=0)


# ------------------------------------------------------------------------------ the bar chart


def test_save_latent_rates_bars_are_the_values_and_the_threshold_is_marked(tmp_path,
                                                                          monkeypatch):
    saved = _spy_savefig(monkeypatch)
    rates = np.array([1.5, 0.002, 0.02, -0.001, 0.3, 1e-7])
    path = plotting.save_latent_rates(rates, tmp_path / "kl.png", title="t")
    fig = saved["kl.png"]
    (ax,) = fig.axes
    bars = ax.patches
    np.testing.assert_allclose([b.get_height() for b in bars],
                               np.maximum(rates, 1e-4), rtol=1e-12)
    active = [b.get_facecolor()[:3] != (0.65, 0.65, 0.65) for b in bars]
    assert active == [True, False, True, False, True, False]
    assert ax.get_yscale() == "log"
    (line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert set(line.get_ydata()) == {0.01}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].endswith("3 of 6") and "threshold 0.01 nats" in legend
    assert "2 below 0.0001 (drawn at 0.0001)" in legend
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(6)]
    assert mpimg.imread(path).shape[1] >= 600
    plotting.save_latent_rates(rates, tmp_path / "sorted.png", sort=True)
    (ax,) = saved["sorted.png"].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "4", "2", "1", "5", "3"]
    for bad in (np.zeros((2, 2)), np.zeros(0), np.array([1.0, np.nan])):
        with pytest.raises(ValueError, match="rates must be"):
            plotting.save_latent_rates(bad, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="threshold"):
        plotting.save_latent_rates(rates, tmp_path / "bad.png", threshold=0)


# --------------------------------------------------------------------------- a run's figures


def _write_steps(workdir, n=60):
    lines = [{"step": i, "train/elbo": -100.0 + 0.1 * i - (5000.0 if i == 1 else 0.0),
              "train/rate": 5.0 + 0.01 * i} for i in range(1, n + 1)]
    (workdir / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


@pytest.mark.parametrize("latent_dim,mixture", [(2, False), (5, False), (3, True)])
def test_run_figures_choose_the_latent_view_and_name_run_and_split(tmp_path, monkeypatch,
                                                                   latent_dim, mixture):
    prior = jvae.MixturePrior(latent_dim, num_components=3) if mixture else None
    model = _vae(latent_dim, prior=prior)
    x = _data(40)
    params = jvae.init_params(model, jax.random.key(1), x[:1])
    data = jvae.runs.Datasets(train=np.asarray(x), eval=np.asarray(x),
                              eval_labels=np.arange(40) % 3, dev=np.asarray(x[:8]))
    workdir = tmp_path / f"my_run_{latent_dim}"
    workdir.mkdir()
    _write_steps(workdir)
    (workdir / "dev.jsonl").write_text("".join(
        json.dumps({"step": i, "dev/elbo": -90.0 + i}) + "\n" for i in (0, 30, 60)))
    history = [{"epoch": 1, "train/loss": 5.0, "train/elbo": -5.0, "eval/elbo": -5.5}]
    saved = _spy_savefig(monkeypatch)
    paths = jvae.runs.write_figures(model, params, jax.random.key(0), data, history, workdir,
                                    tsne_points=35, train_split="train_full",
                                    eval_split="test")
    names = {p.name for p in paths}
    common = {"curves.png", "samples.png", "reconstructions.png", "interpolations.png",
              "steps.png", "dev.png", "prior_oversampled.png", "conditional_samples.png"}
    if mixture:  # the prior's samples by component
        common |= {"prior_histograms.png", "prior_pairs.png", "prior_tsne.png"}
    if latent_dim == 2:
        assert names == common | {"latents.png"}
    else:        # no scatter of 2 of the 5 dimensions: the t-SNE and the rate per dimension
        assert names == common | {"latents_tsne.png", "latent_kl.png"}
        (ax,) = saved["latent_kl.png"].axes
        expected = np.asarray(rate_per_dimension(model, params,
                                                 jax.random.fold_in(jax.random.key(0), 200), x,
                                                 num_samples=64))
        np.testing.assert_allclose([b.get_height() for b in ax.patches],
                                   np.maximum(expected, 1e-4), rtol=1e-5)
    for name in names:
        title = _titles(saved[name])
        assert f"my_run_{latent_dim}" in title, (name, title)
        split = ("train_full" if name in ("steps.png", "samples.png", "prior_oversampled.png")
                 or name.startswith("prior_") else "dev" if name == "dev.png" else "test")
        assert f"{split} split" in title, (name, title)
    assert "(8 examples held out of train_full)" in _titles(saved["dev.png"])
    # Grids of these 6 x 6 images: 1000 px wide, or the most zoom (8) short of that.
    for name, columns in (("samples.png", 8), ("prior_oversampled.png", 16),
                          ("conditional_samples.png", 16), ("reconstructions.png", 8),
                          ("interpolations.png", 10)):
        width = mpimg.imread(workdir / name).shape[1]
        assert width >= min(1000, 8 * (columns * 8 + 2)), (name, width)


def test_grids_of_digits_are_at_least_1000_pixels_wide(tmp_path):
    """The run's grids of 28 x 28 images: 8 x 8 samples, 16 x 4 oversampled, 16 conditional."""
    rng = np.random.default_rng(0)
    samples = plotting.save_image_grid(rng.uniform(size=(64, 28, 28)), tmp_path / "s.png",
                                       nrow=8, title="prior samples\nrun r, test split")
    over = plotting.save_oversampled(rng.uniform(size=(16, 4, 28, 28)), tmp_path / "o.png")
    cond = plotting.save_conditional_samples(rng.uniform(size=(16, 28, 28)),
                                             rng.uniform(size=(16, 4, 28, 28)),
                                             tmp_path / "c.png")
    widths = {p.name: mpimg.imread(p).shape[1] for p in (samples, over, cond)}
    assert widths["s.png"] == 5 * 242 and widths["o.png"] == 3 * 482      # integer zooms
    assert widths["c.png"] > 3 * 482                                      # plus the labels
    assert images.grid_zoom(122, 482) == 3 and images.grid_zoom(242, 242) == 5
    assert images.grid_zoom(2000, 40) == 1 and images.grid_zoom(10, 10) == 8
    assert images._grid_fontsize(1446) == pytest.approx(1446 / 90)


def test_step_curves_mark_the_clipped_values(tmp_path, monkeypatch):
    saved = _spy_savefig(monkeypatch)
    records = [{"step": i, "train/elbo": -100.0 + 0.1 * i} for i in range(1, 201)]
    records[0]["train/elbo"] = -5000.0          # the first steps' huge loss, far below
    records[1]["train/elbo"] = -3000.0
    records[150]["train/elbo"] = 400.0           # one far above
    plotting.save_step_curves(records, tmp_path / "steps.png", smooth=1)
    (ax,) = saved["steps.png"].axes
    lo, hi = ax.get_ylim()
    assert lo > -3000 and hi < 400                                      # clipped ...
    markers = {ln.get_marker(): ln for ln in ax.get_lines() if ln.get_marker() in ("^", "v")}
    np.testing.assert_array_equal(markers["v"].get_xdata(), [1, 2])    # ... each one shown
    np.testing.assert_array_equal(markers["^"].get_xdata(), [151])     # at its step, on the edge
    assert set(markers["v"].get_ydata()) == {0.0} and set(markers["^"].get_ydata()) == {1.0}
    notes = [t.get_text() for t in ax.texts]
    assert any("2 of 200 points below the axis, min -5000 (step 1)" in t for t in notes), notes
    assert any("1 of 200 points above the axis, max 400 (step 151)" in t for t in notes), notes
