"""From an ``ml_collections`` config to the objects of a run: data, model, loss, optimiser,
and the values of a sweep. The config is checked first (:mod:`jvae.runs.schema`)."""

from __future__ import annotations

import difflib
import warnings
from typing import Any, NamedTuple

import jax.numpy as jnp
import ml_collections
import numpy as np

from jvae import data as jdata
from jvae.data.rows import Rows
from jvae.models.autoencoder import PointHead, is_autoencoder
from jvae.models.heads import (BernoulliHead, ContinuousBernoulliHead, DiagGaussianHead, GaussianHead,
                        MixtureGaussianHead)
from jvae.models.vae import VAE
from jvae.models.conv import CONV_IMPLS
from jvae.models.precision import check_compute_dtype, with_compute_dtype
from jvae.models.conv_nets import CONV_PRESETS, ConvDecoder, ConvEncoder, conv_preset
from jvae.models.nets import INITS, MLP, check_dropout_rate
from jvae.objectives.autoencoder import make_autoencoder_loss
from jvae.objectives.control_variates import CONTROL_VARIATES, make_control_variate
from jvae.objectives.elbo import make_elbo_loss
from jvae.objectives.iwae import IWAE_ESTIMATORS, make_iwae_loss, make_vimco_objective
from jvae.objectives.kl_schedule import kl_warmup
from jvae.objectives.score_function import (make_mixture_objective, make_nvil_objective,
                                            make_sfe_objective)
from jvae.models.flows import FLOW_POSTERIORS, CouplingFlowHead, IAFHead, PlanarFlowHead
from jvae.models.priors import MixturePrior, StandardNormalPrior, VampPrior
from jvae.training import make_optimizer
from jvae.runs import streaming
from jvae.runs.outputs import evaluated_split, trained_split
from jvae.runs.schema import LIKELIHOOD_SUPPORT, SYNTHETIC, _choice, _integer, _positive

__all__ = ["Datasets", "load_data", "build_model", "build_loss", "build_optimizer",
           "iwae_schedule", "iwae_epochs", "split_dev", "dev_rows", "fixed_binarisation"]

_DEV_STREAM = 1          # (data_seed, 1): the dev split's binarisation stream

class Datasets(NamedTuple):
    """Training and evaluation arrays (float32, ``[N, *data_shape]``; the training array
    uint8 when loaded with ``stored=True``), the evaluation labels (or None) and the dev
    split held out of the training data (``config.dataset.dev_size``; None without one)."""

    train: np.ndarray
    eval: np.ndarray
    eval_labels: np.ndarray | None
    dev: np.ndarray | None = None


