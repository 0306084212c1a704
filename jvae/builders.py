"""From an ``ml_collections`` config to the objects of a run: data, model, loss, optimiser.

Every name read from the config is checked here, so a typo fails at start-up with the list
of valid choices instead of deep inside a traced function.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import ml_collections
import numpy as np

from jvae import data as jdata
from jvae.heads import BernoulliHead, ContinuousBernoulliHead, DiagGaussianHead, GaussianHead
from jvae.model import VAE
from jvae.nets import INITS, MLP, ConvDecoder, ConvEncoder
from jvae.objectives.elbo import make_elbo_loss
from jvae.priors import MixturePrior, StandardNormalPrior
from jvae.training import make_optimizer

__all__ = ["Datasets", "load_data", "build_model", "build_loss", "build_optimizer",
           "validate_config", "sweep_values"]

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")
PRIORS = ("standard", "mixture")
POSTERIORS = ("gaussian",)
NETWORKS = ("mlp", "conv")
OBJECTIVES = ("elbo",)
SYNTHETIC = ("gaussian2d",)


class Datasets(NamedTuple):
    """Training and evaluation arrays (float32, ``[N, *data_shape]``) and labels (or None)."""

    train: np.ndarray
    eval: np.ndarray
    eval_labels: np.ndarray | None


def _choice(what: str, value: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"Unknown {what} {value!r}; choose one of {list(choices)}.")
    return value


def _positive(what: str, value, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{what} must be {bound}, got {value!r}.")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raise ``ValueError`` naming the first invalid field of a run config."""
    for field in ("num_epochs", "batch_size", "latent_dim", "num_seeds"):
        _positive(f"config.{field}", config[field])
    _positive("config.learning_rate", config.learning_rate)
    _positive("config.checkpoint_every", config.checkpoint_every, allow_zero=True)
    _choice("dataset", config.dataset.name, jdata.DATASETS + SYNTHETIC)
    _choice("binarize", config.dataset.binarize, jdata.BINARIZE)
    m = config.model
    _choice("encoder", m.encoder, NETWORKS)
    _choice("decoder", m.decoder, NETWORKS)
    _choice("likelihood", m.likelihood, LIKELIHOODS)
    _choice("prior", m.prior, PRIORS)
    _choice("posterior", m.posterior, POSTERIORS)
    _choice("init", m.init, INITS)
    _choice("objective", config.objective.name, OBJECTIVES)
    _positive("config.objective.num_samples", config.objective.num_samples)
    _positive("config.objective.beta", config.objective.beta, allow_zero=True)
    _positive("config.eval.batch_size", config.eval.batch_size)
    _positive("config.eval.ll_samples", config.eval.ll_samples, allow_zero=True)
    sweep_values(config)
    if config.dataset.name in SYNTHETIC and m.likelihood != "gaussian":
        raise ValueError("The 2-D Gaussian data needs likelihood='gaussian'.")


def load_data(config: ml_collections.ConfigDict) -> Datasets:
    """Load the training and evaluation splits named by ``config.dataset``.

    Static binarisation and resizing happen here, once. With ``binarize="dynamic"`` the
    training data stays grey (a fresh binarisation is drawn per step inside the epoch) and the
    evaluation data is binarised once with a fixed key, so every evaluation sees the same set.
    """
    ds = config.dataset
    if ds.name == "gaussian2d":
        train, test = jdata.gaussian2d(ds.mode, count=int(ds.count), seed=int(ds.data_seed))
        train = train[: ds.limit_train or None]
        test = test[: ds.limit_eval or None]
        return Datasets(train, test, None)
    common = dict(data_dir=ds.data_dir or None, binarize=ds.binarize, threshold=ds.threshold,
                  resize=ds.resize or None, download=ds.download,
                  validation_size=int(ds.validation_size))
    train = jdata.load_dataset(ds.name, ds.train_split, limit=ds.limit_train or None, **common)
    evals = jdata.load_dataset(ds.name, ds.eval_split, limit=ds.limit_eval or None, **common)
    labels = None
    if ds.name != "binarized_mnist":
        split = jdata.load_split(ds.name, ds.eval_split, data_dir=common["data_dir"],
                                 download=ds.download, validation_size=common["validation_size"])
        labels = split.labels[: len(evals)]
    if ds.binarize == "dynamic":
        draws = np.random.default_rng(int(ds.data_seed)).random(evals.shape, np.float32)
        evals = (draws < evals).astype(np.float32)
    for name, arr in (("training data", train), ("evaluation data", evals)):
        jdata.validate_images(arr, name, check_range=True)
    return Datasets(np.asarray(train, np.float32), np.asarray(evals, np.float32), labels)


def build_model(config: ml_collections.ConfigDict, data_shape) -> VAE:
    """Build the VAE described by ``config.model`` for observations of ``data_shape``."""
    m = config.model
    data_shape = tuple(int(s) for s in data_shape)
    latent = int(config.latent_dim)
    image = len(data_shape) == 3
    if (m.encoder == "conv" or m.decoder == "conv") and not image:
        raise ValueError(f"Convolutional networks need [H, W, C] images, not {data_shape}.")

    if m.prior == "standard":
        prior = StandardNormalPrior(latent)
    else:
        prior = MixturePrior(latent, int(m.prior_components))

    if m.encoder == "mlp":
        encoder = MLP(tuple(m.encoder_hidden), m.activation, in_event_ndims=len(data_shape),
                      weight_init=m.init)
    else:
        encoder = ConvEncoder(tuple(m.conv_encoder_features), out_dim=m.conv_encoder_out or None)
    posterior = DiagGaussianHead(latent, scale=m.posterior_scale, weight_init=m.init)

    if m.likelihood == "gaussian":
        likelihood = GaussianHead(data_shape, project=m.decoder == "mlp",
                                  scale=m.gaussian_scale, fixed_scale=m.fixed_scale,
                                  weight_init=m.init)
        params_per_pixel = 2 if m.gaussian_scale == "predicted" else 1
    else:
        head = BernoulliHead if m.likelihood == "bernoulli" else ContinuousBernoulliHead
        likelihood = head(data_shape, project=m.decoder == "mlp", weight_init=m.init)
        params_per_pixel = 1
    if m.decoder == "mlp":
        decoder = MLP(tuple(m.decoder_hidden), m.activation, weight_init=m.init)
    else:
        decoder = ConvDecoder(data_shape[:2], data_shape[2] * params_per_pixel,
                              tuple(m.conv_decoder_features))
    return VAE(data_shape, prior, encoder, posterior, decoder, likelihood)


def build_loss(config: ml_collections.ConfigDict, model: VAE, beta=None):
    """The training loss named by ``config.objective`` (``beta`` overrides the config's, and
    may be a traced value inside a vmapped sweep)."""
    obj = config.objective
    beta = float(obj.beta) if beta is None else beta
    return make_elbo_loss(model, beta=beta, num_samples=int(obj.num_samples), kl=obj.kl)


def build_optimizer(config: ml_collections.ConfigDict):
    """The optax optimiser from ``config.learning_rate`` and ``config.optim`` (with an injected
    learning rate when ``config.sweep.learning_rate`` sweeps it)."""
    o = config.optim
    groups = {k: float(v) for k, v in dict(o.param_groups).items()}
    return make_optimizer(float(config.learning_rate), name=o.name,
                          grad_clip=float(o.grad_clip), param_groups=groups,
                          inject=bool(config.sweep.learning_rate))


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
