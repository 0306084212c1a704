"""jvae: variational inference in deep latent-variable models, in JAX.

The public API, flat. See README.md for a tour and ``experiments/configs`` for runs.
"""

from jvae.autoencoder import PointHead, is_autoencoder, make_autoencoder
from jvae.builders import build_loss, build_model, build_optimizer, load_data, validate_config
from jvae.checkpoints import CheckpointError, Checkpointer, CheckpointSkippedWarning
from jvae.classic import (GMM, PCA, PPCA, GMMFit, LinearVAEFit, fit_gmm, fit_linear_vae,
                          fit_pca, fit_ppca, gmm_log_prob, gmm_m_step, gmm_responsibilities,
                          latent_usage, linear_vae_elbo, linear_vae_log_likelihood,
                          linear_vae_to_ppca, make_linear_vae, pca_decode, pca_encode,
                          ppca_fixed_noise, ppca_log_likelihood, ppca_marginal, ppca_posterior,
                          ppca_sample, ppca_to_vae)
from jvae.config import default_config
from jvae.config_io import (ConfigError, apply_override, config_from_json, load_config_file,
                            resume_differences)
from jvae.data import (
    DATASETS,
    REAL,
    UNIT_INTERVAL,
    ChecksumError,
    DataNotFoundError,
    InvalidDataError,
    Split,
    Support,
    binarize_dynamic,
    binarize_static,
    centre,
    check_data,
    find_data_dir,
    gaussian2d,
    likelihood_support,
    load_dataset,
    load_split,
    resize_images,
    uncentre,
    validate_images,
)
from jvae.data import download as download_dataset
from jvae.distributions import (
    Bernoulli,
    FlatIndependent,
    bernoulli,
    continuous_bernoulli,
    continuous_bernoulli_log_normalizer,
    diag_gaussian,
    gaussian,
    has_analytic_kl,
    kl_divergence,
    mixture_diag_gaussian,
    sample_mixture,
)
# The function jvae.evaluation.evaluate is not re-exported: ``jvae.evaluate`` is the CLI module.
from jvae.evaluation import importance_log_likelihood, make_evaluator
from jvae.experiment import read_metrics, restore_run, train_and_evaluate
from jvae.guards import DivergenceError, first_divergent_step
from jvae.heads import (
    BernoulliHead,
    ContinuousBernoulliHead,
    DiagGaussianHead,
    GaussianHead,
    MixtureGaussianHead,
    positive_scale,
)
from jvae.lock import WorkdirLock, WorkdirLockedError
from jvae.model import (VAE, init_params, log_joint, naive_lower_bound, reconstruct, sample_prior,
                        training_apply)
from jvae.conv import Conv, ConvTranspose
from jvae.nets import MLP, ConvDecoder, ConvEncoder, conv_preset
from jvae.objectives import (
    CONTROL_VARIATES,
    CVContext,
    ControlVariate,
    EstimatorState,
    Objective,
    as_objective,
    centred_reward,
    chain,
    elbo_terms,
    iwae_bound,
    learned_baseline,
    leave_one_out,
    make_control_variate,
    make_autoencoder_loss,
    make_elbo_loss,
    make_iwae_loss,
    make_mixture_objective,
    make_sfe_objective,
    make_vimco_objective,
    reconstruction_terms,
    scaled_reward,
    score_surrogate,
    self_critic,
    vimco_baseline,
)
from jvae.priors import MixturePrior, StandardNormalPrior, VampPrior, vamp_mixture
from jvae.flows import (IAF, CouplingFlowHead, FlowPosterior, IAFHead, Planar,
                        PlanarFlowHead)
from jvae.made import MADE, MADEParams, made_apply, made_masks
from jvae.sharding import (
    barrier,
    batch_sharding,
    broadcast_flag,
    check_batch_divisible,
    is_main_process,
    make_mesh,
    replicate,
    replicated,
    shard_leading_axis,
    to_host,
)
from jvae.training import (
    EpochPlan,
    NonFiniteLossError,
    TrainState,
    first_non_finite,
    make_optimizer,
    make_train_epoch,
    trainable,
)
from jvae.embedding import TSNEResult, joint_probabilities, tsne, tsne_kl_divergence
from jvae.inspection import (conditional_observations, interpolate_latents, prior_observations,
                             prior_samples_with_components)