def load_data(config: ml_collections.ConfigDict, stored: bool = False,
              rows: bool = False) -> Datasets:
    """Load the training and evaluation splits named by ``config.dataset``.

    With ``rows=True`` (what a training run uses, with ``stored``) the training split may
    come back as a reader instead of an array (:func:`jvae.runs.streaming.streamed_rows`):
    when it exceeds ``config.dataset.memory_budget`` (streamed by the run), or for uint8
    ``npy:`` data (put on the device chunk by chunk). A split over the budget from a source
    that cannot be streamed is refused (one-line ``ValueError``).

    With ``stored=True`` (what training uses) the training split of 8-bit images (mnist,
    fashion_mnist, your own uint8 data) stays uint8, a quarter of float32's memory, and the
    epoch converts each batch exactly (:func:`jvae.data.pixels_to_unit`); the evaluation
    and dev splits are float32 as without it, and so is centred data.

    Static binarisation and resizing happen here, once. With ``binarize="dynamic"`` the
    training data stays grey (a fresh binarisation is drawn per step inside the epoch) while
    the evaluation split and the dev split are each binarised once with a fixed seed
    (:func:`fixed_binarisation`), so every evaluation and every dev assessment sees the same
    binary images and both measure the same thing (bits, not grey levels).
    Local files are checked against their pinned SHA-256 on first use unless
    ``config.dataset.verify_checksums`` is false (see :func:`jvae.data.load_split`).
    With ``config.dataset.centre`` the images are mapped from [0, 1] to [-1, 1] (Homework 2's
    ``x * 2 - 1``). Both splits are then checked against the support of
    ``config.model.likelihood`` (:data:`LIKELIHOOD_SUPPORT`: [0, 1] for Bernoulli and
    ContinuousBernoulli, any finite value for Gaussian).
    """
    ds = config.dataset
    if ds.name == "gaussian2d":
        train, test = jdata.gaussian2d(ds.mode, count=int(ds.count), seed=int(ds.data_seed))
        train = train[: ds.limit_train or None]
        test = test[: ds.limit_eval or None]
        train, dev = split_dev(train, int(ds.dev_size), int(ds.dev_seed))
        return Datasets(train, test, None, dev)
    user = jdata.is_user_name(ds.name)
    source = (jdata.as_source(ds.name, key=ds.get("key", "") or None,
                              labels_key=ds.get("labels_key", "") or None,
                              resize=ds.resize or None) if user else ds.name)
    eval_split, train_split = evaluated_split(config), trained_split(config)
    if eval_split != ds.eval_split:
        also = (f", and training on the {train_split!r} split (the rest) instead of "
                f"{ds.train_split!r}" if train_split != ds.train_split else "")
        warnings.warn(f"config.dataset.eval_split is {ds.eval_split!r} but {ds.name} has no "
                      "test file or folder (config.dataset.test): evaluating on the "
                      f"{eval_split!r} split carved from it (validation_size "
                      f"{int(ds.validation_size)}, validation_seed "
                      f"{int(ds.get('validation_seed', 0))}){also}.", stacklevel=2)
    common = dict(data_dir=ds.data_dir or None, binarize=ds.binarize, threshold=ds.threshold,
                  resize=ds.resize or None, download=ds.download,
                  validation_size=int(ds.validation_size),
                  verify=bool(ds.get("verify_checksums", True)),
                  tfds_image_key=ds.get("tfds_image_key", "image"))
    if user:
        common.update(validation_seed=int(ds.get("validation_seed", 0)),
                      test=ds.get("test", "") or None)
    stored = stored and not ds.get("centre", False)
    reader = streaming.streamed_rows(config) if rows and stored else None
    if reader is not None:
        train = reader
    else:
        train = jdata.load_dataset(source, train_split, limit=ds.limit_train or None,
                                   dtype="stored" if stored else "float32", **common)
        if rows:
            streaming.check_loaded(config, train.nbytes)
    evals = jdata.load_dataset(source, eval_split, limit=ds.limit_eval or None, **common)
    labels = None
    if ds.name != "binarized_mnist":
        split = jdata.load_split(source, eval_split, data_dir=common["data_dir"],
                                 download=ds.download, validation_size=common["validation_size"],
                                 verify=common["verify"], tfds_image_key=common["tfds_image_key"],
                                 limit=ds.limit_eval or None if jdata.is_tfds_name(ds.name)
                                 else None, validation_seed=common.get("validation_seed", 0),
                                 test=common.get("test"))
        labels = None if split.labels is None else split.labels[: len(evals)]
    if ds.binarize == "dynamic":          # evaluated on one fixed binarisation
        evals = fixed_binarisation(evals, int(ds.data_seed))
    _check_splits(ds, train, evals, jdata.UNIT_INTERVAL, "grey levels",
                  unit=not user or ds.get("centre", False) or ds.binarize != "none")
    if ds.get("centre", False):                                  # Homework 2: 2x - 1
        train, evals = jdata.centre(np.asarray(train)), jdata.centre(np.asarray(evals))
    _check_splits(ds, train, evals, LIKELIHOOD_SUPPORT.get(config.model.likelihood),
                  f"the {config.model.likelihood} likelihood")
    if isinstance(train, Rows):      # (not loaded: the dev split read alone)
        rest, held = dev_rows(len(train), int(ds.dev_size), int(ds.dev_seed))
        dev = train.read(np.flatnonzero(held)) if held.any() else None
        train = train if rest.all() else train.subset(np.flatnonzero(rest))
    else:
        if train.dtype != np.uint8:
            train = np.asarray(train, np.float32)
        train, dev = split_dev(train, int(ds.dev_size), int(ds.dev_seed))
    dev = None if dev is None else jdata.pixels_to_unit(dev)
    if dev is not None and ds.binarize == "dynamic":     # assessed like the evaluation split
        dev = fixed_binarisation(dev, (int(ds.data_seed), _DEV_STREAM))
    return Datasets(train, np.asarray(evals, np.float32), labels, dev)


