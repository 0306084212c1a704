"""Figures for VAE experiments: image grids, reconstructions, interpolations, curves, scatters.

Every function takes NumPy arrays (anything ``np.asarray`` accepts, JAX arrays included) and
writes a PNG file. Figures are built with :class:`matplotlib.figure.Figure` and rendered by the
Agg canvas directly, so this module never touches pyplot's global state or the user's backend:
nothing is left open after a call, and it is safe in notebooks, scripts and headless CI alike.
Parent directories of ``path`` are created as needed; every ``save_*`` returns the written path.

The figures live in thirteen modules: :mod:`jvae.plotting.images` (grids, reconstructions,
interpolations, oversampled prior and conditional samples), :mod:`jvae.plotting.curves`
(training curves per epoch), :mod:`jvae.plotting.steps` (curves per step and of the dev
assessments), :mod:`jvae.plotting.mixture` (a mixture prior's samples by component),
:mod:`jvae.plotting.latents` (2-D scatters), :mod:`jvae.plotting.latent_space` (codes with
error bars, the decoded manifold, t-SNE), :mod:`jvae.plotting.snapshots` (the latent
space epoch by epoch), :mod:`jvae.plotting.image_panels` (components as images,
reconstruction rows with their difference, labelled images), :mod:`jvae.plotting.rate_distortion`
(a beta sweep in the rate-distortion plane), :mod:`jvae.plotting.rates` (the rate of each
latent dimension), :mod:`jvae.plotting.gains` (gains over a reference model as bars),
:mod:`jvae.plotting.scaling` (log-log scaling laws with reference slopes) and
:mod:`jvae.plotting.linear_vae` (a linear VAE against PPCA); every public name is
re-exported here.
"""

from jvae.plotting.curves import DEFAULT_CURVE_KEYS, save_curves, save_lines
from jvae.plotting.gains import save_gain_bars
from jvae.plotting.image_panels import (save_components, save_labelled_images,
                                       save_reconstruction_rows)
from jvae.plotting.images import (as_images, grid_zoom, image_grid, save_conditional_samples,
                                  save_image_grid, save_interpolations, save_oversampled,
                                  save_reconstructions)
from jvae.plotting.latent_space import save_code_scatter, save_latent_tsne, save_manifold
from jvae.plotting.latents import save_latent_scatter, save_scatter_2d
from jvae.plotting.linear_vae import save_linear_vae_ppca
from jvae.plotting.mixture import save_prior_histograms, save_prior_pairs, save_prior_tsne
from jvae.plotting.rate_distortion import save_rate_distortion
from jvae.plotting.rates import save_latent_rates
from jvae.plotting.scaling import save_scaling_panels
from jvae.plotting.snapshots import save_latent_snapshots
from jvae.plotting.steps import (DEFAULT_DEV_KEYS, DEFAULT_STEP_KEYS, save_compared_curves,
                                 save_dev_curves, save_step_curves)

__all__ = [
    "image_grid",
    "grid_zoom",
    "save_image_grid",
    "save_reconstructions",
    "save_interpolations",
    "save_curves",
    "save_scatter_2d",
    "save_latent_scatter",
    "DEFAULT_CURVE_KEYS",
    "save_code_scatter",
    "save_manifold",
    "save_latent_tsne",
    "save_components",
    "save_reconstruction_rows",
    "as_images",
    "save_oversampled",
    "save_conditional_samples",
    "DEFAULT_STEP_KEYS",
    "DEFAULT_DEV_KEYS",
    "save_step_curves",
    "save_dev_curves",
    "save_prior_histograms",
    "save_prior_pairs",
    "save_prior_tsne",
    "save_rate_distortion",
    "save_latent_rates",
    "save_gain_bars",
    "save_linear_vae_ppca",
    "save_latent_snapshots",
    "save_labelled_images",
    "save_compared_curves",
    "save_lines",
    "save_scaling_panels",
]
