# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The lecture on latent variable models, in jvae
#
# The jvae port of the seed notebook `003_1379d3faf30eb4e9.txt`: its sections in order, each
# code cell done with jvae. Every difference from the seed is stated where it occurs, in a
# sentence that starts with the word Differs in bold.
#
# ```bash
# python -m experiments.notebooks.lecture              # full: a few minutes on 2 CPU cores
# python -m experiments.notebooks.lecture --quick      # or JVAE_NOTEBOOK_QUICK=1: the tests' run
# python -m experiments.notebooks.lecture --docs       # full, and publish numbers and figures
# ```
#
# Results go to `runs/notebooks/lecture/` (`--workdir`); the docs page is
# `docs/notebooks/lecture.md`. The lecture's own comparison table (PCA, PPCA, the autoencoder
# and the VAE scored on the test set) is `python -m experiments.lecture`
# (`docs/results/lecture.md`).
#
# The seed's first cell sets the notebook's CSS for a projector. **Differs:** not ported (no
# computation).

# %%
import jax
import jax.numpy as jnp
import numpy as np

import jvae
from experiments.configs import lecture_autoencoder, lecture_vae2d
from experiments.notebooks import port_io
from jvae import plotting

port = port_io.start("lecture")
QUICK = port.quick
R = port.results

# %% [markdown]
# The MNIST training and test sets (`torchvision.datasets.MNIST` with `ToTensor()`: grey
# levels in [0, 1]) and the first ten training images with their labels:

# %%
train_all = jvae.load_split("mnist", "train_full")
test_split = jvae.load_split("mnist", "test")
n_test = 256 if QUICK else len(test_split.images)
test_images = np.asarray(test_split.images[:n_test])
test_labels = np.asarray(test_split.labels[:n_test])
test_data = test_images.reshape(len(test_images), -1)
plotting.save_labelled_images(train_all.images[:10], train_all.labels[:10],
                              port.figure("mnist_preview"), title="MNIST training images")

# %% [markdown]
# The seed follows the preview with two lone formulas, `p(x_1, x_2) = p(x_2|x_1) p(x_1)` and
# `p(x_1|z) p(x_2|z)`: the chain rule, and the factorisation a latent variable buys (the
# observed variables independent given `z`).
#
# # Latent Variable Models (LVM)
#
# Model `p(x)` through hidden causes: `p(x) = int p(x|z) p(z) dz`; simple `p(x|z)` and `p(z)`
# give a complex `p(x)`; if the integral is intractable, approximate inference.
#
# # Principal Component Analysis (PCA)
#
# The covariance `C = X^T X / N` and its eigenvectors `W`: the orthogonal transformation
# that keeps the most variance in `XW`; keep `K` columns to reduce the dimension.
#
# ### Example: Classical PCA for MNIST using pytorch
#
# `class PCA` centres the data, takes the SVD and keeps `U[:, :K]`: `jvae.fit_pca` (the SVD
# of the centred data), `jvae.pca_encode` and `jvae.pca_decode`. The lecture fits it on
# `test_data`, as here. **Differs:** the export never defines `test_data`; it is taken to be
# the 10000 test images flattened to 784 grey levels. The signs of the components are
# arbitrary (any SVD's), so the projection may be mirrored against the lecture's.

# %%
pca = jvae.fit_pca(jnp.asarray(test_data), 2)
Z = np.asarray(jvae.pca_encode(pca, jnp.asarray(test_data)))
plotting.save_code_scatter(Z, test_labels, port.figure("pca_projection"),
                           axis_labels=("PC 1", "PC 2"),
                           title="PCA fitted on the test images: their projections")
R["pca"] = {"fitted_on": f"{n_test} test images",
            "explained_variance_ratio": np.asarray(pca.explained_variance_ratio)}

# %% [markdown]
# The two most important principal components. **Differs:** drawn on one symmetric
# red-blue scale with a colour bar, where the lecture uses matplotlib's default colour map.

# %%
plotting.save_components(np.asarray(pca.components), port.figure("pca_components"),
                         titles=[f"PC {i}" for i in range(2)], title="the two principal components")

# %% [markdown]
# Plot some reconstructions. **Differs:** a third row shows the difference (data minus
# reconstruction).

