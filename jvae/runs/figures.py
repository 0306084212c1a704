"""The figures of a run: the standard set written when training ends (:func:`write_figures`)
and Lab 5's per-epoch snapshots (:func:`write_snapshots`). Each sampling step is one
compiled program; the drawing is :mod:`jvae.plotting`'s."""

from __future__ import annotations

import functools
import pathlib
from typing import Any, Callable

import jax
import numpy as np

from jvae import plotting
from jvae.data import uncentre
from jvae.evaluation import (conditional_observations, interpolate_latents, prior_observations,
                             prior_samples_with_components, tsne_map)
from jvae.models.autoencoder import PointHead
from jvae.models.vae import VAE, reconstruct, sample_prior
from jvae.runs import builders, steplog

__all__ = ["write_figures", "write_snapshots"]


def write_figures(model: VAE, params: Any, key: jax.Array, datasets: builders.Datasets,
                  history: list[dict], workdir: pathlib.Path, *,
                  tsne_points: int = 1000, centred: bool = False) -> list[pathlib.Path]:
    """Write the standard figures of a run into ``workdir``; returns their paths.

    Images (grey or RGB as the data; with ``centred``, data in [-1, 1] from
    ``dataset.centre``, every image is mapped back to [0, 1] for display, as Homework 2's
    ``* 0.5 + 0.5``): ``samples.png`` (decoder means of 64 prior draws; not for an
    autoencoder), ``reconstructions.png``
    (evaluation images above their reconstructions), ``interpolations.png`` (Homework 2's:
    decoder means along ``z1 (1 - a) + z2 a`` for 10 values of ``a`` in [0, 1], between the
    posterior means of evaluation images ``i`` and ``i + P``, one pair per row,
    :func:`jvae.evaluation.inspection.interpolate_latents`), ``latents.png`` (posterior means of the
    evaluation set, first two coordinates, coloured by label). 2-D data:
    ``samples_2d.png`` (data, samples with and without decoder noise). Both:
    ``curves.png`` (train loss, eval ELBO, distortion, rate per epoch; for a multi-seed run the
    mean with a band of one standard deviation across seeds, the other figures from the
    first seed). Latents of more than 2 dimensions: ``latents_tsne.png`` (a t-SNE map,
    :func:`jvae.evaluation.embedding.tsne`, of the posterior means of the first ``tsne_points`` evaluation
    examples; 0: none).

    From the step logs (:mod:`jvae.runs.steplog`): ``steps.png`` (every step's training ELBO, D,
    R and control-variate loss) and ``dev.png`` (the dev assessments). The DPM2 notebook's
    ``inspect_lvm`` for images: ``prior_oversampled.png`` (16 draws ``z ~ p(z)``, 4
    observations ``x ~ p(x|z)`` each) and ``conditional_samples.png`` (evaluation images
    above ``x' ~ p(x|z), z ~ q(z|x)``); for a mixture prior ``prior_histograms.png``,
    ``prior_pairs.png`` and ``prior_tsne.png`` (prior samples by component).
    """
    k_mean, k_sample, k_rec = jax.random.split(key, 3)
    paths = []
    evals = np.asarray(datasets.eval)
    if history:
        paths.append(plotting.save_curves(history, workdir / "curves.png"))
    autoencoder = isinstance(model.posterior, PointHead)   # no prior to sample from
    shown = uncentre if centred else (lambda a: a)
    if len(model.data_shape) == 3:
        if not autoencoder:
            _, means = _compiled(sample_prior, model, params, k_mean, num=64, mode="mean")
            paths.append(plotting.save_image_grid(shown(np.asarray(means)),
                                                  workdir / "samples.png", nrow=8,
                                                  title="prior samples (decoder means)"))
        originals = evals[:32]
        recons = _compiled(reconstruct, model, params, k_rec, originals, mode="mean",
                           validate=False)
        paths.append(plotting.save_reconstructions(shown(originals), shown(np.asarray(recons)),
                                                   workdir / "reconstructions.png", n=8))
        pairs = min(10, len(evals) // 2)
        if pairs:
            path = np.asarray(_compiled(interpolate_latents, model, params, evals[:pairs],
                                        evals[pairs:2 * pairs], num=10, validate=False))
            paths.append(plotting.save_interpolations(
                shown(path), workdir / "interpolations.png",
                title="decoded z1 (1 - a) + z2 a, a = 0 ... 1 (left to right)"))
    elif not autoencoder:
        n = min(len(evals), 3000)
        _, samples = _compiled(sample_prior, model, params, k_sample, num=n, mode="sample")
        _, means = _compiled(sample_prior, model, params, k_sample, num=n, mode="mean")
        paths.append(plotting.save_scatter_2d(workdir / "samples_2d.png", data=evals[:n],
                                              samples=np.asarray(samples),
                                              means=np.asarray(means)))
    latents = np.asarray(_compiled(_posterior_means, model, params, evals[:2000]))
    if latents.shape[-1] >= 2:
        labels = None if datasets.eval_labels is None else datasets.eval_labels[:2000]
        paths.append(plotting.save_latent_scatter(latents[:, :2], labels,
                                                  workdir / "latents.png",
                                                  title=("codes" if autoencoder else
                                                         "posterior means")
                                                  + " (first 2 dims)"))
    paths += _step_and_inspection_figures(model, params, key, evals, workdir, autoencoder,
                                          tsne_points, shown)
    if latents.shape[-1] > 2 and tsne_points > 0 and len(latents) > 31:
        n = min(int(tsne_points), len(latents))
        labels = None if datasets.eval_labels is None else datasets.eval_labels[:n]
        m = tsne_map(latents[:n], labels, max_points=n, perplexity=min(30.0, (n - 2) / 3.0))
        paths.append(plotting.save_latent_tsne(
            m.embedding, m.labels, workdir / "latents_tsne.png", total=m.total,
            perplexity=m.perplexity,
            title=f"t-SNE of the {latents.shape[-1]}-D "
                  + ("codes" if autoencoder else "posterior means")))
    return paths


def write_snapshots(model: VAE, params: Any, key: jax.Array, datasets: builders.Datasets,
                    workdir: pathlib.Path, epoch: int, *,
                    centred: bool = False) -> list[pathlib.Path]:
    """Lab 5's per-epoch images (the PyTorch example's ``save_image`` calls), in
    ``workdir/snapshots``: ``reconstruction_{epoch}.png`` (the first 8 evaluation images above
    their reconstructions: decoder means of one posterior sample) and ``sample_{epoch}.png``
    (decoder means of 64 prior draws, 8 x 8). Plain 8-bit image grids (2 px padding), grey or
    RGB as the data, no axes; ``centred`` data (``dataset.centre``) are mapped back to
    [0, 1] first; nothing for data that are not images or for an autoencoder (no prior)."""
    if len(model.data_shape) != 3 or isinstance(model.posterior, PointHead):
        return []
    from PIL import Image   # Pillow: a dependency of matplotlib

    k_rec, k_sample = jax.random.split(key)
    originals = np.asarray(datasets.eval[:8])
    recons = np.asarray(reconstruct(model, params, k_rec, originals, mode="mean",
                                    latent="sample"))
    _, means = sample_prior(model, params, k_sample, 64, mode="mean")
    out = workdir / "snapshots"
    out.mkdir(exist_ok=True)
    paths = [out / f"reconstruction_{epoch}.png", out / f"sample_{epoch}.png"]
    shown = uncentre if centred else (lambda a: a)
    grids = [plotting.image_grid(shown(np.concatenate([originals, recons])), nrow=8),
             plotting.image_grid(shown(np.asarray(means)), nrow=8)]
    for path, grid in zip(paths, grids):   # 8-bit, rounded as torchvision's save_image
        Image.fromarray(np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8),
                        "L" if grid.ndim == 2 else "RGB").save(path)
    return paths


