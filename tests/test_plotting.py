"""Tests for jvae.plotting: grid arithmetic and placement, PNG output, input validation."""

import matplotlib.axes
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from jvae import plotting
from jvae.plotting import curves, images
from jvae.plotting import (
    image_grid,
    save_curves,
    save_image_grid,
    save_interpolations,
    save_latent_scatter,
    save_reconstructions,
    save_scatter_2d,
)


def _constant_images(n, h, w, c=None):
    """Image k is filled with the grey level (k + 1) / (n + 1), distinct and never the pad value."""
    levels = (np.arange(n, dtype=np.float32) + 1) / (n + 1)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return np.broadcast_to(levels.reshape((n,) + (1,) * (len(shape) - 1)), shape).copy()


def _read_png(path):
    assert path.exists() and path.stat().st_size > 0
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[-1] in (3, 4) and img.shape[0] > 10 and img.shape[1] > 10
    return img[..., :3]


def _assert_has_content(img):
    """Not a blank page: several distinct colours, some dark pixels."""
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 3
    assert img.min() < 0.5


# ------------------------------------------------------------------------------------ image_grid


@pytest.mark.parametrize(
    "n,h,w,nrow,pad,expected",
    [
        (16, 28, 28, None, 2, (4 * 30 + 2, 4 * 30 + 2)),
        (10, 5, 7, None, 2, (3 * 7 + 2, 4 * 9 + 2)),  # ceil(sqrt(10)) = 4 per row, 3 rows
        (10, 5, 7, 3, 1, (4 * 6 + 1, 3 * 8 + 1)),
        (3, 4, 4, 8, 2, (1 * 6 + 2, 3 * 6 + 2)),  # fewer images than nrow: one row of 3
        (6, 4, 5, 6, 0, (4, 30)),
        (1, 4, 5, None, 3, (7 + 3, 8 + 3)),
    ],
)
def test_image_grid_shape(n, h, w, nrow, pad, expected):
    grey = image_grid(np.zeros((n, h, w)), nrow=nrow, pad=pad)
    assert grey.shape == expected and grey.dtype == np.float32
    assert image_grid(np.zeros((n, h, w, 1)), nrow=nrow, pad=pad).shape == expected
    assert image_grid(np.zeros((n, h, w, 3)), nrow=nrow, pad=pad).shape == expected + (3,)


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_image_grid_places_image_k_in_its_tile(channels):
    n, h, w, nrow, pad = 7, 3, 4, 3, 2
    images = _constant_images(n, h, w, channels)
    grid = image_grid(images, nrow=nrow, pad=pad, pad_value=1.0)
    for k in range(n):
        r, c = divmod(k, nrow)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        tile = grid[top : top + h, left : left + w]
        np.testing.assert_array_equal(tile, images[k] if channels != 1 else images[k, ..., 0])
    # Everything outside the image tiles (padding and the two empty trailing tiles) is pad_value.
    mask = np.ones(grid.shape[:2], bool)
    for k in range(n):
        r, c = divmod(k, nrow)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        mask[top : top + h, left : left + w] = False
    assert np.all(grid[mask] == 1.0)


def test_image_grid_pad_value_and_clipping():
    images = np.full((4, 2, 2), 0.5)
    images[0] = 3.0
    images[1] = -2.0
    grid = image_grid(images, nrow=2, pad=1, pad_value=0.25)
    assert grid[0, 0] == 0.25 and grid[-1, -1] == 0.25 and grid[3, 0] == 0.25
    assert grid[1, 1] == 1.0 and grid[1, 4] == 0.0 and grid[4, 1] == 0.5
    assert image_grid(np.full((2, 2, 2), 0.5), pad_value=7.0).max() == 1.0  # pad clipped too


def test_image_grid_uint8_is_scaled():
    grid = image_grid(np.full((1, 2, 2), 255, np.uint8), pad=0)
    np.testing.assert_allclose(grid, 1.0)


@pytest.mark.parametrize(
    "bad,kwargs",
    [
        (np.zeros((4, 4)), {}),  # no batch axis
        (np.zeros((2, 4, 4, 2)), {}),  # 2 channels
        (np.zeros((2, 4, 4, 4)), {}),  # RGBA
        (np.zeros((1, 2, 4, 4, 1)), {}),  # rank 5
        (np.zeros((0, 4, 4)), {}),  # empty
        (np.zeros((2, 4, 4)), {"nrow": 0}),
        (np.zeros((2, 4, 4)), {"pad": -1}),
    ],
)
def test_image_grid_rejects_bad_input(bad, kwargs):
    with pytest.raises(ValueError):
        image_grid(bad, **kwargs)


