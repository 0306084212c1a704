"""From an ``ml_collections`` config to the objects of a run: data, model, loss, optimiser.

Every name read from the config is checked here, so a typo fails at start-up with the list
of valid choices instead of deep inside a traced function.
"""

from __future__ import annotations

import difflib
from typing import Any, NamedTuple

import jax.numpy as jnp
import ml_collections
import numpy as np

from jvae import data as jdata
from jvae.autoencoder import PointHead, is_autoencoder
from jvae.heads import (BernoulliHead, ContinuousBernoulliHead, DiagGaussianHead, GaussianHead,
                        MixtureGaussianHead)
from jvae.model import VAE
from jvae.conv import CONV_IMPLS
from jvae.nets import (CONV_PRESETS, INITS, MLP, ConvDecoder, ConvEncoder, check_dropout_rate,
                       conv_preset)
from jvae.objectives.autoencoder import make_autoencoder_loss
from jvae.objectives.control_variates import CONTROL_VARIATES, make_control_variate
from jvae.objectives.elbo import make_elbo_loss
from jvae.objectives.iwae import IWAE_ESTIMATORS, make_iwae_loss, make_vimco_objective
from jvae.objectives.score_function import make_mixture_objective, make_sfe_objective
from jvae.flows import FLOW_POSTERIORS, CouplingFlowHead, IAFHead, PlanarFlowHead
from jvae.priors import MixturePrior, StandardNormalPrior, VampPrior
from jvae.training import make_optimizer

__all__ = ["Datasets", "load_data", "build_model", "build_loss", "build_optimizer",
           "validate_config", "sweep_values", "check_ranges", "iwae_schedule", "iwae_epochs",
           "LIKELIHOOD_SUPPORT"]

KINDS = ("vae", "autoencoder")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")
PRIORS = ("standard", "mixture", "vamp")
POSTERIORS = ("gaussian", "mixture") + FLOW_POSTERIORS
NETWORKS = ("mlp", "conv")
OBJECTIVES = ("elbo", "sfe", "mixture", "iwae", "vimco")
SCHEDULES = ("constant", "iwae")
SYNTHETIC = ("gaussian2d",)
# The support of each likelihood's observations (the heads' ``support``), known before the
# model is built so load_data can check the data against it.
LIKELIHOOD_SUPPORT = {"bernoulli": jdata.UNIT_INTERVAL,
                      "continuous_bernoulli": jdata.UNIT_INTERVAL, "gaussian": jdata.REAL}


class Datasets(NamedTuple):
    """Training and evaluation arrays (float32, ``[N, *data_shape]``), the evaluation labels
    (or None) and the dev split held out of the training data (``config.dataset.dev_size``;
    None without one)."""

    train: np.ndarray
    eval: np.ndarray
    eval_labels: np.ndarray | None
    dev: np.ndarray | None = None


def _choice(what: str, value: str, choices) -> str:
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"Unknown {what} {value!r}; {hint}choose one of {list(choices)}.")
    return value