def _check_splits(ds, train, evals, support, source: str, unit: bool = True) -> None:
    """Both splits' values against ``support``: the built-in readers' images as
    ``[N, H, W, C]``, your own data (``npy:``, ``npz:``, ``folder:``) as any ``[N, ...]``,
    naming the file."""
    if not unit:
        return
    for name, arr in (("training data", train), ("evaluation data", evals)):
        if isinstance(arr, Rows) and arr.dtype != np.uint8:
            continue                  # streamed: each chunk is checked as it is read
        if arr.dtype == np.uint8:     # stored pixels: every value maps into [0, 1]; shape only
            arr = jdata.pixels_to_unit(arr[:1])
        if jdata.is_user_name(ds.name):
            jdata.check_data(np.asarray(arr), name=f"{name} ({ds.name}) for {source}",
                             support=support)
        else:
            jdata.validate_images(arr, name, support=support, source=source)


def fixed_binarisation(x: np.ndarray, seed) -> np.ndarray:
    """One ``Bernoulli(x)`` draw per pixel from ``numpy.random.default_rng(seed)``, float32
    0/1: how a dynamically binarised run's evaluation split (``seed = data_seed``) and dev
    split (``seed = (data_seed, 1)``, a stream of its own) are binarised, once, so every
    assessment of them sees the same binary images while training draws fresh ones."""
    draws = np.random.default_rng(seed).random(np.shape(x), np.float32)
    return (draws < x).astype(np.float32)