from jvae import testing  # noqa: E402,F401  a subpackage (jvae.testing.*), not flattened

__version__ = "0.1.0"

__all__ = [
    "GMM", "GMMFit", "PCA", "PPCA", "fit_gmm", "fit_pca", "fit_ppca", "gmm_log_prob",
    "gmm_m_step", "gmm_responsibilities", "pca_decode", "pca_encode", "ppca_log_likelihood",
    "ppca_marginal", "ppca_posterior", "ppca_sample", "ppca_to_vae",
    "LinearVAEFit", "fit_linear_vae", "latent_usage", "linear_vae_elbo",
    "linear_vae_log_likelihood", "linear_vae_to_ppca", "make_linear_vae", "ppca_fixed_noise",
    "CheckpointError", "CheckpointSkippedWarning", "ConfigError", "DivergenceError",
    "WorkdirLock", "WorkdirLockedError", "apply_override", "config_from_json",
    "first_divergent_step", "load_config_file", "resume_differences",
    "Bernoulli", "BernoulliHead", "Checkpointer", "ContinuousBernoulliHead", "Conv",
    "ConvTranspose", "conv_preset", "ConvDecoder",
    "ConvEncoder", "DATASETS", "DataNotFoundError", "DiagGaussianHead", "FlatIndependent",
    "GaussianHead", "MLP",
    "MixturePrior", "NonFiniteLossError", "Split", "StandardNormalPrior", "TrainState", "VAE",
    "bernoulli", "binarize_dynamic", "binarize_static", "build_loss", "build_model",
    "build_optimizer", "continuous_bernoulli", "continuous_bernoulli_log_normalizer",
    "default_config", "diag_gaussian", "download_dataset", "elbo_terms",
    "find_data_dir", "first_non_finite", "gaussian", "gaussian2d", "has_analytic_kl",
    "importance_log_likelihood", "init_params", "kl_divergence", "load_data", "load_dataset",
    "load_split", "log_joint", "make_elbo_loss", "make_evaluator", "make_optimizer",
    "make_train_epoch", "EpochPlan", "naive_lower_bound", "positive_scale", "read_metrics",
    "reconstruct", "resize_images", "restore_run", "sample_prior", "train_and_evaluate",
    "training_apply",
    "validate_config", "validate_images", "batch_sharding", "check_batch_divisible",
    "make_mesh", "replicate", "replicated", "shard_leading_axis",
    "barrier", "broadcast_flag", "is_main_process", "to_host",
    "CONTROL_VARIATES", "CVContext", "ControlVariate", "EstimatorState", "MixtureGaussianHead",
    "Objective", "as_objective", "centred_reward", "chain", "iwae_bound", "learned_baseline",
    "leave_one_out", "make_control_variate", "make_iwae_loss", "make_mixture_objective",
    "make_sfe_objective", "make_vimco_objective", "mixture_diag_gaussian", "sample_mixture",
    "scaled_reward", "score_surrogate", "self_critic", "trainable", "vimco_baseline",
    "ChecksumError", "InvalidDataError", "REAL", "Support", "UNIT_INTERVAL", "check_data",
    "likelihood_support",
    "PointHead", "is_autoencoder", "make_autoencoder", "make_autoencoder_loss",
    "reconstruction_terms",
    "TSNEResult", "joint_probabilities", "tsne", "tsne_kl_divergence",
    "conditional_observations", "prior_observations", "prior_samples_with_components",
    "interpolate_latents", "centre", "uncentre",
    "VampPrior", "vamp_mixture", "FlowPosterior", "Planar", "IAF", "PlanarFlowHead", "IAFHead",
    "CouplingFlowHead", "MADE", "MADEParams", "made_apply", "made_masks",
]
