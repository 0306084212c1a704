"""The figures of a run: the standard set written when training ends (:func:`write_figures`),
Lab 5's per-epoch snapshots (:func:`write_snapshots`) and the lecture's per-epoch latent
space (:func:`write_latent_snapshot`, :func:`read_latent_snapshots`). Each sampling step is
one compiled program; the drawing is :mod:`jvae.plotting`'s."""

from __future__ import annotations

import functools
import logging
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from jvae import plotting
from jvae.data import uncentre
from jvae.evaluation import (conditional_observations, interpolate_latents, posterior_stats,
                             prior_observations, prior_samples_with_components,
                             rate_per_dimension, tsne_map)
from jvae.models.autoencoder import PointHead
from jvae.models.vae import VAE, reconstruct, sample_prior
from jvae.runs import builders, steplog

__all__ = ["write_figures", "write_snapshots", "write_latent_snapshot", "read_latent_snapshots",
           "LATENT_SNAPSHOTS", "ACTIVE_UNITS"]

#: The directory (inside a run's) of the lecture's per-epoch latent snapshots.
LATENT_SNAPSHOTS = "snapshots"

#: The active-unit threshold of ``latent_kl.png``: a dimension is drawn active when its rate
#: is at least this many nats; the same number is Burda et al.'s (2016) threshold on
#: ``Cov_x E_q[z_d]``, whose count the figure's title gives.
ACTIVE_UNITS = 0.01

_LOG = logging.getLogger(__name__)


