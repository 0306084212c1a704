"""Evaluation: distortion, rate, ELBO and the importance-sampled log-likelihood; the DPM2
notebook's inspection samplers; posterior statistics of a data set and its rate by latent
dimension; t-SNE maps of latent codes. Pure and jittable."""

from jvae.evaluation.inspection import (conditional_observations, interpolate_latents,
                                        prior_observations, prior_samples_with_components)
from jvae.evaluation.latents import (get_latent_stats, latent_marginals, posterior_stats,
                                     rate_per_dimension)
from jvae.evaluation.likelihood import evaluate, importance_log_likelihood, make_evaluator
from jvae.evaluation.embedding import (TSNEMap, TSNEResult, joint_probabilities, tsne, tsne_kl_divergence,
                                  tsne_map)

__all__ = ["conditional_observations", "interpolate_latents", "prior_observations",
           "prior_samples_with_components", "evaluate", "importance_log_likelihood",
           "make_evaluator", "TSNEResult", "TSNEMap", "joint_probabilities", "tsne",
           "tsne_kl_divergence", "tsne_map", "get_latent_stats", "posterior_stats",
           "rate_per_dimension", "latent_marginals"]