# %%
pca_recon = np.asarray(jvae.pca_decode(pca, jnp.asarray(Z[:10])))
plotting.save_reconstruction_rows(test_images[:10], pca_recon.reshape(test_images[:10].shape),
                                  port.figure("pca_reconstructions"), diff_range=1.0,
                                  title="PCA, 2 components: test images and reconstructions")

# %% [markdown]
# ## Probabilistic interpretation for PCA
#
# `x = W z + B + eps`, a linear mapping of a continuous latent `z` of `K < D` dimensions.
#
# #### Assumption: The noise is independent and Gaussian distributed with variance sigma^2
#
# `p(x|z) = N(B + W z, sigma^2 I)`.
#
# #### Assumption: The latent variable has a standard Gaussian prior
#
# `p(z) = N(0, I)`.
#
# #### Marginal likelihood
#
# `p(x) = N(x | B, W W^T + sigma^2 I)`. **Differs:** the lecture writes `W^T W` here, a slip
# (that matrix is `K x K`, not `D x D`).
#
# #### Posterior
#
# `p(z|x) = N(z | M^{-1} W^T (x - B), sigma^2 M^{-1})` with `M = W^T W + sigma^2 I`.
# **Differs:** the lecture writes the covariance as `M sigma^{-2}`, a slip (the precision of
# the posterior is `M / sigma^2`).
#
# #### Training
#
# Maximise `sum_i log p(x_i)`: closed-form solutions; `W` spans PCA's principal subspace
# (as `sigma^2 -> 0` it is PCA). The lecture has no code here. **Differs:** the port
# fits it (`jvae.fit_ppca`, the closed-form maximum-likelihood solution of Tipping & Bishop)
# on the same test images, so that "now we have estimated sigma, we have error-bars for z"
# has numbers: the noise variance and the posterior standard deviations.

# %%
ppca = jvae.fit_ppca(jnp.asarray(test_data), 2)
post = jvae.ppca_posterior(ppca, jnp.asarray(test_data))
R["ppca"] = {"sigma2": float(ppca.sigma2), "posterior_sd": np.asarray(post.stddev())[0]}
print(f"PPCA: sigma^2 = {float(ppca.sigma2):.4f}, posterior sd of z = {R['ppca']['posterior_sd']}")

# %% [markdown]
# ## Self-study
# Barber, Chapter 21 and Murphy, Chapter 12; the Gaussian mixture model.
#
# # Autoencoders
#
# Deep networks for dimensionality reduction.
#
# #### Architecture
#
# An encoder `z = g(x)` to a narrow code and a decoder `x_hat = f(z)`, trained to match the
# input with the output (MSE or cross-entropy); an L2 penalty is a spherical Gaussian prior.
#
# ### Example: Autoencoder for MNIST in pytorch
#
# `Encoder` 784-128-128-2 and `Decoder` 2-128-128-784 with softplus activations:
# `experiments/configs/lecture_autoencoder.py` (a `VAE` whose posterior is a point mass,
# `model.kind = "autoencoder"`); `BCEWithLogitsLoss(reduction="sum")`, Adam 1e-2, batch 128
# with `drop_last=True`, 10 epochs. The lecture shuffles the 60000 training images with
# `np.random.seed(0)` and trains on 70% (42000), validating on 30%. **Differs:** jvae's split
# keeps the file order (the first 42000 train), and the loss is averaged over the batch
# (summed in the lecture; with Adam only the epsilon differs).
#
# Train the autoencoder. Before every epoch the lecture draws the codes of all 10000 test
# images, coloured by digit (`ax.scatter`): `config.eval.latent_snapshot_every = 1`
# (`jvae.write_latent_snapshot`) does this before training and after every epoch.
# **Differs:** the lecture redraws one figure, so its last picture is the codes before the
# 10th epoch; the snapshots keep all eleven (before training, after epochs 1-10), drawn as
# panels. Each epoch the lecture prints the sum of its batches' summed losses; the port
# prints that sum and the loss per image.


# %%
def lecture_config(module):
    c = module.get_config()
    c.dataset.eval_split = "test"           # the lecture's scatters show the test images
    c.eval.latent_snapshot_every = 1
    c.eval.log_steps, c.figures = False, False
    if QUICK:
        c.num_epochs, c.dataset.limit_train, c.dataset.limit_eval = 1, 1024, n_test
    return c