def write_figures(model: VAE, params: Any, key: jax.Array, datasets: builders.Datasets,
                  history: list[dict], workdir: pathlib.Path, *,
                  tsne_points: int = 1000, centred: bool = False,
                  reconstructions: str = "mean", run: str | None = None,
                  train_split: str = "train", eval_split: str = "eval") -> list[pathlib.Path]:
    """Write the standard figures of a run into ``workdir``; returns their paths.

    Every figure's title names the run (``run``; default the name of ``workdir``) and the
    split it shows: ``eval_split`` for what is drawn from the evaluation data,
    ``train_split`` for the training steps and for what the trained model draws on its own
    (prior samples), the dev split for the dev assessments.

    Images (grey or RGB as the data; with ``centred``, data in [-1, 1] from
    ``dataset.centre``, every image is mapped back to [0, 1] for display, as Homework 2's
    ``* 0.5 + 0.5``): ``samples.png`` (decoder means of 64 prior draws; not for an
    autoencoder), ``reconstructions.png``
    (evaluation images above their reconstructions: decoder means of the posterior mean with
    ``reconstructions="mean"``, of one posterior sample with ``"sample"`` (the PyTorch
    example's ``recon_batch`` and Pyro's ``reconstruct_img``), both rows with ``"both"``), ``interpolations.png`` (Homework 2's:
    decoder means along ``z1 (1 - a) + z2 a`` for 10 values of ``a`` in [0, 1], between the
    posterior means of evaluation images ``i`` and ``i + P``, one pair per row,
    :func:`jvae.evaluation.inspection.interpolate_latents`). 2-D data:
    ``samples_2d.png`` (data, samples with and without decoder noise). Both:
    ``curves.png`` (train loss, eval ELBO, distortion, rate per epoch; for a multi-seed run the
    mean with a band of one standard deviation across seeds, the other figures from the
    first seed). With latent snapshots in the run (``config.eval.latent_snapshot_every``):
    ``latent_snapshots.png``, one panel per snapshot (:func:`read_latent_snapshots`).

    The latent space: with 2 dimensions, ``latents.png`` (posterior means of the first 2000
    evaluation examples, coloured by label). With more than 2 (a scatter of two of them would
    show a shapeless cloud): ``latents_tsne.png`` (a t-SNE map,
    :func:`jvae.evaluation.embedding.tsne`, of the posterior means of the first
    ``tsne_points`` evaluation examples; 0: none) and, for a VAE, ``latent_kl.png``: the rate
    of each dimension, ``mean_x KL(q(z_d|x) || p(z_d))`` over the whole evaluation split
    (:func:`jvae.evaluation.rate_per_dimension`: closed form for Gaussians, a Monte Carlo
    estimate for mixtures), as bars with the active-unit threshold of 0.01 nats marked; its
    title also counts Burda et al.'s (2016) active units, ``Cov_x E_q[z_d] > 0.01``. A
    posterior or prior without per-dimension marginals (a flow) gets no ``latent_kl.png``;
    a warning says why.

    From the step logs (:mod:`jvae.runs.steplog`): ``steps.png`` (every step's training ELBO, D,
    R and control-variate loss) and ``dev.png`` (the dev assessments). The DPM2 notebook's
    ``inspect_lvm`` for images: ``prior_oversampled.png`` (16 draws ``z ~ p(z)``, 4
    observations ``x ~ p(x|z)`` each) and ``conditional_samples.png`` (evaluation images
    above ``x' ~ p(x|z), z ~ q(z|x)``); for a mixture prior ``prior_histograms.png``,
    ``prior_pairs.png`` and ``prior_tsne.png`` (prior samples by component). Image grids are
    at least 1000 pixels wide (:func:`jvae.plotting.grid_zoom`).
    """
    k_mean, k_sample, k_rec = jax.random.split(key, 3)
    paths = []
    evals = np.asarray(datasets.eval)
    run = str(run) if run else pathlib.Path(workdir).resolve().name
    on = _Titles(run, train_split, eval_split,
                 None if datasets.dev is None else len(datasets.dev))
    if history:
        paths.append(plotting.save_curves(history, workdir / "curves.png", title=on.curves,
                                          split_names={"train": train_split,
                                                       "eval": eval_split}))
    autoencoder = isinstance(model.posterior, PointHead)   # no prior to sample from
    shown = uncentre if centred else (lambda a: a)
    if len(model.data_shape) == 3:
        if not autoencoder:
            _, means = _compiled(sample_prior, model, params, k_mean, num=64, mode="mean")
            paths.append(plotting.save_image_grid(shown(np.asarray(means)),
                                                  workdir / "samples.png", nrow=8,
                                                  title=on.model("prior samples (decoder "
                                                                 "means)")))
        paths.append(_reconstructions(model, params, k_rec, evals[:32], workdir, shown,
                                      "mean" if autoencoder else reconstructions, on))
        pairs = min(10, len(evals) // 2)
        if pairs:
            path = np.asarray(_compiled(interpolate_latents, model, params, evals[:pairs],
                                        evals[pairs:2 * pairs], num=10, validate=False))
            paths.append(plotting.save_interpolations(
                shown(path), workdir / "interpolations.png",
                title=on.eval("decoded z1 (1 - a) + z2 a, a = 0 ... 1 (left to right)")))
    elif not autoencoder and tuple(model.data_shape) == (2,):   # 2-D points only
        n = min(len(evals), 3000)
        _, samples = _compiled(sample_prior, model, params, k_sample, num=n, mode="sample")
        _, means = _compiled(sample_prior, model, params, k_sample, num=n, mode="mean")
        paths.append(plotting.save_scatter_2d(workdir / "samples_2d.png", data=evals[:n],
                                              samples=np.asarray(samples),
                                              means=np.asarray(means),
                                              title=on.model(f"the {eval_split} split's "
                                                             "data beside the model's "
                                                             "samples")))
    paths += _latent_figures(model, params, key, datasets, workdir, autoencoder,
                             tsne_points, on)
    paths += _step_and_inspection_figures(model, params, key, evals, workdir, autoencoder,
                                          tsne_points, shown, on)
    snapshots, snap_labels = read_latent_snapshots(workdir)
    if snapshots:
        what = "codes" if autoencoder else "posterior means (+-1 sd)"
        paths.append(plotting.save_latent_snapshots(
            [(e, m[:, :2], None if autoencoder else s[:, :2]) for e, m, s in snapshots],
            snap_labels, workdir / "latent_snapshots.png",
            title=on.eval(f"{what} of all {len(snapshots[0][1])} evaluation points, "
                          "epoch by epoch")))
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


def write_latent_snapshot(model: VAE, params: Any, datasets: builders.Datasets,
                          workdir: pathlib.Path, epoch: int, *,
                          batch_size: int = 1000) -> list[pathlib.Path]:
    """The lecture's latent space "on the fly" for one epoch, in ``workdir/snapshots``.

    The posterior means and standard deviations of *every* evaluation example
    (:func:`jvae.evaluation.posterior_stats`; an autoencoder's codes with zero deviations)
    go to ``latents_{epoch}.npz`` (``mean``, ``std`` ``[N, D]`` float32 and ``labels`` when
    the data have them) and are drawn in ``latents_{epoch}.png`` (first two coordinates;
    error bars of +-1 standard deviation for a VAE, dots for an autoencoder: the lecture's
    ``ax.errorbar`` and ``ax.scatter``). Epoch 0 is the model before training.

    Returns:
      The two paths written.
    """
    mean, std = (np.asarray(a) for a in posterior_stats(model, params, datasets.eval,
                                                        batch_size=batch_size, validate=False))
    out = pathlib.Path(workdir) / LATENT_SNAPSHOTS
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"mean": mean, "std": std}
    if datasets.eval_labels is not None:
        arrays["labels"] = np.asarray(datasets.eval_labels)[: len(mean)]
    npz = out / f"latents_{int(epoch)}.npz"
    np.savez(npz, **arrays)
    autoencoder = isinstance(model.posterior, PointHead)
    when = "before training" if int(epoch) == 0 else f"after epoch {int(epoch)}"
    png = plotting.save_code_scatter(
        mean[:, :2], arrays.get("labels"), out / f"latents_{int(epoch)}.png",
        errors=None if autoencoder else std[:, :2],
        title=("codes" if autoencoder else "posterior means") + f" of the evaluation set, {when}")
    return [npz, png]