# ------------------------------------------------------------------------ image files from grids


def test_save_image_grid_grey_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey = save_image_grid(rng.uniform(size=(16, 28, 28)), tmp_path / "nested" / "dir" / "g.png", title="samples")
    img = _read_png(grey)
    _assert_has_content(img)
    np.testing.assert_allclose(img[..., 0], img[..., 2], atol=1e-6)  # grey levels only

    colour = rng.uniform(size=(9, 8, 8, 3)).astype(np.float32)
    colour[..., 1:] = 0.0  # red images on white padding
    img = _read_png(save_image_grid(colour, tmp_path / "rgb.png", nrow=3))
    assert np.any(img[..., 0] - img[..., 1] > 0.3)


def test_reconstruction_grid_puts_observations_above_reconstructions():
    n_img, h, w, n, pad = 11, 3, 3, 4, 2
    x = _constant_images(n_img, h, w)
    y = 1.0 - x
    grid = images._reconstruction_grid(x, y, n=n)
    blocks = 3  # ceil(11 / 4)
    assert grid.shape == (2 * blocks * (h + pad) + pad, n * (w + pad) + pad)
    for k in range(n_img):
        b, c = divmod(k, n)
        left = pad + c * (w + pad)
        top_obs = pad + (2 * b) * (h + pad)
        top_rec = top_obs + h + pad
        np.testing.assert_array_equal(grid[top_obs : top_obs + h, left : left + w], x[k])
        np.testing.assert_array_equal(grid[top_rec : top_rec + h, left : left + w], y[k])
    # the last block's missing tiles are blank (white)
    last_top = pad + 4 * (h + pad)
    assert np.all(grid[last_top:, pad + 3 * (w + pad) :] == 1.0)


def test_reconstruction_grid_fewer_images_than_n():
    grid = images._reconstruction_grid(np.zeros((3, 2, 2)), np.zeros((3, 2, 2)), n=8)
    assert grid.shape == (2 * 4 + 2, 3 * 4 + 2)


