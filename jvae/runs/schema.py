"""The run config's schema: every field's type, range and choices checked before anything is
built, so a typo or an impossible combination fails at start-up in one line naming the field
(with the closest valid name) instead of deep inside a traced function."""

from __future__ import annotations

import difflib

import ml_collections
import numpy as np

from jvae import data as jdata
from jvae.models.conv import CONV_IMPLS
from jvae.models.flows import FLOW_POSTERIORS
from jvae.models.conv_nets import CONV_PRESETS
from jvae.models.nets import ACTIVATIONS, INITS, check_dropout_rate
from jvae.models.precision import check_compute_dtype
from jvae.objectives.control_variates import CONTROL_VARIATES
from jvae.objectives.iwae import IWAE_ESTIMATORS
from jvae.objectives.kl_schedule import BETA_SCHEDULES
from jvae.training.optimizers import OPTIMIZERS
from jvae.runs.fields import check_ignored, check_types

__all__ = ["validate_config", "check_ranges", "LIKELIHOOD_SUPPORT", "KINDS", "LIKELIHOODS",
           "PRIORS", "POSTERIORS", "NETWORKS", "OBJECTIVES", "SCHEDULES", "SYNTHETIC",
           "sweep_values"]

KINDS = ("vae", "autoencoder")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")
PRIORS = ("standard", "mixture", "vamp")
POSTERIORS = ("gaussian", "mixture") + FLOW_POSTERIORS
NETWORKS = ("mlp", "conv")
OBJECTIVES = ("elbo", "sfe", "mixture", "nvil", "iwae", "vimco")
SCHEDULES = ("constant", "iwae")
SYNTHETIC = ("gaussian2d",)
SCALES = ("softplus", "exp", "log_std")          # jvae.models.heads.positive_scale's kinds
RECONSTRUCTIONS = ("mean", "sample", "both")     # config.eval.reconstructions
# The support of each likelihood's observations (the heads' ``support``), known before the
# model is built so load_data can check the data against it.
LIKELIHOOD_SUPPORT = {"bernoulli": jdata.UNIT_INTERVAL,
                      "continuous_bernoulli": jdata.UNIT_INTERVAL, "gaussian": jdata.REAL}


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
    """Raise ``ValueError`` naming the first invalid field of a run config.

    The groups are checked in order: the top-level numbers and seeds, the dataset, the
    optimiser, the model, the objective with the posterior it needs, the evaluation, the
    sweep, the config's declared ranges, the data/likelihood pairing, and last the fields
    set although the run would ignore them (:func:`jvae.runs.fields.check_ignored`). Before
    all of them every field's type is checked against its default
    (:func:`jvae.runs.fields.check_types`).
    """
    check_types(config)
    _check_numbers(config)
    _check_dataset(config)
    _check_optimizer(config)
    _check_model(config)
    _check_objective(config)
    _check_posterior(config)
    _check_eval(config)
    sweep_values(config)
    check_ranges(config)
    if config.dataset.name in SYNTHETIC and config.model.likelihood != "gaussian":
        raise ValueError("config.model.likelihood must be 'gaussian' for the 2-D Gaussian data "
                         f"(config.dataset.name 'gaussian2d'), got {config.model.likelihood!r}.")
    check_ignored(config)


def _check_numbers(config: ml_collections.ConfigDict) -> None:
    """Top-level integers and numbers, the seeds' 32-bit range, the divergence guard."""
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
    if not isinstance(config.get("drop_last", True), bool):
        raise ValueError(f"config.drop_last must be true or false, got {config.drop_last!r}.")


def _check_dataset(config: ml_collections.ConfigDict) -> None:
    """``config.dataset``: the name, binarisation, sizes, limits, centring, dev split."""
    ds = config.dataset
    from jvae.runs.streaming import parse_budget     # (streaming imports the builders' data)

    parse_budget(ds.get("memory_budget", "auto"))
    user = jdata.is_user_name(ds.name)
    if user:
        if not ds.name.split(":", 1)[1]:
            raise ValueError(f"config.dataset.name {ds.name!r} names no file; give a path, "
                             f"e.g. '{ds.name}data/train'.")
    elif not jdata.is_tfds_name(ds.name):
        _choice("dataset", ds.name, jdata.FILE_DATASETS + SYNTHETIC)
    elif len(ds.name) == len("tfds:"):
        raise ValueError("config.dataset.name 'tfds:' names no dataset; use e.g. "
                         "'tfds:cifar10' or 'tfds:celeb_a'.")
    _choice("binarize", ds.binarize, jdata.BINARIZE)
    if not 0.0 < float(ds.threshold) < 1.0:
        raise ValueError(f"config.dataset.threshold must be in (0, 1), got {ds.threshold!r}.")
    for field in ("resize", "limit_train", "limit_eval"):
        _positive(f"config.dataset.{field} (0: off)", ds[field], allow_zero=True)
    train_size = 50000 if ds.name == "cifar10" else np.inf if user else 60000
    if not 0 <= int(ds.validation_size) < train_size:
        raise ValueError(f"config.dataset.validation_size must be in [0, {train_size}), got "
                         f"{ds.validation_size!r}.")
    _check_centre(config)
    _positive("config.dataset.count", ds.count)
    _positive("config.dataset.dev_size (0: no dev split)", ds.dev_size, allow_zero=True)
    _seed_range("config.dataset.dev_seed", ds.dev_seed)
    _integer("config.dataset.validation_seed", ds.get("validation_seed", 0))
    _seed_range("config.dataset.validation_seed", ds.get("validation_seed", 0))
    _choice("dataset mode", ds.mode, ("univariate", "multivariate"))


