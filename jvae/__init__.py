"""jvae: variational inference in deep latent-variable models, in JAX.

The public API, flat: every name below is re-exported from the layer that defines it
(``jvae.data``, ``jvae.models``, ``jvae.objectives``, ``jvae.training``, ``jvae.evaluation``,
``jvae.classic``, ``jvae.runs``); ``jvae.plotting`` and ``jvae.testing`` are subpackages of
their own. See README.md for a tour and docs/guides/architecture.md for the layers.
"""

# First, before any module computes: XLA reads XLA_FLAGS when JAX's CPU backend starts.
from jvae.xla import xla_workarounds, XLAWorkaround, XLAWorkaroundWarning
from jvae.data import (
    ArraySource, binarize_dynamic, binarize_static, centre, check_count, check_data, check_number,
    FolderSource, NpySource, NpzSource,
    check_points, ChecksumError, DataNotFoundError,
    DATASETS, find_data_dir, gaussian2d, InvalidDataError, likelihood_support, load_dataset,
    load_split, REAL, resize_images, Split, Support, uncentre, UNIT_INTERVAL, validate_images,
)
from jvae.models import (
    Bernoulli, bernoulli, BernoulliHead, continuous_bernoulli, continuous_bernoulli_log_normalizer,
    ContinuousBernoulliHead, Conv, conv_preset, ConvDecoder, ConvEncoder, ConvTranspose,
    CouplingFlowHead, diag_gaussian, DiagGaussianHead, FlatIndependent, FlowPosterior, gaussian,
    GaussianHead, has_analytic_kl, is_reparameterised, IAF, IAFHead, init_params, is_autoencoder, kl_divergence,
    log_joint, MADE, made_apply, made_masks, MADEParams, make_autoencoder, mixture_diag_gaussian,
    MixtureGaussianHead, MixturePrior, MLP, naive_lower_bound, normal_kl, normal_nll, Planar,
    PlanarFlowHead, PointHead,
    positive_scale, reconstruct, sample_mixture, sample_prior, StandardNormalPrior, training_apply,
    VAE, vamp_mixture, VampPrior,
)
from jvae.objectives import (
    as_objective, centred_reward, chain, CONTROL_VARIATES, ControlVariate, CVContext, elbo_terms,
    EstimatorState, iwae_bound, learned_baseline, leave_one_out, make_autoencoder_loss,
    make_control_variate, make_elbo_loss, make_iwae_loss, make_mixture_objective,
    make_sfe_objective, make_vimco_objective, make_nvil_objective, accepts_mask, batch_mean,
    accepts_step, batch_std, free_bits_rate, kl_warmup, Objective, reconstruction_terms, scaled_reward,
    score_surrogate, self_critic, vimco_baseline,
)
from jvae.training import (
    DivergenceError, EpochPlan, first_divergent_step, first_non_finite, make_optimizer,
    make_train_epoch, NonFiniteLossError, steps_per_epoch, trainable, TrainState,
)
from jvae.training.sharding import (
    barrier, batch_sharding, broadcast_flag, check_batch_divisible, is_main_process, make_mesh,
    replicate, replicated, shard_leading_axis, to_host,
)
from jvae.evaluation import (
    conditional_observations, get_latent_stats, importance_log_likelihood, interpolate_latents,
    joint_probabilities, posterior_stats,
    make_evaluator, prior_observations, prior_samples_with_components, tsne, tsne_kl_divergence,
    tsne_map, TSNEMap, TSNEResult,
)
from jvae.classic import (
    fit_gmm, fit_linear_vae, fit_pca, fit_ppca, GMM, gmm_log_prob, gmm_m_step,
    gmm_responsibilities, GMMFit, latent_usage, linear_vae_elbo, linear_vae_log_likelihood,
    linear_vae_to_ppca, LinearVAEFit, make_linear_vae, PCA, pca_decode, pca_encode, PPCA,
    ppca_fixed_noise, ppca_log_likelihood, ppca_marginal, ppca_posterior, ppca_sample, ppca_to_vae,
)
from jvae.runs import (
    apply_override, build_loss, build_model, build_optimizer, Checkpointer, CheckpointError,
    CheckpointSkippedWarning, config_from_json, ConfigError, default_config, load_config_file,
    load_data, load_run, read_latent_snapshots, read_metrics, restore_run, RestoredRun,
    resume_differences, train_and_evaluate, validate_config, WorkdirLock, WorkdirLockedError,
    write_latent_snapshot,
)
from jvae.data import download as download_dataset
from jvae import plotting, testing  # noqa: F401  subpackages (jvae.plotting.*, jvae.testing.*), not flattened