def read_latent_snapshots(workdir: pathlib.Path) -> tuple[list[tuple[int, np.ndarray, np.ndarray]],
                                                          np.ndarray | None]:
    """The snapshots :func:`write_latent_snapshot` wrote into ``workdir``, by epoch:
    ``([(epoch, mean [N, D], std [N, D]), ...], labels [N] or None)``; ``([], None)`` when
    there are none."""
    found = []
    for path in (pathlib.Path(workdir) / LATENT_SNAPSHOTS).glob("latents_*.npz"):
        tail = path.stem.rpartition("_")[2]
        if tail.isdigit():
            found.append((int(tail), path))
    snapshots, labels = [], None
    for epoch, path in sorted(found):
        with np.load(path) as data:
            snapshots.append((epoch, data["mean"], data["std"]))
            labels = data["labels"] if "labels" in data else None
    return snapshots, labels


def _reconstructions(model: VAE, params: Any, key: jax.Array, originals: np.ndarray,
                     workdir: pathlib.Path, shown: Callable, which: str,
                     on: "_Titles") -> pathlib.Path:
    """``reconstructions.png``: decoder means of the posterior mean, of a posterior sample,
    or both (``which``: mean | sample | both)."""
    rows = {}
    for latent in (("mean", "sample") if which == "both" else (which,)):
        rows[latent] = shown(np.asarray(_compiled(reconstruct, model, params, key, originals,
                                                  mode="mean", latent=latent, validate=False)))
    title = on.eval("data and their reconstructions")
    if which == "both":
        return plotting.save_reconstructions(shown(originals), rows["mean"],
                                             workdir / "reconstructions.png", n=8,
                                             sampled=rows["sample"], title=title)
    label = "from a sample" if which == "sample" else "reconstruction"
    return plotting.save_reconstructions(shown(originals), rows[which],
                                         workdir / "reconstructions.png", n=8,
                                         row_labels=("data", label), title=title)


class _Titles(NamedTuple):
    """The second line of every figure title of a run: its name and the split shown."""

    run: str
    train_split: str
    eval_split: str
    dev_size: int | None

    def eval(self, what: str) -> str:
        """Drawn from the evaluation split."""
        return f"{what}\nrun {self.run}, {self.eval_split} split"

    def model(self, what: str) -> str:
        """Drawn by the trained model alone (prior samples)."""
        return f"{what}\nrun {self.run}, trained on the {self.train_split} split"

    @property
    def curves(self) -> str:
        return (f"run {self.run}: train on the {self.train_split} split, "
                f"eval on the {self.eval_split} split")

    @property
    def steps(self) -> str:
        return f"every training step\nrun {self.run}, {self.train_split} split"

    @property
    def dev(self) -> str:
        held = ("" if self.dev_size is None
                else f" ({self.dev_size} examples held out of {self.train_split})")
        return f"dev assessments\nrun {self.run}, dev split{held}"


def _latent_figures(model: VAE, params: Any, key: jax.Array, datasets: builders.Datasets,
                    workdir: pathlib.Path, autoencoder: bool, tsne_points: int,
                    on: _Titles) -> list[pathlib.Path]:
    """``latents.png`` for a 2-D latent space; ``latents_tsne.png`` and ``latent_kl.png``
    above 2-D (see write_figures)."""
    evals = np.asarray(datasets.eval)
    latents = np.asarray(_compiled(_posterior_means, model, params, evals[:2000]))
    d = latents.shape[-1]
    what = "codes" if autoencoder else "posterior means"
    if d == 2:
        labels = None if datasets.eval_labels is None else datasets.eval_labels[:2000]
        return [plotting.save_latent_scatter(latents, labels, workdir / "latents.png",
                                             title=on.eval(what))]
    paths = []
    if d > 2 and tsne_points > 0 and len(latents) > 31:
        n = min(int(tsne_points), len(latents))
        labels = None if datasets.eval_labels is None else datasets.eval_labels[:n]
        m = tsne_map(latents[:n], labels, max_points=n, perplexity=min(30.0, (n - 2) / 3.0))
        paths.append(plotting.save_latent_tsne(
            m.embedding, m.labels, workdir / "latents_tsne.png", total=m.total,
            perplexity=m.perplexity, title=on.eval(f"t-SNE of the {d}-D {what}")))
    if d > 2 and not autoencoder:
        path = _latent_kl(model, params, jax.random.fold_in(key, 200), evals, latents,
                          workdir, on)
        paths += [path] if path is not None else []
    return paths