def _check_optimizer(config: ml_collections.ConfigDict) -> None:
    """``config.optim``: the optimiser's name, clipping, schedule, epsilon and decays."""
    _choice("optimizer", config.optim.name, OPTIMIZERS)
    _positive("config.optim.grad_clip (0: off)", config.optim.grad_clip, allow_zero=True)
    _choice("schedule", config.optim.schedule, SCHEDULES)
    _positive("config.optim.eps", config.optim.eps)
    _positive("config.optim.weight_decay", config.optim.weight_decay, allow_zero=True)
    if not 0 < float(config.optim.rmsprop_decay) < 1:
        raise ValueError(f"config.optim.rmsprop_decay must be in (0, 1), got "
                         f"{config.optim.rmsprop_decay!r}.")
    _positive("config.optim.initial_accumulator", config.optim.get("initial_accumulator", 0.0),
              allow_zero=True)


def _check_model(config: ml_collections.ConfigDict) -> None:
    """``config.model``: kind, networks, likelihood, prior, init, dropout."""
    m = config.model
    _choice("model kind", m.kind, KINDS)
    if m.kind == "autoencoder":
        _check_autoencoder(config)
    _choice("encoder", m.encoder, NETWORKS)
    _choice("decoder", m.decoder, NETWORKS)
    _choice("model.conv_impl", m.get("conv_impl", "auto"), CONV_IMPLS)
    check_compute_dtype(m.get("compute_dtype", "float32"), "config.model.compute_dtype")
    if m.get("conv_preset", ""):
        _choice("model.conv_preset", m.conv_preset, CONV_PRESETS)
    _choice("likelihood", m.likelihood, LIKELIHOODS)
    _choice("prior", m.prior, PRIORS)
    _choice("init", m.init, INITS)
    _choice("model.activation", m.activation, ACTIVATIONS)
    _choice("model.posterior_scale", m.posterior_scale, SCALES)
    _choice("model.likelihood_scale", m.get("likelihood_scale", "softplus"), SCALES)
    for field in ("encoder_dropout", "decoder_dropout"):
        check_dropout_rate(m.get(field, 0.0), f"config.model.{field}")
    _integer("config.model.posterior_hidden", m.get("posterior_hidden", 0))
    _positive("config.model.posterior_hidden (0: none)", m.get("posterior_hidden", 0),
              allow_zero=True)
    _positive("config.model.posterior_init_spread", m.get("posterior_init_spread", 1.0),
              allow_zero=True)
    _choice("model.likelihood_bias", m.get("likelihood_bias", "zero"), ("zero", "marginal"))
    if m.get("likelihood_bias", "zero") == "marginal" and (
            m.likelihood != "bernoulli" or m.decoder != "mlp" or m.kind != "vae"):
        raise ValueError("config.model.likelihood_bias = 'marginal' needs a VAE with "
                         "likelihood 'bernoulli' and an mlp decoder, got likelihood "
                         f"{m.likelihood!r}, decoder {m.decoder!r}, kind {m.kind!r}.")
    if not isinstance(m.get("encoder_activate_final", True), bool):
        raise ValueError("config.model.encoder_activate_final must be true or false, got "
                         f"{m.encoder_activate_final!r}.")