def train(name: str, module) -> tuple:
    c = lecture_config(module)
    workdir, _ = port.train(c, name)
    history = jvae.read_metrics(workdir)
    steps = history[0]["step"]
    for r in history:     # the lecture's "%d %f" % (nepoch, epoch_loss): a sum over the epoch
        print("%d %f   (%.2f per image)" % (r["epoch"] - 1, r["train/loss"] * steps * c.batch_size,
                                            r["train/loss"]))
    _, _, model, state = jvae.restore_run(workdir)
    snapshots, labels = jvae.read_latent_snapshots(workdir)
    R[name] = {"train_loss_per_image": [r["train/loss"] for r in history],
               "epoch_loss_sum": [r["train/loss"] * steps * c.batch_size for r in history],
               "snapshots": [e for e, _, _ in snapshots], "points": int(len(snapshots[0][1]))}
    return c, model, state.params, snapshots, labels


ae_config, ae, ae_params, ae_snaps, snap_labels = train("autoencoder", lecture_autoencoder)
plotting.save_latent_snapshots([(e, m, None) for e, m, _ in ae_snaps], snap_labels,
                               port.figure("ae_latents"),
                               title=f"autoencoder codes of the {len(snap_labels)} test images, "
                                     "epoch by epoch")

# %% [markdown]
# Inspect reconstructions: the lecture shows images 10-19 of its last training batch and
# their decodings. **Differs:** here training images 10-19 of the 42000 (the last batch is
# random in the lecture), decoded by the trained model, with a third row of differences.

# %%
decode_mean = jax.jit(lambda model, params, z: model.apply(params, z, method=jvae.VAE.decode).mean(),
                      static_argnums=0)
x_train = np.asarray(train_all.images[10:20])
ae_codes = ae.apply(ae_params, jnp.asarray(x_train), method=jvae.VAE.encode).mean()
plotting.save_reconstruction_rows(x_train, np.asarray(decode_mean(ae, ae_params, ae_codes)),
                                  port.figure("ae_reconstructions"), diff_range=1.0,
                                  title="autoencoder: training images and reconstructions")

# %% [markdown]
# # VI for LVM
#
# With a non-linear mapping the posterior and the evidence are intractable: propose
# `q_nu(z|x)` and maximise the ELBO `E_q[log p(x, z) / q(z|x)]`.
#
# # Variational Autoencoder (VAE)
#
# Kingma & Welling (2013), Rezende et al. (2014): neural networks for `p_theta(x|z)` and
# `q_phi(z|x)`, a prior `p(z)`, deterministic network parameters.
#
# #### VAE Assumption 1:
#
# `p(z) = N(0, I)`.
#
# #### VAE Assumption 2:
#
# `q(z|x) = N(mu(x), diag(sigma(x)^2))`, amortised by the encoder `mu, sigma = g_phi(x)`.
#
# #### VAE Assumption 3:
#
# The likelihood suits the data: a diagonal Gaussian for continuous data, Bernoulli for
# binary data (here, on grey levels).
#
# # Writing a VAE in Pyro
#
# `EncoderDual` (784-128-128 softplus, a mean head and `torch.exp` of a scale head) and
# `Decoder` (2-128-128-784 logits); `model()` and `guide()` as in Lab 5:
# `experiments/configs/lecture_vae2d.py`. The lecture's text says "We train the VAE using SVI
# with the Mean field ELBO", but its code passes `loss=pyro.infer.Trace_ELBO()`: one sample
# and a Monte Carlo KL, which the config's default `kl=mc` is (`kl=analytic` is
# `TraceMeanField_ELBO`). Adam 1e-2, 10 epochs. Before every epoch the lecture draws the
# posterior means of the test images with error bars of the posterior standard deviations
# (`ax.errorbar`): the snapshots again (**Differs:** as for the autoencoder: all eleven kept,
# as panels).

# %%
vae_config, vae, vae_params, vae_snaps, _ = train("vae2d", lecture_vae2d)
plotting.save_latent_snapshots(vae_snaps, snap_labels, port.figure("vae_latents"),
                               title=f"VAE posterior means +- 1 sd of the {len(snap_labels)} "
                                     "test images, epoch by epoch")