def _latent_kl(model: VAE, params: Any, key: jax.Array, evals: np.ndarray,
               latents: np.ndarray, workdir: pathlib.Path,
               on: _Titles) -> pathlib.Path | None:
    """``latent_kl.png``, or None (with a warning) where the rate has no per-dimension form."""
    try:
        rates = np.asarray(rate_per_dimension(model, params, key, evals, num_samples=64,
                                              validate=False))
    except ValueError as err:
        _LOG.warning("latent_kl.png not drawn: %s", err)
        return None
    d = len(rates)
    burda = int(np.sum(np.var(latents, axis=0) > ACTIVE_UNITS)) if len(latents) > 1 else 0
    title = on.eval(f"rate of each latent dimension, mean KL(q(z_d|x) || p(z_d)) over "
                    f"{len(evals)} examples\nBurda et al.'s active units, Cov_x E_q[z_d] > "
                    f"{ACTIVE_UNITS:g} (first {len(latents)} examples): {burda} of {d}")
    return plotting.save_latent_rates(rates, workdir / "latent_kl.png",
                                      threshold=ACTIVE_UNITS, title=title)


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
                                 shown: Callable = lambda a: a,
                                 on: _Titles | None = None) -> list[pathlib.Path]:
    """The step-log figures and the DPM2 notebook's inspection figures (see write_figures);
    their keys are folded from ``key`` so the older figures keep theirs."""
    on = on or _Titles(pathlib.Path(workdir).resolve().name, "train", "eval", None)
    paths = []
    steps = steplog.read_jsonl(workdir / steplog.STEPS_FILE)
    if steps:
        paths.append(plotting.save_step_curves(steps, workdir / "steps.png", title=on.steps))
    dev = steplog.read_jsonl(workdir / steplog.DEV_FILE)
    if dev:
        paths.append(plotting.save_dev_curves(dev, workdir / "dev.png", title=on.dev))
    if autoencoder:
        return paths
    k_prior, k_cond, k_mix = (jax.random.fold_in(key, 100 + i) for i in range(3))
    if len(model.data_shape) == 3:
        _, obs = _compiled(prior_observations, model, params, k_prior, num=16, oversample=4)
        paths.append(plotting.save_oversampled(
            shown(np.asarray(obs)), workdir / "prior_oversampled.png",
            title=on.model("prior samples: one column per z ~ p(z), rows x ~ p(x|z)")))
        x = evals[:16]
        cond = _compiled(conditional_observations, model, params, k_cond, x, oversample=4,
                         validate=False)
        paths.append(plotting.save_conditional_samples(
            shown(x), shown(np.asarray(cond)), workdir / "conditional_samples.png",
            title=on.eval("conditional samples x' ~ p(x|z), z ~ q(z|x)")))
    z, components = _compiled(prior_samples_with_components, model, params, k_mix, num=5000)
    if components is not None:
        z, components = np.asarray(z), np.asarray(components)
        paths.append(plotting.save_prior_histograms(
            z, components, workdir / "prior_histograms.png",
            title=on.model(f"{len(z)} prior samples, first {min(20, z.shape[1])} of "
                           f"{z.shape[1]} coordinates, stacked by component")))
        paths.append(plotting.save_prior_pairs(
            z, components, workdir / "prior_pairs.png",
            title=on.model(f"prior samples: pairs of the first {min(4, z.shape[1])} "
                           "coordinates, by component")))
        if tsne_points > 31 and z.shape[-1] > 2:
            m = tsne_map(z, components, max_points=min(int(tsne_points), len(z)))
            paths.append(plotting.save_prior_tsne(
                m.embedding, m.labels, workdir / "prior_tsne.png", total=m.total,
                perplexity=m.perplexity,
                title=on.model(f"t-SNE of {z.shape[1]}-D prior samples, coloured by mixture "
                               "component")))
    return paths
