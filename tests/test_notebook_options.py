"""Options the notebook ports need: the sigmoid activation and Adagrad (Lab 5's question),
reconstructions from a posterior sample, the lecture's per-epoch latent snapshots, its
histogram overlay of the decoded manifold and its labelled image preview."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jvae
from jvae import plotting


# ------------------------------------------------------------------- sigmoid and Adagrad


def test_sigmoid_activation_in_an_mlp():
    mlp = jvae.MLP((3,), "sigmoid")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.float32)
    params = mlp.init(jax.random.key(0), x)
    k, b = params["params"]["dense_0"]["kernel"], params["params"]["dense_0"]["bias"]
    np.testing.assert_allclose(mlp.apply(params, x), 1 / (1 + np.exp(-(x @ k + b))), rtol=1e-5)


@pytest.mark.parametrize("accumulator", [0.0, 0.1])
def test_adagrad_steps_by_the_accumulated_squared_gradients(accumulator):
    """Three steps of make_optimizer("adagrad") against the formula s += g^2,
    p -= lr g / sqrt(s + eps), in numpy."""
    lr, eps = 0.01, 1e-8
    opt = jvae.make_optimizer(lr, name="adagrad", eps=eps, initial_accumulator=accumulator)
    p = {"w": jnp.asarray([0.5, -1.0, 2.0])}
    state = opt.init(p)
    p_ref, s = np.asarray(p["w"], np.float64), np.full(3, accumulator)
    for g in ([1.0, -2.0, 0.5], [0.3, 0.1, -4.0], [-1.0, 1.0, 1.0]):
        g = np.asarray(g)
        updates, state = opt.update({"w": jnp.asarray(g, jnp.float32)}, state, p)
        p = optax.apply_updates(p, updates)
        s = s + g * g
        p_ref = p_ref - lr * g / np.sqrt(s + eps)
        np.testing.assert_allclose(p["w"], p_ref, rtol=1e-6)
    with pytest.raises(ValueError, match="initial_accumulator must be >= 0"):
        jvae.make_optimizer(lr, name="adagrad", initial_accumulator=-1.0)


def test_config_names_the_optimiser_and_activation_with_a_close_match(small_g2d_config):
    c = small_g2d_config()
    c.optim.name, c.model.activation = "adagrad", "sigmoid"
    jvae.validate_config(c)
    assert jvae.build_model(c, (2,)).encoder.activation == "sigmoid"
    jvae.build_optimizer(c)
    c.optim.name = "adagard"
    with pytest.raises(ValueError, match="Unknown optimizer 'adagard'; did you mean 'adagrad'"):
        jvae.validate_config(c)
    c.optim.name, c.model.activation = "adam", "sigmoyd"
    with pytest.raises(ValueError, match="model.activation 'sigmoyd'; did you mean 'sigmoid'"):
        jvae.validate_config(c)


# --------------------------------------------------- per-epoch latent snapshots in a run


def test_a_run_snapshots_the_latents_of_every_evaluation_point(small_g2d_config, tmp_path):
    c = small_g2d_config(num_epochs=2, **{"eval.latent_snapshot_every": 1,
                                          "dataset.limit_train": 640, "dataset.limit_eval": 250})
    jvae.train_and_evaluate(c, tmp_path, progress=False)
    snapshots, labels = jvae.read_latent_snapshots(tmp_path)
    assert [e for e, _, _ in snapshots] == [0, 1, 2] and labels is None     # 0: before training
    assert all(m.shape == s.shape == (250, 2) for _, m, s in snapshots)
    assert all((tmp_path / "snapshots" / f"latents_{e}.png").is_file() for e in (0, 1, 2))
    _, _, model, state = jvae.restore_run(tmp_path)
    data = jvae.load_data(c)
    mean, std = jvae.posterior_stats(model, state.params, data.eval)
    np.testing.assert_allclose(snapshots[-1][1], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(snapshots[-1][2], std, rtol=1e-5, atol=1e-6)
    assert not np.allclose(snapshots[0][1], snapshots[-1][1])      # training moved the codes
    c.eval.latent_snapshot_every = -1
    with pytest.raises(ValueError, match="latent_snapshot_every"):
        jvae.validate_config(c)


def test_reconstructions_from_a_posterior_sample_differ_from_the_mean(g2d_like_images):
    model, params, x = g2d_like_images
    key = jax.random.key(5)
    mean = jvae.reconstruct(model, params, key, x, latent="mean")
    sampled = jvae.reconstruct(model, params, key, x, latent="sample")
    again = jvae.reconstruct(model, params, key, x, latent="sample")
    assert mean.shape == sampled.shape == x.shape
    assert not np.allclose(mean, sampled) and np.allclose(sampled, again)


def test_the_run_figure_shows_sampled_reconstructions(g2d_like_images, tmp_path):
    model, params, x = g2d_like_images
    data = jvae.runs.Datasets(train=np.asarray(x), eval=np.asarray(x), eval_labels=None)
    sizes = {}
    for which in ("mean", "sample", "both"):
        out = tmp_path / which
        out.mkdir()
        jvae.runs.write_figures(model, params, jax.random.key(0), data, [], out, tsne_points=0,
                                reconstructions=which)
        sizes[which] = plotting_height(out / "reconstructions.png")
    assert sizes["both"] > sizes["mean"] == sizes["sample"]      # a third row of images


def plotting_height(path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return im.size[1]


@pytest.fixture(scope="module")
def g2d_like_images():
    shape = (6, 6, 1)
    model = jvae.VAE(shape, jvae.StandardNormalPrior(2), jvae.MLP((8,), in_event_ndims=3),
                     jvae.DiagGaussianHead(2), jvae.MLP((8,)), jvae.BernoulliHead(shape))
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(16,) + shape), jnp.float32)
    return model, jvae.init_params(model, jax.random.key(1), x[:1]), x


# --------------------------------------------------------------------------------- figures


def test_latent_snapshot_panels_and_their_checks(tmp_path):
    r = np.random.default_rng(0)
    labels = r.integers(0, 10, 300)
    snaps = [(e, r.normal(size=(300, 2)) * (e + 1), np.abs(r.normal(size=(300, 2))) * 0.1)
             for e in range(3)]
    path = plotting.save_latent_snapshots(snaps, labels, tmp_path / "s.png", ncol=2)
    assert path.stat().st_size > 10_000
    plotting.save_latent_snapshots([(e, m, None) for e, m, _ in snaps], None,
                                   tmp_path / "dots.png")
    with pytest.raises(ValueError, match="at least one snapshot"):
        plotting.save_latent_snapshots([], labels, tmp_path / "x.png")
    with pytest.raises(ValueError, match="same points"):
        plotting.save_latent_snapshots([snaps[0], (1, snaps[1][1][:10], None)], None,
                                       tmp_path / "x.png")


def test_manifold_with_the_lectures_histogram_overlay(tmp_path):
    r = np.random.default_rng(1)
    codes = r.normal(size=(2000, 2))

    def decode(z):
        return np.broadcast_to((np.tanh(z[:, :1]) + 1) / 2, (len(z), 16)).reshape(-1, 4, 4)

    plotting.save_manifold(decode, codes, tmp_path / "h.png", num=8, density="histogram")
    plotting.save_manifold(decode, codes, tmp_path / "k.png", num=8)       # default: KDE
    with pytest.raises(ValueError, match="density must be 'kde' or 'histogram'"):
        plotting.save_manifold(decode, codes, tmp_path / "x.png", num=8, density="hist")
    with pytest.raises(ValueError, match="hist_range"):
        plotting.save_manifold(decode, codes, tmp_path / "x.png", num=8, density="histogram",
                               hist_range=(4, -4))


def test_histogram_contour_sits_at_the_bin_centres():
    """The overlay's level-1 contour encloses the bins holding codes, in latent coordinates:
    50 codes in the bin [0, 1]^2 (centre (0.5, 0.5)) give a contour around (0.5, 0.5),
    between that centre and its neighbours' (-0.5 and 1.5)."""
    from matplotlib.figure import Figure

    from jvae.plotting.latent_space import _histogram_contours

    ax = Figure().subplots()
    codes = np.full((50, 2), 0.5) + np.random.default_rng(2).uniform(-0.1, 0.1, (50, 2))
    handles = _histogram_contours(ax, codes, bins=8, hist_range=(-4, 4), counts=(1,))
    assert len(handles) == 1
    verts = np.concatenate([p.vertices for c in ax.collections for p in c.get_paths()])
    assert np.all(verts > -0.5) and np.all(verts < 1.5)
    np.testing.assert_allclose((verts.min(0) + verts.max(0)) / 2, [0.5, 0.5], atol=0.05)


