"""Classical latent-variable models as pure JAX functions: fit -> NamedTuple, then functions.

- :mod:`jvae.classic.pca`: PCA by the SVD (:func:`fit_pca`, :func:`pca_encode`,
  :func:`pca_decode`).
- :mod:`jvae.classic.ppca`: probabilistic PCA (Tipping & Bishop, 1999): closed-form maximum
  likelihood, the exact marginal and posterior, sampling, and :func:`ppca_to_vae`.
- :mod:`jvae.classic.linear_vae`: the linear VAE of Lucas et al. (2019), whose generative
  model is PPCA: :func:`make_linear_vae`, :func:`fit_linear_vae`, its exact log-likelihood and
  closed-form ELBO, and the signs of posterior collapse.
- :mod:`jvae.classic.gmm`: Gaussian mixtures with full covariances fitted by EM in one
  compiled loop (:func:`fit_gmm`), with the E- and M-steps as functions of their own.
"""

from jvae.classic.gmm import (GMM, GMMFit, fit_gmm, gmm_log_prob, gmm_m_step,
                              gmm_responsibilities)
from jvae.classic.linear_vae import (LinearVAEFit, fit_linear_vae, latent_usage,
                                     linear_vae_elbo, linear_vae_log_likelihood,
                                     linear_vae_to_ppca, make_linear_vae, ppca_fixed_noise)
from jvae.classic.pca import PCA, fit_pca, pca_decode, pca_encode
from jvae.classic.ppca import (PPCA, fit_ppca, ppca_log_likelihood, ppca_marginal,
                               ppca_posterior, ppca_sample, ppca_to_vae)

__all__ = [
    "PCA", "fit_pca", "pca_encode", "pca_decode",
    "PPCA", "fit_ppca", "ppca_marginal", "ppca_log_likelihood", "ppca_posterior",
    "ppca_sample", "ppca_to_vae",
    "LinearVAEFit", "make_linear_vae", "fit_linear_vae", "linear_vae_to_ppca",
    "linear_vae_log_likelihood", "linear_vae_elbo", "latent_usage", "ppca_fixed_noise",
    "GMM", "GMMFit", "fit_gmm", "gmm_log_prob", "gmm_responsibilities", "gmm_m_step",
]