R["vae2d"]["kl"] = vae_config.objective.kl

# %% [markdown]
# Reconstructions: a training batch, the decoded posterior mean, the decoded posterior sample
# (`Normal(z_loc, z_scale).rsample()`), and their difference on the lecture's fixed range
# +-0.05. **Differs:** the lecture's batch is the first of its shuffled training loader;
# here training images 0-9 of the 42000.

# %%
x_train = np.asarray(train_all.images[:10])
q = vae.apply(vae_params, jnp.asarray(x_train), method=jvae.VAE.encode)
z_sample = q.sample(seed=jax.random.key(7))
rec_mean = np.asarray(decode_mean(vae, vae_params, q.mean()))
rec_sample = np.asarray(decode_mean(vae, vae_params, z_sample))
plotting.save_reconstruction_rows(x_train, rec_mean, port.figure("vae_reconstructions"),
                                  sample=rec_sample, diff_range=0.05,
                                  title="VAE: data, decoded mean, decoded sample, difference")
R["vae2d"]["reconstruction_difference_max"] = float(np.max(np.abs(rec_mean - rec_sample)))

# %% [markdown]
# Sampling: decoder means on a 30x30 grid over [-3, 3]^2, with the contour at one encoded
# test image per bin of a 30x30 histogram over [-4, 4]^2 (`np.histogram2d`, `levels=[1]`):
# `plotting.save_manifold(..., density="histogram")`. **Differs:** the lecture draws the
# [-3, 3] grid with `extent=[-4, 4, -4, 4]` and the [-4, 4] histogram at the grid's [-3, 3]
# coordinates, so its picture and contour do not share axes (the contour is drawn at 3/4 of
# its codes' values, the images at 4/3 of theirs); here both sit at their own coordinates.
# **Differs:** the lecture's `Z` are the codes drawn before its last epoch; here those of the
# trained model (the last snapshot).

# %%
_, final_means, _ = vae_snaps[-1]
plotting.save_manifold(lambda z: decode_mean(vae, vae_params, jnp.asarray(z)), final_means,
                       port.figure("vae_manifold"), num=30, limits=(-3.0, 3.0),
                       density="histogram", bins=30, hist_range=(-4.0, 4.0), counts=(1,),
                       title="VAE: decoder means on a 30x30 grid over [-3, 3]^2, contour of "
                             "the encoded test images")
R["vae2d"]["means_outside_grid"] = int(np.sum(np.any(np.abs(final_means) > 3.0, axis=1)))

# %% [markdown]
# # Details on the VAE training
#
# The VAE maximises the ELBO `E_q[log p(x|z) p(z) - log q(z|x)]` by gradient steps in
# `theta` and `phi`.
#
# ### The derivative wrt to theta
#
# A plain Monte Carlo average of `grad_theta log p(x|z_s)`, `z_s ~ q(z|x)`.
#
# ### The derivative wrt to phi
#
# The expectation depends on `phi`: the score function (REINFORCE) estimator is unbiased with
# a high variance (`jvae.make_sfe_objective`); the reparameterisation trick `z = mu + eps
# sigma` has a much lower one (`jvae.make_elbo_loss`); see `docs/results/estimator-variance.md`.
#
# #### Beyond the reparameterization trick: Pathwise derivatives
#
# Figurnov et al. and Jankowiak & Obermeyer (the lecture's link); jvae's flows
# (`docs/results/flows.md`) are reparameterised posteriors beyond the Gaussian.
#
# ### (Once again) more attention on the ELBO
#
# `ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z))`: a reconstruction term and a regulariser.
#
# ### Further reducing the variance by using closed-form terms
#
# The KL between the diagonal Gaussian and `N(0, I)`, `1/2 sum (mu^2 + sigma^2 - log sigma^2
# - 1)`: `objective.kl = "analytic"`.
#
# ### Pyro notes:
#
# `TraceMeanField_ELBO` uses the analytic KL where it exists; the lecture's code trained with
# `Trace_ELBO` (above).

# %%
port.finish(code=("experiments/notebooks/lecture.py", "jvae/plotting/snapshots.py",
                  "jvae/plotting/latent_space.py", "jvae/plotting/image_panels.py"),
            source={"autoencoder": ae_config.to_dict(), "vae2d": vae_config.to_dict()})