def _spy_savefig(monkeypatch):
    """Records every figure just before it is saved (texts and axes are final then)."""
    figures = []
    orig = Figure.savefig

    def spy(self, *a, **k):
        figures.append(self)
        self.canvas.draw()  # lay out so that text extents are real
        return orig(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def test_save_reconstructions(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(13, 28, 28, 1))
    figures = _spy_savefig(monkeypatch)
    path = save_reconstructions(x, np.clip(x + 0.1, 0, 1), tmp_path / "rec.png", n=5)
    _assert_has_content(_read_png(path))
    (fig,) = figures
    texts = [t.get_text() for t in fig.texts]
    # default title, then one label per tile row: 3 blocks of (data, reconstruction)
    assert texts[-1] == "data and their reconstructions"
    assert texts[:-1] == ["data", "reconstruction"] * 3
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    image_box = ax.get_window_extent(renderer)
    labels = fig.texts[:-1]
    for k, label in enumerate(labels):
        box = label.get_window_extent(renderer)
        assert box.x1 <= image_box.x0 and box.x0 >= 0  # in the left margin, not cut off
        # centred on tile row k: rows are 28 px + 2 px padding, drawn at an integer zoom
        zoom = image_box.height / (6 * 30 + 2)
        centre_from_top = (2 + k * 30 + 14) * zoom
        assert abs((image_box.y1 - centre_from_top) - 0.5 * (box.y0 + box.y1)) < 2
    title_box = fig.texts[-1].get_window_extent(renderer)
    assert title_box.y0 >= image_box.y1  # above the images


def test_save_reconstructions_custom_and_no_labels(tmp_path, monkeypatch):
    x = np.random.default_rng(4).uniform(size=(4, 8, 8))
    figures = _spy_savefig(monkeypatch)
    save_reconstructions(x, x, tmp_path / "a.png", n=8, title="t", row_labels=("x", "x_hat"))
    save_reconstructions(x, x, tmp_path / "b.png", title=None, row_labels=None)
    assert [t.get_text() for t in figures[0].texts] == ["x", "x_hat", "t"]
    assert figures[1].texts == []
    (ax,) = figures[1].axes
    assert ax.get_position().x0 == 0.0  # no label margin without labels
    with pytest.raises(ValueError, match="row_labels"):
        save_reconstructions(x, x, tmp_path / "c.png", row_labels="data")


def test_save_reconstructions_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        save_reconstructions(np.zeros((4, 8, 8)), np.zeros((4, 8, 7)), "unused.png")
    with pytest.raises(ValueError):
        save_reconstructions(np.zeros((4, 8, 8)), np.zeros((4, 8, 8)), "unused.png", n=0)


def test_save_interpolations(tmp_path):
    t = np.linspace(0.0, 1.0, 7)
    rows = np.stack([np.broadcast_to(t[:, None, None], (7, 6, 6)) * s for s in (1.0, 0.5, 0.25)])
    img = _read_png(save_interpolations(rows, tmp_path / "interp.png"))
    _assert_has_content(img)
    img_rgb = _read_png(save_interpolations(np.stack([rows] * 3, axis=-1), tmp_path / "interp_rgb.png", title="t"))
    _assert_has_content(img_rgb)
    with pytest.raises(ValueError):
        save_interpolations(np.zeros((7, 6, 6)), tmp_path / "bad.png")
    with pytest.raises(ValueError):
        save_interpolations(np.zeros((2, 7, 6, 6, 2)), tmp_path / "bad.png")


# ---------------------------------------------------------------------------------------- curves


def _lines(ax):
    return {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in ax.get_lines()}


TRAIN, EVAL = "train (mean over the epoch)", "eval (end of epoch)"


def test_save_curves_overlays_train_and_eval(tmp_path, monkeypatch):
    history = [
        {"epoch": e, "train/loss": 200.0 / e, "train/elbo": -200.0 / e, "eval/elbo": -210.0 / e,
         "train/rate": 20.0 + e, "eval/rate": 21.0 + e}
        for e in range(1, 6)
    ]
    history[2].pop("eval/elbo")  # a missing value in the middle is skipped
    figures = _spy_savefig(monkeypatch)
    path = save_curves(history, tmp_path / "curves.png")  # no distortion: 2 panels
    _assert_has_content(_read_png(path))
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["ELBO", "rate R"]
    assert all(ax.get_ylabel() == "nats per example" and ax.get_xlabel() == "epoch" for ax in axes)
    elbo = _lines(axes[0])
    assert set(elbo) == {TRAIN, EVAL}  # train and eval ELBO on the same axes
    np.testing.assert_array_equal(elbo[TRAIN][0], [1, 2, 3, 4, 5])
    np.testing.assert_allclose(elbo[TRAIN][1], [-200.0 / e for e in range(1, 6)])
    np.testing.assert_array_equal(elbo[EVAL][0], [1, 2, 4, 5])
    np.testing.assert_allclose(elbo[EVAL][1], [-210.0, -105.0, -52.5, -42.0])
    rate = _lines(axes[1])
    np.testing.assert_allclose(rate[EVAL][1], [22.0, 23.0, 24.0, 25.0, 26.0])
    # each split keeps its colour in every panel; one legend names them
    for label in (TRAIN, EVAL):
        colours = {line.get_color() for ax in axes for line in ax.get_lines() if line.get_label() == label}
        assert len(colours) == 1
    assert axes[0].get_legend() is not None and axes[1].get_legend() is None
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert legend == [TRAIN, EVAL]


def test_save_curves_falls_back_to_train_loss(tmp_path, monkeypatch):
    history = [{"epoch": e, "train/loss": 10.0 - e, "eval/elbo": -9.0 + e} for e in range(1, 4)]
    figures = _spy_savefig(monkeypatch)
    save_curves(history, tmp_path / "c.png", title="a run")
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["ELBO", "loss (negative bound)"]
    np.testing.assert_allclose(_lines(axes[1])[TRAIN][1], [9.0, 8.0, 7.0])
    assert set(_lines(axes[0])) == {EVAL}
    assert fig._suptitle.get_text() == "a run"
    # both panels introduce a split, so both carry a legend; colours differ by split
    assert axes[0].get_legend() is not None and axes[1].get_legend() is not None
    assert axes[0].get_lines()[0].get_color() != axes[1].get_lines()[0].get_color()


def test_save_curves_per_seed_lists(tmp_path, monkeypatch):
    seeds = np.array([[100.0, 110.0, 120.0], [90.0, 95.0, 100.0], [85.0, 85.0, 85.0]])
    history = [{"epoch": e + 1, "train/loss": list(seeds[e]), "eval/elbo": list(-seeds[e])} for e in range(3)]
    x, mean, std = curves._curve_stats(history, "train/loss", "epoch")
    np.testing.assert_array_equal(x, [1, 2, 3])
    np.testing.assert_allclose(mean, seeds.mean(1))
    np.testing.assert_allclose(std, seeds.std(1))
    bands = []
    orig = matplotlib.axes.Axes.fill_between
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "fill_between",
        lambda self, x, lo, hi, **k: bands.append((np.asarray(lo), np.asarray(hi))) or orig(self, x, lo, hi, **k),
    )
    path = save_curves(history, tmp_path / "seeds.png", keys=("train/loss", "eval/elbo"))
    _assert_has_content(_read_png(path))
    assert len(bands) == 2
    np.testing.assert_allclose(bands[0][0], seeds.mean(1) - seeds.std(1))
    np.testing.assert_allclose(bands[0][1], seeds.mean(1) + seeds.std(1))