def _positive(what: str, value, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, got {value!r}.")
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not np.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{what} must be finite and {bound}, got {value!r}.")


def _integer(what: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}.")


def _seed_range(what: str, value, count: int = 1) -> None:
    if not 0 <= int(value) <= 2 ** 32 - int(count):
        span = f" (with {count} seeds, seed + {count - 1} too)" if count > 1 else ""
        raise ValueError(f"{what} must lie in [0, 2**32){span}, got {value!r}.")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raise ``ValueError`` naming the first invalid field of a run config."""
    for field in ("seed", "num_epochs", "batch_size", "latent_dim", "num_seeds",
                  "checkpoint_every"):
        _integer(f"config.{field}", config[field])
    for field in ("data_seed", "order_seed", "validation_size", "limit_train", "limit_eval",
                  "resize", "count", "dev_size", "dev_seed"):
        _integer(f"config.dataset.{field}", config.dataset[field])
    for field in ("num_epochs", "batch_size", "latent_dim", "num_seeds"):
        _positive(f"config.{field}", config[field])
    # JAX keys take 32-bit seeds (a larger seed silently wraps onto a smaller one).
    _seed_range("config.seed", config.seed, count=int(config.num_seeds))
    _seed_range("config.dataset.data_seed", config.dataset.data_seed)
    if int(config.dataset.order_seed) != -1:
        _seed_range("config.dataset.order_seed (-1: use config.seed)", config.dataset.order_seed)
    for field in ("factor", "max_loss"):
        value = config.divergence[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"config.divergence.{field} must be a number >= 0 (0: off), "
                             f"got {value!r}.")
    _integer("config.divergence.patience", config.divergence.patience)
    _positive("config.divergence.patience", config.divergence.patience)
    _positive("config.learning_rate", config.learning_rate)
    _positive("config.checkpoint_every", config.checkpoint_every, allow_zero=True)
    ds = config.dataset
    if not jdata.is_tfds_name(ds.name):
        _choice("dataset", ds.name, jdata.FILE_DATASETS + SYNTHETIC)
    elif len(ds.name) == len("tfds:"):
        raise ValueError("config.dataset.name 'tfds:' names no dataset; use e.g. "
                         "'tfds:cifar10' or 'tfds:celeb_a'.")
    _choice("binarize", ds.binarize, jdata.BINARIZE)
    if not 0.0 < float(ds.threshold) < 1.0:
        raise ValueError(f"config.dataset.threshold must be in (0, 1), got {ds.threshold!r}.")
    for field in ("resize", "limit_train", "limit_eval"):
        _positive(f"config.dataset.{field} (0: off)", ds[field], allow_zero=True)
    train_size = 50000 if ds.name == "cifar10" else 60000
    if not 0 <= int(ds.validation_size) < train_size:
        raise ValueError(f"config.dataset.validation_size must be in [0, {train_size}), got "
                         f"{ds.validation_size!r}.")
    _check_centre(config)
    _positive("config.dataset.count", ds.count)
    _positive("config.dataset.dev_size (0: no dev split)", ds.dev_size, allow_zero=True)
    _seed_range("config.dataset.dev_seed", ds.dev_seed)
    _choice("dataset mode", ds.mode, ("univariate", "multivariate"))
    _choice("optimizer", config.optim.name, ("adam", "adamw", "rmsprop", "sgd"))
    _positive("config.optim.grad_clip (0: off)", config.optim.grad_clip, allow_zero=True)
    m = config.model
    _choice("model kind", m.kind, KINDS)
    if m.kind == "autoencoder":
        _check_autoencoder(config)
    _choice("encoder", m.encoder, NETWORKS)
    _choice("decoder", m.decoder, NETWORKS)
    _choice("model.conv_impl", m.get("conv_impl", "auto"), CONV_IMPLS)
    if m.get("conv_preset", ""):
        _choice("model.conv_preset", m.conv_preset, CONV_PRESETS)
    _choice("likelihood", m.likelihood, LIKELIHOODS)
    _choice("prior", m.prior, PRIORS)
    _choice("init", m.init, INITS)
    for field in ("encoder_dropout", "decoder_dropout"):
        check_dropout_rate(m.get(field, 0.0), f"config.model.{field}")
    obj = config.objective
    _choice("objective", obj.name, OBJECTIVES)
    _positive("config.objective.num_samples", obj.num_samples)
    _positive("config.objective.beta", obj.beta, allow_zero=True)
    _choice("kl", obj.kl, ("auto", "analytic", "mc"))
    _choice("IWAE estimator", obj.estimator, IWAE_ESTIMATORS)
    for cv in obj.control_variates:
        _choice("control variate", cv, CONTROL_VARIATES)
    if obj.control_variates and obj.name not in ("sfe", "mixture", "vimco"):
        raise ValueError(f"config.objective.control_variates apply to score-function "
                         f"objectives ('sfe', 'mixture', 'vimco'), not {obj.name!r}.")
    if obj.name == "vimco" and int(obj.num_samples) < 2:
        raise ValueError("objective 'vimco' needs config.objective.num_samples >= 2.")
    if "leave_one_out" in obj.control_variates and int(obj.num_samples) < 2:
        raise ValueError("control variate 'leave_one_out' needs num_samples >= 2.")
    if obj.name == "sfe" and obj.kl == "analytic" and "scaled" in obj.control_variates:
        raise ValueError("control variate 'scaled' needs objective.kl='mc' (or 'auto') with "
                         "objective 'sfe': it divides the score term only, and an analytic "
                         "KL's gradient is outside it.")
    if obj.name in ("mixture", "vimco") and "scaled" in obj.control_variates:
        raise ValueError(f"control variate 'scaled' does not apply to objective {obj.name!r}: "
                         "it would divide the score term but not the rest of the inference "
                         "gradient.")
    if "vimco" in obj.control_variates and obj.name != "vimco":
        raise ValueError("control variate 'vimco' only applies to objective 'vimco'.")
    if not 0.0 <= float(obj.cv_decay) < 1.0:
        raise ValueError(f"config.objective.cv_decay must be in [0, 1), got {obj.cv_decay!r}.")
    _positive("config.objective.baseline_learning_rate", obj.baseline_learning_rate,
              allow_zero=True)
    _choice("posterior", m.posterior, POSTERIORS)
    if m.posterior == "mixture":
        _positive("config.model.posterior_components", m.posterior_components)
        if obj.name in ("elbo", "iwae"):
            raise ValueError(
                f"objective {obj.name!r} needs a reparameterisable posterior; a mixture "
                "posterior trains with objective 'mixture', 'sfe' or 'vimco'.")
    if obj.name == "mixture" and m.posterior != "mixture":
        raise ValueError("objective 'mixture' needs model.posterior='mixture'.")
    if m.posterior in FLOW_POSTERIORS:
        _check_flow(config)
    if m.prior in ("mixture", "vamp"):
        _positive("config.model.prior_components", m.prior_components)
    _choice("schedule", config.optim.schedule, SCHEDULES)
    _positive("config.optim.eps", config.optim.eps)
    _positive("config.optim.weight_decay", config.optim.weight_decay, allow_zero=True)
    if not 0 < float(config.optim.rmsprop_decay) < 1:
        raise ValueError(f"config.optim.rmsprop_decay must be in (0, 1), got "
                         f"{config.optim.rmsprop_decay!r}.")
    _positive("config.eval.every", config.eval.every)
    _positive("config.eval.ll_every", config.eval.ll_every, allow_zero=True)
    for field in ("every_steps", "dev_ll_samples", "dev_final_ll_samples"):
        _integer(f"config.eval.{field}", config.eval[field])
    _positive("config.eval.every_steps (0: off)", config.eval.every_steps, allow_zero=True)
    _positive("config.eval.dev_ll_samples (0: off)", config.eval.dev_ll_samples,
              allow_zero=True)
    if int(config.eval.dev_final_ll_samples) < -1:
        raise ValueError("config.eval.dev_final_ll_samples must be >= 0, or -1 for "
                         f"eval.dev_ll_samples, got {config.eval.dev_final_ll_samples!r}.")
    if int(config.eval.every_steps) and not int(config.dataset.dev_size):
        raise ValueError("config.eval.every_steps assesses the dev split, but "
                         "config.dataset.dev_size is 0; set dataset.dev_size (e.g. 1000).")
    _positive("config.eval.batch_size", config.eval.batch_size)
    _positive("config.eval.ll_samples", config.eval.ll_samples, allow_zero=True)
    sweep_values(config)
    check_ranges(config)
    if config.dataset.name in SYNTHETIC and m.likelihood != "gaussian":
        raise ValueError("The 2-D Gaussian data needs likelihood='gaussian'.")


def _check_centre(config: ml_collections.ConfigDict) -> None:
    """``dataset.centre`` maps the data to [-1, 1]: only a Gaussian likelihood holds that."""
    centre = config.dataset.get("centre", False)
    if not isinstance(centre, bool):
        raise ValueError(f"config.dataset.centre must be True or False, got {centre!r}.")
    if not centre:
        return
    if config.dataset.name in SYNTHETIC:
        raise ValueError("config.dataset.centre maps images in [0, 1] to [-1, 1]; the 2-D "
                         "Gaussian data are not images (leave it False).")
    if config.model.likelihood != "gaussian":
        support = LIKELIHOOD_SUPPORT.get(config.model.likelihood)
        raise ValueError(f"config.dataset.centre maps the data to [-1, 1], outside the support "
                         f"{support} of the {config.model.likelihood!r} likelihood; use "
                         "model.likelihood='gaussian' or leave dataset.centre False.")
    if config.dataset.binarize == "dynamic":
        raise ValueError("config.dataset.centre cannot be combined with binarize='dynamic' "
                         "(a fresh Bernoulli(x) draw needs x in [0, 1]); use 'static' or 'none'.")


def check_ranges(config: ml_collections.ConfigDict) -> None:
    """Checks the optional group ``config.ranges`` an experiment config may declare: allowed
    closed intervals ``(low, high)`` of ``latent_dim`` and of ``beta`` (``objective.beta`` and
    every ``sweep.beta`` value), e.g. Homework 2's suggested latent sizes 128..1024 and betas
    0.1..10 in ``experiments/configs/cifar10_beta_vae.py``. An empty tuple lifts a range
    (``--config.ranges.beta='()'``). Raises ``ValueError`` naming the field, the value, the
    range and how to lift it."""
    ranges = config.get("ranges", None)
    if ranges is None:
        return
    unknown = sorted(set(ranges.keys()) - {"latent_dim", "beta"})
    if unknown:
        raise ValueError(f"config.ranges has unknown fields {unknown}; it takes latent_dim and "
                         "beta.")
    checks = {"latent_dim": [("config.latent_dim", config.latent_dim)],
              "beta": [("config.objective.beta", config.objective.beta)]
              + [(f"config.sweep.beta[{i}]", b) for i, b in enumerate(config.sweep.beta)]}
    for key, values in checks.items():
        bounds = tuple(ranges.get(key, ()) or ())
        if not bounds:
            continue
        if len(bounds) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                       for b in bounds) or bounds[0] > bounds[1]:
            raise ValueError(f"config.ranges.{key} must be (low, high) with low <= high, or () "
                             f"for no range, got {bounds!r}.")
        for what, value in values:
            if not bounds[0] <= float(value) <= bounds[1]:
                raise ValueError(
                    f"{what} = {value!r} is outside this config's range [{bounds[0]:g}, "
                    f"{bounds[1]:g}] (config.ranges.{key}); choose a value inside it, or lift "
                    f"the range with --config.ranges.{key}='()'.")


def _check_flow(config: ml_collections.ConfigDict) -> None:
    """A flow posterior's layer count and width (one-line errors, before anything is built)."""
    m, latent = config.model, int(config.latent_dim)
    for field in ("flow_layers", "flow_hidden"):
        _integer(f"config.model.{field}", m[field])
        _positive(f"config.model.{field}", m[field])
    if m.posterior == "coupling" and latent < 2:
        raise ValueError(f"model.posterior='coupling' needs latent_dim >= 2 (a coupling layer "
                         f"keeps half the coordinates), got {latent}.")
    if m.posterior == "iaf" and int(m.flow_hidden) < latent - 1:
        raise ValueError(f"model.posterior='iaf' needs config.model.flow_hidden >= latent_dim - "
                         f"1 = {latent - 1} (the MADE's hidden units cover every degree), got "
                         f"{m.flow_hidden}.")


def _check_autoencoder(config: ml_collections.ConfigDict) -> None:
    """An autoencoder trains by reconstruction error: refuse the settings it would ignore."""
    if config.objective.name != "elbo" or tuple(config.sweep.beta):
        raise ValueError("model.kind='autoencoder' trains by reconstruction error; "
                         "config.objective and config.sweep.beta apply to VAEs (leave them at "
                         "their defaults).")
    if config.model.posterior != "gaussian":
        raise ValueError("model.kind='autoencoder' has a point-mass code; "
                         "config.model.posterior applies to VAEs.")
    if int(config.eval.ll_samples) > 1:
        raise ValueError("model.kind='autoencoder' defines no likelihood p(x); set "
                         "config.eval.ll_samples=0.")


def load_data(config: ml_collections.ConfigDict) -> Datasets:
    """Load the training and evaluation splits named by ``config.dataset``.

    Static binarisation and resizing happen here, once. With ``binarize="dynamic"`` the
    training data stays grey (a fresh binarisation is drawn per step inside the epoch) and the
    evaluation data is binarised once with a fixed key, so every evaluation sees the same set.
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
    common = dict(data_dir=ds.data_dir or None, binarize=ds.binarize, threshold=ds.threshold,
                  resize=ds.resize or None, download=ds.download,
                  validation_size=int(ds.validation_size),
                  verify=bool(ds.get("verify_checksums", True)),
                  tfds_image_key=ds.get("tfds_image_key", "image"))
    train = jdata.load_dataset(ds.name, ds.train_split, limit=ds.limit_train or None, **common)
    evals = jdata.load_dataset(ds.name, ds.eval_split, limit=ds.limit_eval or None, **common)
    labels = None
    if ds.name != "binarized_mnist":
        split = jdata.load_split(ds.name, ds.eval_split, data_dir=common["data_dir"],
                                 download=ds.download, validation_size=common["validation_size"],
                                 verify=common["verify"], tfds_image_key=common["tfds_image_key"],
                                 limit=ds.limit_eval or None if jdata.is_tfds_name(ds.name)
                                 else None)
        labels = None if split.labels is None else split.labels[: len(evals)]
    if ds.binarize == "dynamic":
        draws = np.random.default_rng(int(ds.data_seed)).random(evals.shape, np.float32)
        evals = (draws < evals).astype(np.float32)
    for name, arr in (("training data", train), ("evaluation data", evals)):
        jdata.validate_images(arr, name, check_range=True)      # the readers give [0, 1]
    if ds.get("centre", False):                                  # Homework 2: 2x - 1
        train, evals = jdata.centre(np.asarray(train)), jdata.centre(np.asarray(evals))
    support = LIKELIHOOD_SUPPORT.get(config.model.likelihood)
    for name, arr in (("training data", train), ("evaluation data", evals)):
        jdata.validate_images(arr, name, support=support,
                              source=f"the {config.model.likelihood} likelihood")
    train, dev = split_dev(np.asarray(train, np.float32), int(ds.dev_size), int(ds.dev_seed))
    return Datasets(train, np.asarray(evals, np.float32), labels, dev)


def split_dev(train: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rest, dev)``: ``size`` training examples drawn at random without replacement
    (``numpy.random.default_rng(seed)``) as the dev split, the others (in their original
    order) to train on, as the DPM2 notebook's ``random_split`` of Fashion-MNIST into 59000
    and 1000. ``size = 0``: ``(train, None)``. Raises ``ValueError`` when fewer than one
    training example would be left."""
    if size == 0:
        return train, None
    if not 0 < size < len(train):
        raise ValueError(f"config.dataset.dev_size {size} must be smaller than the training "
                         f"set ({len(train)} examples), leaving some to train on.")
    held = np.zeros(len(train), bool)
    held[np.random.default_rng(seed).choice(len(train), size, replace=False)] = True
    return train[~held], train[held]


def build_model(config: ml_collections.ConfigDict, data_shape) -> VAE:
    """Build the VAE described by ``config.model`` for observations of ``data_shape``; with
    ``config.model.kind = "autoencoder"`` its posterior is a :class:`~jvae.autoencoder.PointHead`
    (a deterministic autoencoder)."""
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
                      weight_init=m.init, dropout_rate=enc_drop)
    else:
        encoder = ConvEncoder(**enc_kw, impl=conv_impl, dropout_rate=enc_drop)
    if m.kind == "autoencoder":
        posterior = PointHead(latent, weight_init=m.init)
    elif m.posterior == "mixture":
        posterior = MixtureGaussianHead(latent, int(m.posterior_components),
                                        scale=m.posterior_scale, weight_init=m.init,
                                        dropout_rate=enc_drop)
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
                                     dropout_rate=enc_drop)

    if m.likelihood == "gaussian":
        likelihood = GaussianHead(data_shape, project=m.decoder == "mlp",
                                  scale=m.gaussian_scale, fixed_scale=m.fixed_scale,
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
                              impl=conv_impl, dropout_rate=dec_drop)
    return VAE(data_shape, prior, encoder, posterior, decoder, likelihood)