def _compiled(fn: Callable, model: VAE, *args, **static):
    """``fn(model, *args, **static)`` as one compiled program. Run eagerly, the figures'
    sampling compiled every primitive on its own (some 120 small programs for one run);
    ``static`` holds the integer, string and boolean arguments."""
    return _jitted(fn, model, tuple(sorted(static.items())))(*args)


@functools.lru_cache(maxsize=64)
def _jitted(fn: Callable, model: VAE, static: tuple) -> Callable:
    # Flax modules hash by value: runs of one model reuse the compiled programs.
    return jax.jit(functools.partial(fn, model, **dict(static)))


def _posterior_means(model: VAE, params: Any, x: jax.Array) -> jax.Array:
    return model.apply(params, x, method=VAE.encode).mean()


def _step_and_inspection_figures(model, params, key, evals, workdir: pathlib.Path,
                                 autoencoder: bool, tsne_points: int,
                                 shown: Callable = lambda a: a) -> list[pathlib.Path]:
    """The step-log figures and the DPM2 notebook's inspection figures (see write_figures);
    their keys are folded from ``key`` so the older figures keep theirs."""
    paths = []
    steps = steplog.read_jsonl(workdir / steplog.STEPS_FILE)
    if steps:
        paths.append(plotting.save_step_curves(steps, workdir / "steps.png"))
    dev = steplog.read_jsonl(workdir / steplog.DEV_FILE)
    if dev:
        paths.append(plotting.save_dev_curves(dev, workdir / "dev.png"))
    if autoencoder:
        return paths
    k_prior, k_cond, k_mix = (jax.random.fold_in(key, 100 + i) for i in range(3))
    if len(model.data_shape) == 3:
        _, obs = _compiled(prior_observations, model, params, k_prior, num=16, oversample=4)
        paths.append(plotting.save_oversampled(shown(np.asarray(obs)),
                                               workdir / "prior_oversampled.png"))
        x = evals[:16]
        cond = _compiled(conditional_observations, model, params, k_cond, x, oversample=4,
                         validate=False)
        paths.append(plotting.save_conditional_samples(shown(x), shown(np.asarray(cond)),
                                                       workdir / "conditional_samples.png"))
    z, components = _compiled(prior_samples_with_components, model, params, k_mix, num=5000)
    if components is not None:
        z, components = np.asarray(z), np.asarray(components)
        paths.append(plotting.save_prior_histograms(z, components,
                                                    workdir / "prior_histograms.png"))
        paths.append(plotting.save_prior_pairs(z, components, workdir / "prior_pairs.png"))
        if tsne_points > 31 and z.shape[-1] > 2:
            m = tsne_map(z, components, max_points=min(int(tsne_points), len(z)))
            paths.append(plotting.save_prior_tsne(
                m.embedding, m.labels, workdir / "prior_tsne.png", total=m.total,
                perplexity=m.perplexity,
                title=f"t-SNE of {z.shape[1]}-D prior samples, coloured by mixture component"))
    return paths