def _check_objective(config: ml_collections.ConfigDict) -> None:
    """``config.objective``: the estimator and the control variates it may take."""
    obj = config.objective
    _choice("objective", obj.name, OBJECTIVES)
    _positive("config.objective.num_samples", obj.num_samples)
    _positive("config.objective.beta", obj.beta, allow_zero=True)
    _choice("kl", obj.kl, ("auto", "analytic", "mc"))
    _choice("beta schedule (config.objective.beta_schedule)", obj.beta_schedule,
            BETA_SCHEDULES)
    _integer("config.objective.kl_warmup_steps", obj.kl_warmup_steps)
    _positive("config.objective.kl_warmup_steps", obj.kl_warmup_steps, allow_zero=True)
    if obj.beta_schedule != "constant" and int(obj.kl_warmup_steps) <= 0:
        raise ValueError(f"config.objective.beta_schedule {obj.beta_schedule!r} needs "
                         f"config.objective.kl_warmup_steps > 0, got {obj.kl_warmup_steps!r}.")
    _positive("config.objective.kl_warmup_start", obj.kl_warmup_start, allow_zero=True)
    _positive("config.objective.free_bits", obj.free_bits, allow_zero=True)
    _choice("IWAE estimator", obj.estimator, IWAE_ESTIMATORS)
    for cv in obj.control_variates:
        _choice("control variate", cv, CONTROL_VARIATES)
    if obj.control_variates and obj.name not in ("sfe", "mixture", "nvil", "vimco"):
        raise ValueError(f"config.objective.control_variates apply to score-function "
                         f"objectives ('sfe', 'mixture', 'nvil', 'vimco'), not {obj.name!r}.")
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


def _check_posterior(config: ml_collections.ConfigDict) -> None:
    """``config.model.posterior`` and the objectives and priors it needs or allows."""
    m = config.model
    obj = config.objective
    _choice("posterior", m.posterior, POSTERIORS)
    if m.posterior == "mixture":
        _positive("config.model.posterior_components", m.posterior_components)
        if obj.name in ("elbo", "iwae"):
            raise ValueError(
                f"config.objective.name {obj.name!r} needs a reparameterisable posterior; "
                "config.model.posterior 'mixture' trains with objective 'nvil', 'mixture', "
                "'sfe' or 'vimco'.")
    if obj.name == "mixture" and m.posterior != "mixture":
        raise ValueError("config.objective.name 'mixture' needs config.model.posterior="
                         f"'mixture', got {m.posterior!r}.")
    if m.posterior in FLOW_POSTERIORS:
        _check_flow(config)
    if m.prior in ("mixture", "vamp"):
        _positive("config.model.prior_components", m.prior_components)


def _check_eval(config: ml_collections.ConfigDict) -> None:
    """``config.eval``: evaluation frequency, dev assessments, sample counts."""
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
    _integer("config.eval.latent_snapshot_every", config.eval.get("latent_snapshot_every", 0))
    _positive("config.eval.latent_snapshot_every (0: off)",
              config.eval.get("latent_snapshot_every", 0), allow_zero=True)
    _choice("eval.reconstructions", config.eval.get("reconstructions", "mean"), RECONSTRUCTIONS)
    _positive("config.eval.ll_samples", config.eval.ll_samples, allow_zero=True)


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


def sweep_values(config: ml_collections.ConfigDict) -> dict[str, np.ndarray] | None:
    """The vmapped hyperparameter axis of a sweep run, or ``None``.

    ``config.sweep.beta`` and ``config.sweep.learning_rate`` are tuples of values; a non-empty
    one defines the sweep (both non-empty: equal lengths, paired element by element); the
    other hyperparameter keeps its config value. Returns ``{"beta": [H], "learning_rate": [H]}``.
    """
    betas, rates = tuple(config.sweep.beta), tuple(config.sweep.learning_rate)
    if not betas and not rates:
        return None
    for field, values in (("beta", betas), ("learning_rate", rates)):
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"config.sweep.{field}[{i}] must be a number, got {v!r}.")
            if not np.isfinite(v) or (v < 0 if field == "beta" else v <= 0):
                bound = ">= 0" if field == "beta" else "> 0"
                raise ValueError(f"config.sweep.{field}[{i}] must be finite and {bound}, got "
                                 f"{v!r}.")
    if betas and rates and len(betas) != len(rates):
        raise ValueError(f"config.sweep.beta ({len(betas)} values) and "
                         f"config.sweep.learning_rate ({len(rates)}) must have equal lengths.")
    if int(config.num_seeds) != 1:
        raise ValueError(f"config.num_seeds must be 1 with a sweep (config.sweep.beta or "
                         f"config.sweep.learning_rate: one model per value), got "
                         f"{config.num_seeds!r}.")
    size = max(len(betas), len(rates))
    beta = np.asarray(betas or [config.objective.beta] * size, np.float32)
    lr = np.asarray(rates or [config.learning_rate] * size, np.float32)
    return {"beta": beta, "learning_rate": lr}
