"""Lab 5's Pyro VAE: the ``pyro_vae`` config, its per-epoch snapshots, and the Pyro reference
(the same model: jvae's ELBO of the Pyro module's weights equals Pyro's)."""

import pathlib
import runpy

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest

from jvae.runs import builders
from jvae.runs import train_and_evaluate, write_snapshots

from experiments import pyro_reference

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(variant=""):
    return runpy.run_path(str(ROOT / "experiments/configs/pyro_vae.py"))["get_config"](variant)


def test_config_is_the_tutorials_model():
    c = _config()
    assert (c.latent_dim, tuple(c.model.encoder_hidden), tuple(c.model.decoder_hidden)) == (
        50, (400,), (400,))
    assert (c.model.activation, c.model.posterior_scale, c.model.init) == (
        "softplus", "log_std", "torch")
    assert (c.objective.kl, c.batch_size, c.learning_rate, c.num_epochs, c.eval.every) == (
        "mc", 128, 1e-3, 100, 5)
    assert c.dataset.binarize == "none" and c.eval.snapshot_every == 0
    assert _config("kl=analytic").objective.kl == "analytic"
    with pytest.raises(ValueError, match="Unknown value 'exact'.*'mc', 'analytic'"):
        _config("kl=exact")
    with pytest.raises(ValueError, match="Unknown pyro_vae variant key 'k'"):
        _config("k=mc")


def _tiny(c):
    c.latent_dim, c.model.encoder_hidden, c.model.decoder_hidden = 4, (16,), (16,)
    return c


def test_write_snapshots_draws_lab5s_grids(tmp_path):
    """reconstruction_{epoch}.png: 8 evaluation images above their reconstructions;
    sample_{epoch}.png: 8 x 8 prior samples (image_grid tiles of 28 + 2 px padding)."""
    model = builders.build_model(_tiny(_config()), (28, 28, 1))
    evals = np.random.default_rng(0).uniform(size=(10, 28, 28, 1)).astype(np.float32)
    params = model.init(jax.random.key(0), evals[:1])
    data = builders.Datasets(evals, evals, None)
    paths = write_snapshots(model, params, jax.random.key(1), data, tmp_path, 7)
    assert [p.name for p in paths] == ["reconstruction_7.png", "sample_7.png"]
    rec, sample = (mpimg.imread(p) for p in paths)
    assert rec.shape[:2] == (2 * 30 + 2, 8 * 30 + 2)
    assert sample.shape[:2] == (8 * 30 + 2, 8 * 30 + 2)
    for k in range(8):          # the top row is the evaluation images themselves
        tile = rec[2:30, 2 + 30 * k:30 + 30 * k]
        np.testing.assert_allclose(tile, evals[k, :, :, 0], atol=0.5 / 255 + 1e-6)
    assert rec.ndim == 2 and np.ptp(sample[2:30, 2:30]) > 0


def test_snapshots_are_written_every_epoch(tmp_path, jvae_data_dir):
    c = _tiny(_config())
    c.num_epochs, c.eval.every, c.checkpoint_every, c.figures = 2, 2, 0, False
    c.dataset.limit_train, c.dataset.limit_eval, c.eval.batch_size = 256, 64, 64
    c.eval.snapshot_every = 1
    train_and_evaluate(c, tmp_path, progress=False)
    names = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert names == ["reconstruction_1.png", "reconstruction_2.png", "sample_1.png",
                     "sample_2.png"]


def test_pyro_reference_is_the_same_model():
    """Pyro's TraceMeanField_ELBO loss of the tutorial's module equals jvae's negative ELBO
    (analytic KL) with its weights, within the Monte Carlo error of 64 samples per image."""
    pytest.importorskip("pyro", reason="Pyro is an optional extra: pip install 'jvae[pyro]'")
    import torch
    from pyro.infer import TraceMeanField_ELBO

    from jvae.objectives import make_elbo_loss

    x = np.random.default_rng(0).uniform(size=(32, 784)).astype(np.float32) ** 3
    run = pyro_reference.PyroVAERun(x, batch_size=32, seed=0, kl="analytic", num_threads=1)
    model = builders.build_model(_config("kl=analytic"), (28, 28, 1))
    params = jax.tree.map(jnp.asarray, pyro_reference.pyro_to_jvae_params(run.vae))
    s = 64
    elbo = TraceMeanField_ELBO(num_particles=s, vectorize_particles=True)
    with torch.no_grad():
        pyro_loss = elbo.loss(run.vae.model, run.vae.guide, torch.from_numpy(x)) / len(x)
    loss_fn = make_elbo_loss(model, num_samples=1, kl="analytic")
    keys = jax.random.split(jax.random.key(0), s)
    ours = np.asarray(jax.vmap(lambda k: loss_fn(params, k, x.reshape(-1, 28, 28, 1))[0])(keys))
    se = ours.std() / np.sqrt(s)
    assert abs(pyro_loss - ours.mean()) < 4 * np.sqrt(2) * se + 0.05, (pyro_loss, ours.mean(), se)
    # The training loop runs and reports a finite loss.
    seconds, train_loss = run.train_epoch()
    assert seconds > 0 and np.isfinite(train_loss)
