"""Evaluation: distortion, rate, ELBO and the importance-sampled log-likelihood; the DPM2
notebook's inspection samplers; t-SNE maps of latent codes. Pure and jittable."""

from jvae.evaluation.inspection import (conditional_observations, interpolate_latents,
                                        prior_observations, prior_samples_with_components)
from jvae.evaluation.likelihood import evaluate, importance_log_likelihood, make_evaluator
from jvae.evaluation.embedding import (TSNEMap, TSNEResult, joint_probabilities, tsne, tsne_kl_divergence,
                                  tsne_map)

__all__ = ["conditional_observations", "interpolate_latents", "prior_observations",
           "prior_samples_with_components", "evaluate", "importance_log_likelihood",
           "make_evaluator", "TSNEResult", "TSNEMap", "joint_probabilities", "tsne",
           "tsne_kl_divergence", "tsne_map"]