def split_dev(train: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rest, dev)``: ``size`` training examples drawn at random without replacement
    (``numpy.random.default_rng(seed)``) as the dev split, the others (in their original
    order) to train on, as the DPM2 notebook's ``random_split`` of Fashion-MNIST into 59000
    and 1000. ``size = 0``: ``(train, None)``. Raises ``ValueError`` when fewer than one
    training example would be left."""
    if size == 0:
        return train, None
    rest, held = dev_rows(len(train), size, seed)
    return train[rest], train[held]


def dev_rows(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """bool ``[n]`` masks ``(rest, dev)`` of :func:`split_dev` (``size = 0``: all rest)."""
    held = np.zeros(n, bool)
    if size == 0:
        return ~held, held
    if not 0 < size < n:
        raise ValueError(f"config.dataset.dev_size {size} must be smaller than the training "
                         f"set ({n} examples), leaving some to train on.")
    held[np.random.default_rng(seed).choice(n, size, replace=False)] = True
    return ~held, held


def build_model(config: ml_collections.ConfigDict, data_shape) -> VAE:
    """Build the VAE described by ``config.model`` for observations of ``data_shape``; with
    ``config.model.kind = "autoencoder"`` its posterior is a :class:`~jvae.models.autoencoder.PointHead`
    (a deterministic autoencoder). ``config.model.compute_dtype = "bfloat16"`` gives every
    network of it bfloat16 products (:func:`jvae.models.precision.with_compute_dtype`)."""
    m = config.model
    data_shape = tuple(int(s) for s in data_shape)
    latent = int(config.latent_dim)
    image = len(data_shape) == 3
    if (m.encoder == "conv" or m.decoder == "conv") and not image:
        raise ValueError(f"Convolutional networks need [H, W, C] images, not {data_shape}.")

    if m.prior == "standard":
        prior = StandardNormalPrior(latent)
    elif m.prior == "vamp":
        unit = LIKELIHOOD_SUPPORT[m.likelihood] == jdata.UNIT_INTERVAL
        prior = VampPrior(data_shape, int(m.prior_components), init_mean=0.05 if unit else 0.0,
                          clip=(0.0, 1.0) if unit else None)
    else:
        prior = MixturePrior(latent, int(m.prior_components))

    conv_impl = m.get("conv_impl", "auto")
    # Dropout before every dense layer (the DPM2 notebook's p_drop): the encoder's rate in
    # the encoder and the posterior head, the decoder's in the decoder and likelihood head.
    enc_drop = check_dropout_rate(m.get("encoder_dropout", 0.0), "config.model.encoder_dropout")
    dec_drop = check_dropout_rate(m.get("decoder_dropout", 0.0), "config.model.decoder_dropout")
    if m.get("conv_preset", ""):           # a named architecture replaces the conv_* widths
        enc_kw, dec_kw = conv_preset(m.conv_preset, data_shape[:2])
    else:
        enc_kw = dict(features=tuple(m.conv_encoder_features), out_dim=m.conv_encoder_out or None)
        dec_kw = dict(features=tuple(m.conv_decoder_features))
    if m.encoder == "mlp":
        encoder = MLP(tuple(m.encoder_hidden), m.activation, in_event_ndims=len(data_shape),
                      weight_init=m.init, dropout_rate=enc_drop,
                      activate_final=bool(m.get("encoder_activate_final", True)))
    else:
        encoder = ConvEncoder(**enc_kw, impl=conv_impl, dropout_rate=enc_drop,
                              weight_init=m.init)
    head_hidden = int(m.get("posterior_hidden", 0))
    if m.kind == "autoencoder":
        posterior = PointHead(latent, weight_init=m.init)
    elif m.posterior == "mixture":
        posterior = MixtureGaussianHead(latent, int(m.posterior_components),
                                        scale=m.posterior_scale, weight_init=m.init,
                                        dropout_rate=enc_drop, hidden=head_hidden,
                                        init_spread=float(m.get("posterior_init_spread", 1.0)))
    elif m.posterior in FLOW_POSTERIORS:
        flow = dict(num_layers=int(m.flow_layers), scale=m.posterior_scale, weight_init=m.init,
                    dropout_rate=enc_drop)
        if m.posterior == "planar":
            posterior = PlanarFlowHead(latent, **flow)
        elif m.posterior == "iaf":
            posterior = IAFHead(latent, hidden=(int(m.flow_hidden),), **flow)
        else:
            posterior = CouplingFlowHead(latent, hidden=int(m.flow_hidden), **flow)
    else:
        posterior = DiagGaussianHead(latent, scale=m.posterior_scale, weight_init=m.init,
                                     dropout_rate=enc_drop, hidden=head_hidden)

    if m.likelihood == "gaussian":
        likelihood = GaussianHead(data_shape, project=m.decoder == "mlp",
                                  scale=m.gaussian_scale, fixed_scale=m.fixed_scale,
                                  predicted_scale=m.get("likelihood_scale", "softplus"),
                                  weight_init=m.init, dropout_rate=dec_drop)
        params_per_pixel = 2 if m.gaussian_scale == "predicted" else 1
    else:
        head = BernoulliHead if m.likelihood == "bernoulli" else ContinuousBernoulliHead
        likelihood = head(data_shape, project=m.decoder == "mlp", weight_init=m.init,
                          dropout_rate=dec_drop)
        params_per_pixel = 1
    if m.decoder == "mlp":
        decoder = MLP(tuple(m.decoder_hidden), m.activation, weight_init=m.init,
                      dropout_rate=dec_drop)
    else:
        decoder = ConvDecoder(data_shape[:2], data_shape[2] * params_per_pixel, **dec_kw,
                              impl=conv_impl, dropout_rate=dec_drop, weight_init=m.init)
    model = VAE(data_shape, prior, encoder, posterior, decoder, likelihood)
    compute_dtype = check_compute_dtype(m.get("compute_dtype", "float32"),
                                        "config.model.compute_dtype")
    return model if compute_dtype == "float32" else with_compute_dtype(model, compute_dtype)


def build_loss(config: ml_collections.ConfigDict, model: VAE, beta=None):
    """The training objective named by ``config.objective``: a plain loss function
    (``elbo``, ``iwae``) or a stateful :class:`~jvae.objectives.base.Objective` (``sfe``,
    ``mixture``, ``nvil``, ``vimco``); the trainer takes either. ``beta`` overrides the config's, and
    may be a traced value inside a vmapped sweep. An autoencoder's loss is its reconstruction
    error (:func:`~jvae.objectives.autoencoder.make_autoencoder_loss`)."""
    if is_autoencoder(model):
        return make_autoencoder_loss(model)
    obj = config.objective
    beta = float(obj.beta) if beta is None else beta
    samples = int(obj.num_samples)
    cvs = [make_control_variate(name, decay=float(obj.cv_decay),
                                baseline_hidden=tuple(obj.baseline_hidden))
           for name in obj.control_variates]
    if obj.beta_schedule != "constant":
        beta = kl_warmup(beta, int(obj.kl_warmup_steps), float(obj.kl_warmup_start),
                         obj.beta_schedule)
    if obj.name == "elbo":
        return make_elbo_loss(model, beta=beta, num_samples=samples, kl=obj.kl,
                              free_bits=float(obj.free_bits))
    if obj.name == "sfe":
        # "auto" means the notebook's NVIL signal for SFE: the whole bound in the score term.
        return make_sfe_objective(model, num_samples=samples, beta=beta,
                                  control_variates=cvs, kl="mc" if obj.kl == "auto" else obj.kl)
    if obj.name == "mixture":
        return make_mixture_objective(model, num_samples=samples, beta=beta,
                                      control_variates=cvs)
    if obj.name == "nvil":
        return make_nvil_objective(model, num_samples=samples, beta=beta, control_variates=cvs)
    if obj.name == "iwae":
        return make_iwae_loss(model, num_samples=samples, estimator=obj.estimator)
    return make_vimco_objective(model, num_samples=samples, control_variates=cvs or None)


def iwae_schedule(steps_per_epoch: int, num_stages: int = 8):
    """The IWAE paper's learning-rate multiplier: stage ``i`` (``i = 0..num_stages-1``) lasts
    ``3^i`` epochs with the learning rate multiplied by ``10^(-i/7)``; after the last stage
    the last factor stays. Returns ``step -> factor``."""
    bounds = np.cumsum([3 ** i for i in range(num_stages)])[:-1] * int(steps_per_epoch)
    bounds = jnp.asarray(bounds, jnp.int32)

    def schedule(step):
        stage = jnp.sum(step >= bounds)
        return 10.0 ** (-stage.astype(jnp.float32) / 7.0)

    return schedule


def iwae_epochs(num_stages: int) -> int:
    """Epochs of ``num_stages`` IWAE stages: ``sum_i 3^i = (3^n - 1) / 2``."""
    return (3 ** int(num_stages) - 1) // 2


def build_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int | None = None):
    """The optax optimiser from ``config.learning_rate`` and ``config.optim`` (with an injected
    learning rate when ``config.sweep.learning_rate`` sweeps it). A learned baseline gets
    ``config.objective.baseline_learning_rate`` as its own parameter group when that is set.
    ``config.optim.schedule = "iwae"`` needs ``steps_per_epoch``."""
    o = config.optim
    groups = {k: float(v) for k, v in dict(o.param_groups).items()}
    if float(config.objective.baseline_learning_rate) > 0:
        groups.setdefault("baseline", float(config.objective.baseline_learning_rate))
    schedule = None
    if o.schedule == "iwae":
        if steps_per_epoch is None:
            raise ValueError("The 'iwae' schedule needs steps_per_epoch.")
        schedule = iwae_schedule(steps_per_epoch, max(1, _stages_for(int(config.num_epochs))))
    eps = None if o.name == "sgd" else float(o.eps)
    return make_optimizer(float(config.learning_rate), name=o.name,
                          grad_clip=float(o.grad_clip), param_groups=groups,
                          schedule=schedule, inject=bool(config.sweep.learning_rate), eps=eps,
                          weight_decay=float(o.weight_decay),
                          rmsprop_decay=float(o.rmsprop_decay) if o.name == "rmsprop" else None,
                          initial_accumulator=float(o.get("initial_accumulator", 0.0)))


def _stages_for(num_epochs: int) -> int:
    """Smallest number of IWAE stages covering ``num_epochs``."""
    n = 1
    while iwae_epochs(n) < num_epochs:
        n += 1
    return n


def to_plain(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return config.to_dict()