def test_labelled_images(tmp_path):
    x = np.random.default_rng(0).uniform(size=(10, 28, 28))
    assert plotting.save_labelled_images(x, list(range(10)), tmp_path / "p.png").is_file()
    with pytest.raises(ValueError, match="3 labels for 10 images"):
        plotting.save_labelled_images(x, [1, 2, 3], tmp_path / "q.png")


def test_lines_runs_beside_reference_values(tmp_path):
    x = np.arange(1, 11)
    panels = {"test loss": [("relu + adam", x, 100 + 10 / x, np.ones(10)),
                            ("ref: the notebook's log", x, 101 + 10 / x)]}
    assert plotting.save_lines(panels, tmp_path / "l.png", ylabel="nats").is_file()
    with pytest.raises(ValueError, match="must have one shape"):
        plotting.save_lines({"p": [("a", x, x[:3])]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one panel"):
        plotting.save_lines({}, tmp_path / "x.png")


def test_compared_curves_of_two_runs(tmp_path):
    steps = [{"step": i, "train/rate": 5.0 / i, "train/elbo": -3.0} for i in range(1, 60)]
    epochs = [{"step": 20 * e, "eval/rate": 5.0 / (20 * e)} for e in (1, 2)]
    runs = {"a": (steps, epochs), "b": (steps[::2], None)}
    assert plotting.save_compared_curves(runs, tmp_path / "c.png", ("rate",)).is_file()
    with pytest.raises(ValueError, match="none of the metrics"):
        plotting.save_compared_curves(runs, tmp_path / "x.png", ("kl",))


def test_scatter_2d_takes_named_panels(tmp_path):
    r = np.random.default_rng(0)
    path = plotting.save_scatter_2d(tmp_path / "s.png", panels={"train": r.normal(size=(50, 2)),
                                                                "test": r.normal(size=(20, 2))})
    assert path.is_file()