def build_loss(config: ml_collections.ConfigDict, model: VAE, beta=None):
    """The training objective named by ``config.objective``: a plain loss function
    (``elbo``, ``iwae``) or a stateful :class:`~jvae.objectives.base.Objective` (``sfe``,
    ``mixture``, ``vimco``); the trainer takes either. ``beta`` overrides the config's, and
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
    if obj.name == "elbo":
        return make_elbo_loss(model, beta=beta, num_samples=samples, kl=obj.kl)
    if obj.name == "sfe":
        # "auto" means the notebook's NVIL signal for SFE: the whole bound in the score term.
        return make_sfe_objective(model, num_samples=samples, beta=beta,
                                  control_variates=cvs, kl="mc" if obj.kl == "auto" else obj.kl)
    if obj.name == "mixture":
        return make_mixture_objective(model, num_samples=samples, beta=beta,
                                      control_variates=cvs)
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
                          rmsprop_decay=float(o.rmsprop_decay) if o.name == "rmsprop" else None)


def _stages_for(num_epochs: int) -> int:
    """Smallest number of IWAE stages covering ``num_epochs``."""
    n = 1
    while iwae_epochs(n) < num_epochs:
        n += 1
    return n


def sweep_values(config: ml_collections.ConfigDict) -> dict[str, np.ndarray] | None:
    """The vmapped hyperparameter axis of a sweep run, or ``None``.

    ``config.sweep.beta`` and ``config.sweep.learning_rate`` are tuples of values; a non-empty
    one defines the sweep (both non-empty: equal lengths, paired element by element); the
    other hyperparameter keeps its config value. Returns ``{"beta": [H], "learning_rate": [H]}``.
    """
    betas, rates = tuple(config.sweep.beta), tuple(config.sweep.learning_rate)
    if not betas and not rates:
        return None
    if betas and rates and len(betas) != len(rates):
        raise ValueError(f"config.sweep.beta ({len(betas)} values) and "
                         f"config.sweep.learning_rate ({len(rates)}) must have equal lengths.")
    if int(config.num_seeds) != 1:
        raise ValueError("A sweep runs one seed per value: set num_seeds=1.")
    size = max(len(betas), len(rates))
    beta = np.asarray(betas or [config.objective.beta] * size, np.float32)
    lr = np.asarray(rates or [config.learning_rate] * size, np.float32)
    if np.any(beta < 0) or np.any(lr <= 0):
        raise ValueError(f"Sweep values out of range: beta {beta.tolist()} must be >= 0, "
                         f"learning_rate {lr.tolist()} > 0.")
    return {"beta": beta, "learning_rate": lr}


def to_plain(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return config.to_dict()