def test_save_curves_without_x_key_and_single_key(tmp_path, monkeypatch):
    figures = _spy_savefig(monkeypatch)
    path = save_curves([{"loss": 3.0}, {"loss": 2.0}], tmp_path / "c.png", keys="loss", units=None)
    assert path.stat().st_size > 0
    (ax,) = [ax for ax in figures[0].axes if ax.get_visible()]
    assert ax.get_ylabel() == "" and ax.get_legend() is None  # no split, no legend
    np.testing.assert_allclose(_lines(ax)["loss"][1], [3.0, 2.0])
    np.testing.assert_array_equal(curves._curve_stats([{"loss": 3.0}, {"loss": 2.0}], "loss", "epoch")[0], [1, 2])


@pytest.mark.parametrize("history", [[], [{"epoch": 1, "other": 1.0}], {"train/loss": 1.0}, [1.0, 2.0]])
def test_save_curves_rejects_bad_history(tmp_path, history):
    with pytest.raises(ValueError):
        save_curves(history, tmp_path / "bad.png")


# -------------------------------------------------------------------------------------- scatters


def test_save_scatter_2d_shared_limits(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    data = rng.normal(size=(500, 2))
    samples = rng.normal(size=(300, 2)) * 2.0 + 5.0
    means = rng.normal(size=(200, 2)) * 0.1
    limits = []
    orig = Figure.savefig

    def spy(self, *a, **k):  # record the final limits of every panel as drawn
        limits.extend((ax.get_xlim(), ax.get_ylim()) for ax in self.axes)
        return orig(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", spy)
    path = save_scatter_2d(tmp_path / "s.png", data=data, samples=samples, means=means, title="2-D VAE")
    _assert_has_content(_read_png(path))
    assert len(limits) == 3 and limits[0] == limits[1] == limits[2]
    limits = [lim[0] for lim in limits]
    all_x = np.concatenate([data[:, 0], samples[:, 0], means[:, 0]])
    assert limits[0][0] < all_x.min() and limits[0][1] > all_x.max()
    # any subset works
    assert save_scatter_2d(tmp_path / "only_samples.png", samples=samples).stat().st_size > 0


def test_save_scatter_2d_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        save_scatter_2d(tmp_path / "s.png")
    with pytest.raises(ValueError):
        save_scatter_2d(tmp_path / "s.png", data=np.zeros((10, 3)))


@pytest.mark.parametrize("kind", ["int", "none", "float"])
def test_save_latent_scatter(tmp_path, kind):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(400, 2))
    labels = {"int": rng.integers(0, 10, 400), "none": None, "float": rng.uniform(size=400)}[kind]
    img = _read_png(save_latent_scatter(z, labels, tmp_path / f"lat_{kind}.png", title="latents"))
    _assert_has_content(img)
    if kind != "none":  # coloured points: some strongly non-grey pixels
        assert np.any(img.max(-1) - img.min(-1) > 0.3)


def test_save_latent_scatter_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        save_latent_scatter(np.zeros((10, 3)), None, tmp_path / "l.png")
    with pytest.raises(ValueError):
        save_latent_scatter(np.zeros((10, 2)), np.zeros(9), tmp_path / "l.png")


def test_no_figures_left_open(tmp_path):
    before = plt.get_fignums()
    save_image_grid(np.zeros((4, 4, 4)), tmp_path / "a.png")
    save_curves([{"epoch": 1, "train/loss": 1.0}], tmp_path / "b.png")
    save_latent_scatter(np.zeros((5, 2)), None, tmp_path / "c.png")
    assert plt.get_fignums() == before