__version__ = "0.1.0"

__all__ = [
    "GMM", "GMMFit", "PCA", "PPCA", "fit_gmm", "fit_pca", "fit_ppca", "gmm_log_prob", "gmm_m_step",
    "gmm_responsibilities", "pca_decode", "pca_encode", "ppca_log_likelihood", "ppca_marginal",
    "ppca_posterior", "ppca_sample", "ppca_to_vae", "LinearVAEFit", "fit_linear_vae",
    "latent_usage", "linear_vae_elbo", "linear_vae_log_likelihood", "linear_vae_to_ppca",
    "make_linear_vae", "ppca_fixed_noise", "CheckpointError", "CheckpointSkippedWarning",
    "ConfigError", "DivergenceError", "WorkdirLock", "WorkdirLockedError", "apply_override",
    "config_from_json", "first_divergent_step", "load_config_file", "resume_differences",
    "Bernoulli", "BernoulliHead", "Checkpointer", "ContinuousBernoulliHead", "Conv",
    "ConvTranspose", "conv_preset", "ConvDecoder", "ConvEncoder", "DATASETS", "DataNotFoundError",
    "DiagGaussianHead", "FlatIndependent", "GaussianHead", "MLP", "MixturePrior",
    "NonFiniteLossError", "Split", "StandardNormalPrior", "TrainState", "VAE", "bernoulli",
    "binarize_dynamic", "binarize_static", "build_loss", "build_model", "build_optimizer",
    "continuous_bernoulli", "continuous_bernoulli_log_normalizer", "default_config",
    "diag_gaussian", "download_dataset", "elbo_terms", "find_data_dir", "first_non_finite",
    "gaussian", "gaussian2d", "has_analytic_kl", "importance_log_likelihood", "init_params",
    "kl_divergence", "load_data", "load_dataset", "load_split", "log_joint", "make_elbo_loss",
    "make_evaluator", "make_optimizer", "make_train_epoch", "EpochPlan", "naive_lower_bound",
    "positive_scale", "read_metrics", "reconstruct", "resize_images", "restore_run",
    "sample_prior", "train_and_evaluate", "training_apply", "validate_config", "validate_images",
    "batch_sharding", "check_batch_divisible", "make_mesh", "replicate", "replicated",
    "shard_leading_axis", "barrier", "broadcast_flag", "is_main_process", "to_host",
    "CONTROL_VARIATES", "CVContext", "ControlVariate", "EstimatorState", "MixtureGaussianHead",
    "Objective", "as_objective", "centred_reward", "chain", "iwae_bound", "learned_baseline",
    "leave_one_out", "make_control_variate", "make_iwae_loss", "make_mixture_objective",
    "make_sfe_objective", "make_vimco_objective", "mixture_diag_gaussian", "sample_mixture",
    "scaled_reward", "score_surrogate", "self_critic", "trainable", "vimco_baseline",
    "ChecksumError", "InvalidDataError", "REAL", "Support", "UNIT_INTERVAL", "check_data",
    "likelihood_support", "PointHead", "is_autoencoder", "make_autoencoder",
    "make_autoencoder_loss", "reconstruction_terms", "TSNEResult", "joint_probabilities", "tsne",
    "tsne_kl_divergence", "conditional_observations", "prior_observations",
    "prior_samples_with_components", "interpolate_latents", "centre", "uncentre", "VampPrior",
    "vamp_mixture", "FlowPosterior", "Planar", "IAF", "PlanarFlowHead", "IAFHead",
    "CouplingFlowHead", "MADE", "MADEParams", "made_apply", "made_masks", "TSNEMap", "tsne_map",
    "make_nvil_objective", "accepts_mask", "batch_mean", "batch_std", "accepts_step",
    "kl_warmup", "free_bits_rate", "is_reparameterised",
    "steps_per_epoch",
    "normal_kl", "normal_nll", "get_latent_stats", "posterior_stats", "write_latent_snapshot",
    "read_latent_snapshots",
    "check_count", "check_number", "check_points", "load_run", "RestoredRun",
    "xla_workarounds", "XLAWorkaround", "XLAWorkaroundWarning",
    "ArraySource", "NpySource", "NpzSource", "FolderSource",
]
