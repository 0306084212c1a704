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
# # DPM 2 - Variational Inference for Deep Continuous LVMs
#
# A port of the seed notebook `../shared/seeds/000_619c3ffbc947839a.txt` to jvae: the same
# sections in the same order, each code cell done by the library (no model or estimator
# code is written here). Every difference from the seed is stated where it occurs, in a line
# starting **Difference:**.
#
# Run it as `python -m experiments.notebooks.dpm2` (full: the notebook's experiment, 5
# epochs on 59000 Fashion-MNIST images at 64x64), with `--quick` or `JVAE_NOTEBOOK_QUICK=1`
# (600 training images, one epoch; the test suite runs this), with `--docs` to write
# `docs/data/notebook_dpm2.json` and copy the figures to `docs/figures/nb_dpm2_*.png`, and
# with `--workdir DIR` (default `runs/notebooks/dpm2`). The full run's wall time is on
# `docs/notebooks/dpm2.md`.
#
# ## 0. Intended Learning Outcomes
#
# After this tutorial the student should be able to parameterise a latent variable model
# with continuous latent variables and estimate its parameters with neural variational
# inference. The notebook's remark holds here too: the prior nets and CPD nets of the
# continuous case are new, and `NVIL.forward` supports models trained by SFE or by
# reparameterisation (here `jvae.make_nvil_objective`).

# %%
import argparse
import json
import os
import pathlib
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jvae
from jvae import plotting
from experiments import dpm2 as dpm2_experiment

ROOT = pathlib.Path(__file__).resolve().parents[2]
parser = argparse.ArgumentParser(prog="python -m experiments.notebooks.dpm2")
parser.add_argument("--quick", action="store_true", help="small data, few steps")
parser.add_argument("--docs", action="store_true", help="write docs/data and docs/figures")
parser.add_argument("--workdir", default=os.environ.get("JVAE_NOTEBOOK_WORKDIR", ""))
parser.add_argument("--publish-only", action="store_true",
                    help="with --docs: publish the finished run in --workdir, train nothing")
ARGS, _ = parser.parse_known_args(sys.argv[1:])        # a Jupyter kernel's own are ignored
QUICK = ARGS.quick or os.environ.get("JVAE_NOTEBOOK_QUICK", "") not in ("", "0")
WORKDIR = pathlib.Path(ARGS.workdir or ROOT / "runs" / "notebooks" / "dpm2")
FIGDIR = WORKDIR / "figures"
FIGDIR.mkdir(parents=True, exist_ok=True)
# The numbers the seed notebook prints (quoted from its output, for the docs page).
SEED = {"image_shape": [1, 64, 64], "split": [59000, 1000], "batch_shape": [64, 1, 64, 64],
        "first_forward": {"loss": 2845.197021484375, "ELBO": -2845.197021484375,
                          "D": 2843.9189453125, "R": 1.27774977684021, "cv_loss": 0.0},
        "log_keys": ["dev.ELBO", "dev.D", "dev.R", "dev.L", "training.loss", "training.ELBO",
                     "training.D", "training.R", "training.cv_loss"]}
RESULTS: dict = {"quick": QUICK, "seed": SEED}
STARTED = time.perf_counter()


def publish() -> None:
    """``docs/data/notebook_dpm2.json`` and the figures with their manifest entries, from the
    full run's ``WORKDIR/results.json`` and ``WORKDIR/figures``."""
    from experiments.figures import record_script_figures

    path = WORKDIR / "results.json"
    results = json.loads(path.read_text())
    results.setdefault("measured", time.strftime("%Y-%m-%d",
                                                 time.gmtime(path.stat().st_mtime)))
    if results["quick"]:
        sys.exit("--docs publishes a full run's numbers; this run was --quick")
    (ROOT / "docs" / "data" / "notebook_dpm2.json").write_text(json.dumps(results, indent=1)
                                                               + "\n")
    from experiments.provenance import record_if_published
    record_if_published(ROOT / "docs" / "data" / "notebook_dpm2.json")
    for line in record_script_figures(
            sorted(FIGDIR.glob("nb_dpm2_*.png")), command="python -m experiments.notebooks.dpm2"
            " --docs", code=("experiments/notebooks/dpm2.py", "experiments/dpm2.py"),
            source=dpm2_experiment.variant_config("vae_mlp").to_dict(),
            generated=results["measured"]):
        print(line)


if ARGS.publish_only:          # python -m experiments.notebooks.dpm2 --docs --publish-only
    publish()
    sys.exit(0)


def figure(stem: str) -> pathlib.Path:
    """Where the port's figure ``nb_dpm2_STEM.png`` goes."""
    return FIGDIR / f"nb_dpm2_{stem}.png"


def shapes(tree) -> dict:
    """Parameter shapes by path: what printing a torch module shows of its layers."""
    return {jax.tree_util.keystr(p): tuple(v.shape)
            for p, v in jax.tree_util.tree_leaves_with_path(tree)}


# %% [markdown]
# `seed_all(42)` seeds numpy, random and torch. **Difference:** JAX has no global seed:
# every random draw below takes an explicit key split from `jax.random.key(42)`.

# %%
KEY = jax.random.key(42)
keys = iter(jax.random.split(KEY, 64))

# %% [markdown]
# ## 1. Data
#
# Fashion-MNIST resized to 64x64 and binarised at 0.5 (the notebook's `Binarizer`), with a
# random dev split of 1000 of the 60000 training images. The config is the DPM2 experiment's
# `vae_mlp` variant (`experiments/dpm2.py`), which sets all of this.
# **Difference:** images are NHWC `[64, 64, 1]` (JAX's layout) where torch has `[1, 64, 64]`.
# **Difference:** the dev split is drawn by numpy (`dataset.dev_seed = 0`), not by torch's
# `random_split`, so it holds other images than the notebook's.

# %%
config = dpm2_experiment.variant_config("vae_mlp")
if QUICK:   # 600 images to train on (3 steps), 100 held out, one epoch, 200 test images;
    # no standard run figures (the port draws the notebook's own below)
    config.dataset.update(limit_train=700, dev_size=100, limit_eval=200)
    config.eval.update(every_steps=2, dev_ll_samples=2, dev_final_ll_samples=2, tsne_points=0)
    config.num_epochs, config.figures = 1, False
datasets = jvae.load_data(config)
img_shape = datasets.train.shape[1:]
print("Shape of an image:", img_shape)
print("train, dev:", len(datasets.train), len(datasets.dev))
RESULTS.update(image_shape=list(img_shape), split=[len(datasets.train), len(datasets.dev)])
bin_data = config.dataset.binarize == "static"
batch_size = 64

# %% [markdown]
# Let's visualise a few samples (the first batch of 64 of a shuffled loader).

# %%
order = np.asarray(jax.random.permutation(next(keys), len(datasets.train)))
images = datasets.train[order[:batch_size]]
print("images.shape:", images.shape)
plotting.save_image_grid(images, figure("data"), nrow=16)
dev_images = datasets.dev[:batch_size]
del datasets        # 1 GB at 64x64: the training run below loads its own copy

# %% [markdown]
# ## 2. Latent variable models
#
# A joint density `p(z, x | theta) = p(z | theta) p(x | z, theta)` over continuous codes
# `z in R^K` and images `x`.
#
# ### 2.1 Prior networks
#
# `PriorNet` returns a distribution for a batch. jvae's priors are Linen modules returning a
# `distrax` distribution: `jvae.StandardNormalPrior` (the notebook's `GaussianPriorNet`) and
# `jvae.MixturePrior` (its `MoGPriorNet`, trainable logits, locations and scales).
# **Difference:** a jvae prior is one distribution over `z` whose `log_prob` broadcasts over
# any batch, so it takes no `batch_shape` argument.
# **Difference:** the export lost `MoGPriorNet`'s initialisation lines; jvae's mixture prior
# starts with equal weights, unit scales and component means drawn from N(0, 1).


# %%
def test_priors(batch_size=2, latent_dim=3, num_comps=5, key=next(keys)):
    for name, prior in (("Gaussian", jvae.StandardNormalPrior(latent_dim)),
                        ("Mixture of Gaussian", jvae.MixturePrior(latent_dim, num_comps))):
        variables = prior.init(key)
        print(f"\n{name}\n trainable parameters\n {shapes(variables)}")
        p = prior.apply(variables)
        z = p.sample(seed=key, sample_shape=(batch_size,))
        print(f" distribution: {type(p).__name__}, event_shape={p.event_shape}")
        print(f" sample: {np.round(np.asarray(z), 4).tolist()}")
        print(f" shapes: sample={z.shape} log_prob={p.log_prob(z).shape}")


test_priors()

# %% [markdown]
# ### 2.2 Conditional probability distributions
#
# #### 2.2.1 Observational model
#
# `p(x|z)` is a product of Bernoullis (binarised pixels) or of ContinuousBernoullis (grey
# levels) whose parameters a decoder computes. `build_ffnn_decoder` is `jvae.MLP((512, 512))`
# followed by the likelihood head's dense output layer (`BernoulliHead(project=True)`);
# `nn.Dropout(p_drop)` before every `Linear` is `dropout_rate`. `MySequential`'s job,
# structured batches, is done by every jvae network.

# %%
def decoder_model(decoder: str, likelihood: str = "bernoulli", prior: str = "standard"):
    """The notebook's joint distribution with a given decoder, as a jvae VAE."""
    c = dpm2_experiment.variant_config("vae_cnn" if decoder == "conv" else "vae_mlp")
    c.model.likelihood, c.model.prior, c.model.prior_components = likelihood, prior, 3
    return jvae.build_model(c, img_shape)


def abstract_params(model):
    """The model's parameters as shapes only (``jax.eval_shape``: nothing is computed)."""
    return jax.eval_shape(lambda k: jvae.init_params(model, k, jnp.zeros((1,) + img_shape)),
                          jax.random.key(0))


for decoder in ("mlp", "conv"):
    model = decoder_model(decoder)
    params = abstract_params(model)
    print(decoder, "decoder:", shapes(params["params"]["decoder"]))
    for batch in ((5,), (3, 5)):     # a batch of codes, and a structured [3, 5] batch
        mean = jax.eval_shape(lambda p, z: model.apply(p, z, method=jvae.VAE.decode).mean(),
                              params, jax.ShapeDtypeStruct(batch + (10,), jnp.float32))
        print(f"  z {batch + (10,)} -> mean of p(x|z) {mean.shape}")

# %% [markdown]
# `BinarizedImageModel` and `ContinuousImageModel` are `jvae.BernoulliHead` and
# `jvae.ContinuousBernoulliHead` (`model.likelihood = "bernoulli"` or
# `"continuous_bernoulli"`). The CNN decoder is `jvae.conv_preset("dpm2")`: a dense layer to a
# 1x1x1024 map and transposed convolutions 5, 5, 6, 6 of stride 2 to 64x64.
#
# ### 2.3 Joint distribution
#
# `jvae.VAE` is the notebook's `JointDistribution` and `InferenceModel` in one module:
# `prior_distribution`, `decode` (`obs_model`), `log_joint` (`log_prob`), `sample_prior`
# (`sample`) and `naive_lower_bound`, the Monte Carlo bound
# `log p(x) >= 1/S sum_s log p(x | z_s)`, `z_s ~ p(z)`.
# **Difference:** `log_marginal` and `posterior` by enumeration are left out: they are for a
# discrete code (the previous tutorial), and the notebook does not call them here.
# **Difference (quick mode only):** `test_joint_dist` uses the FFNN decoder, because compiling
# the CNN for it takes minutes on a busy 2-core host; the full mode uses the CNN as the
# notebook does.


# %%
def test_joint_dist(batch_size=2, decoder="mlp" if QUICK else "conv"):
    for title, likelihood, prior in (("binarized", "bernoulli", "standard"),
                                     ("continuous", "continuous_bernoulli", "mixture")):
        model = decoder_model(decoder, likelihood, prior)
        params = jvae.init_params(model, next(keys), jnp.zeros((1,) + img_shape))
        z, x = jvae.sample_prior(model, params, next(keys), batch_size, mode="sample")
        x = x.astype(jnp.float32)
        print(f"Model for {title} data: prior {type(model.prior).__name__}")
        print(" sampled z", np.round(np.asarray(z), 3).tolist())
        print(" sampled x: shape", x.shape, "values", np.unique(np.asarray(x))[:4], "...")
        for i in (1, 2):
            bound = jvae.naive_lower_bound(model, params, next(keys), x, 10)
            print(f" MC lowerbound {i}:", np.asarray(bound))


test_joint_dist()

# %% [markdown]
# ## 3. Learning
#
# ### 3.1 Intractable LVMs
#
# Marginalising `z` is intractable, so a variational approximation `q(z|x)` and the ELBO
# `E_q[log p(x|z)] - KL(q(z|x) || p(z)) = -(D + R)` (distortion and rate) are trained jointly.
#
# ### 3.2 Inference model
#
# The encoders map an image to a 1024-vector: `build_ffnn_encoder` is
# `jvae.MLP((512, 512, 1024), activate_final=False)` (`model.encoder_activate_final`),
# `build_cnn_encoder` is `jvae.ConvEncoder` with the `dpm2` preset (4x4 stride-2 unpadded
# convolutions to 32, 64, 128, 256 channels, leaky ReLU 0.2, flattened 2x2x256).

# %%
for encoder in ("mlp", "conv"):
    model = decoder_model(encoder)
    params = abstract_params(model)
    for batch in ((5,), (3, 5)):
        h = jax.eval_shape(lambda p, x: model.apply(p, x, method=lambda m, x_: m.encoder(x_)),
                           params, jax.ShapeDtypeStruct(batch + img_shape, jnp.float32))
        print(f"{encoder} encoder: {batch + img_shape} -> {h.shape}")

# %% [markdown]
# `GaussianCPDNet` and `MoGCPDNet` are `jvae.DiagGaussianHead` and `jvae.MixtureGaussianHead`;
# their `hidden_size` encoder (dropout, `Linear`, ReLU) is the heads' `hidden`
# (`model.posterior_hidden`), and softplus scales are `scale="softplus"`.
# **Difference:** jvae adds `1e-5` to every softplus scale (`min_scale`) so a scale can never
# reach 0.


# %%
def test_cpds(outcome_shape=12, num_comps=2, batch_size=3, input_dim=5, hidden_size=2):
    inputs = jax.random.uniform(next(keys), (batch_size, input_dim))
    for name, head in (("Gaussian", jvae.DiagGaussianHead(outcome_shape, hidden=hidden_size,
                                                          weight_init="torch")),
                       ("Mixture of Gaussians",
                        jvae.MixtureGaussianHead(outcome_shape, num_comps, hidden=hidden_size,
                                                 init_spread=0.0, weight_init="torch"))):
        variables = head.init(next(keys), inputs)
        p = head.apply(variables, inputs)
        z = p.sample(seed=next(keys))
        print(f"\n{name}: {shapes(variables)}")
        print(f" distribution: {type(p).__name__}, batch {p.batch_shape}, event {p.event_shape}")
        print(f" shapes: sample={z.shape} log_prob={p.log_prob(z).shape}")


test_cpds()

# %% [markdown]
# `InferenceModel(cpd_net_type, latent_size=10)` is the VAE's encoder and posterior head:

# %%
for posterior, components in (("gaussian", 2), ("mixture", 3)):
    c = dpm2_experiment.variant_config("vae_mlp")
    c.model.posterior, c.model.posterior_components = posterior, components
    model = jvae.build_model(c, img_shape)
    params = jvae.init_params(model, next(keys), jnp.zeros((1,) + img_shape))
    q = model.apply(params, jnp.zeros((5,) + img_shape), method=jvae.VAE.encode)
    print(type(q).__name__, "batch", q.batch_shape, "event", q.event_shape,
          "reparameterised:", jvae.is_reparameterised(q))

# %% [markdown]
# ### 3.3 Neural Variational Inference
#
# `NVIL.forward` uses the reparameterised surrogate when `q` has `rsample` and the score
# function surrogate `log p(x|z) + log p(z) + r log q(z|x)` with the control variates'
# transformed reward `r` when it does not: `jvae.make_nvil_objective(model,
# control_variates=...)`, which returns a loss `(params, est, key, x) -> (loss, (aux, est))`
# with `aux` holding `elbo`, `distortion`, `rate` and the control variates' loss.
# `VarianceReduction` (the identity) is an empty chain, `jvae.chain()`.
#
# Here's an example: the notebook's FFNN VAE, its parameters and one loss on a batch of 64.

# %%
model = jvae.build_model(config, img_shape)
params = jvae.init_params(model, next(keys), jnp.zeros((1,) + img_shape))
print(json.dumps({k: str(v) for k, v in shapes(params).items()}, indent=1))
nvil = jvae.make_nvil_objective(model, control_variates=jvae.chain())
est = nvil.init(next(keys), images)
loss, (aux, _) = nvil.loss(params, est, next(keys), images)
forward = {"loss": float(loss), "ELBO": float(aux["elbo"]), "D": float(aux["distortion"]),
           "R": float(aux["rate"]), "cv_loss": 0.0, "sfe": float(aux["sfe"])}
print("x.shape:", images.shape)
print(forward)
RESULTS["first_forward"] = forward

# %% [markdown]
# **Difference:** the numbers differ from the notebook's (`loss 2845.20, D 2843.92, R 1.28`):
# other initial weights (jvae draws PyTorch's distributions from its own keys) and other
# images.
#
# #### 3.3.1 Training algorithm
#
# `OptCollection` holds one optimiser per component; in jvae one optax optimiser updates all
# parameters, with per-module learning rates as `optim.param_groups` (regexes on module
# names; the score-function variants of `experiments/dpm2.py` give the generative model 5e-4
# and the inference model 1e-4, the notebook's RMSprop recipe). `assess` is the dev
# assessment of `jvae.train_and_evaluate` (`eval.every_steps`: D, R, ELBO and L on the dev
# split), `train_vae` is `jvae.train_and_evaluate`, and `inspect_lvm` is
# `jvae.prior_observations` and `jvae.conditional_observations`, drawn below.
# **Difference:** `assess` averages L from `sample_size_eval` importance samples; with the
# notebook's `sample_size_eval = 1` that is one importance weight, so jvae assesses L with
# K = 10 every 100 steps and K = 100 at the end (`eval.dev_ll_samples`).
#
# #### 3.3.2 Variance reduction
#
# `CentredReward`, `ScaledReward`, `SelfCritic`, `Baseline` and `CVChain` are
# `jvae.centred_reward`, `jvae.scaled_reward`, `jvae.self_critic`, `jvae.learned_baseline`
# and `jvae.chain`, each an `(init, apply)` pair whose running statistics are state carried
# through training. **Difference:** the notebook's `alpha = 0.9` weight on the newest batch
# is `decay = 1 - alpha = 0.1`.

# %%
cv = jvae.chain(jvae.centred_reward(0.1), jvae.learned_baseline((512,)),
                jvae.scaled_reward(0.1))
cv_params, cv_state = cv.init(next(keys), images)
reward = -jnp.abs(jax.random.normal(next(keys), (1, batch_size))) * 100 - 2800
r, cv_state, cv_loss, cv_aux = cv.apply(cv_params, cv_state, reward,
                                        jvae.CVContext(x=images))
print("reward", float(reward.mean()), "-> transformed", float(r.mean()),
      "baseline loss", float(cv_loss), {k: float(v) for k, v in cv_aux.items()})

# %% [markdown]
# #### 3.3.3 Experiment
#
# The notebook's run: Gaussian prior and posterior (a classic VAE, no variance reduction),
# FFNN encoder and decoder, dropout 0.1 in the decoder, batch 256, 5 epochs, an assessment
# every 100 steps. Its PyTorch `DataLoader` keeps the last partial batch: 231 steps an
# epoch (`drop_last = False`, masked in jvae so shapes stay static).
# **Difference:** the export lost the optimiser lines after "Adam is the go-to choice for
# (reparameterised) VAEs"; jvae uses Adam with learning rate 1e-3 for every parameter.

# %%
run_dir = WORKDIR / "vae_mlp"
if run_dir.exists():
    shutil.rmtree(run_dir)
t0 = time.perf_counter()
last = jvae.train_and_evaluate(config, run_dir, progress=not QUICK)
RESULTS["train_wall_seconds"] = round(time.perf_counter() - t0, 1)
steps = jvae.runs.read_jsonl(run_dir / jvae.runs.STEPS_FILE)
dev = jvae.runs.read_jsonl(run_dir / jvae.runs.DEV_FILE)
RESULTS["log_keys"] = sorted({k for r in steps for k in r} | {k for r in dev for k in r})
print("log keys:", RESULTS["log_keys"])
RESULTS["steps"] = len(steps)
RESULTS["dev_final"] = {k: dev[-1].get(f"dev/{k}") for k in ("elbo", "distortion", "rate",
                                                              "log_likelihood")}
RESULTS["test_elbo"] = last.get("eval/elbo")
print(RESULTS["dev_final"])

# %% [markdown]
# Training curves (ELBO, D, R per step) and dev curves (ELBO, D, R, L per assessment).
# **Difference:** no control-variate panel: this run has no control variate (the notebook
# draws a flat line at 0); a smoothed line is drawn over the raw values.

# %%
plotting.save_step_curves(steps, figure("training_curves"),
                          keys=("train/elbo", "train/distortion", "train/rate"))
plotting.save_dev_curves(dev, figure("dev_curves"))

# %% [markdown]
# `inspect_lvm`: 16 prior draws with 4 observations each (`sample(16, 4, oversample=True)`),
# 64 observations of the dev split and one conditional sample of each.

# %%
_, _, _, state = jvae.restore_run(run_dir)
params = state.params
_, prior_x = jvae.prior_observations(model, params, next(keys), 16, 4)
plotting.save_image_grid(np.swapaxes(np.asarray(prior_x), 0, 1).reshape((-1,) + img_shape),
                         figure("prior_samples"), nrow=16, title="Prior samples")
observations = dev_images
plotting.save_image_grid(observations, figure("observations"), nrow=16, title="Observations")
cond = jvae.conditional_observations(model, params, next(keys), jnp.asarray(observations), 1)
plotting.save_image_grid(np.asarray(cond)[:, 0], figure("conditional_samples"), nrow=16,
                         title="Conditional samples")

# %% [markdown]
# ## 4. Beyond
#
# The notebook's last section has no code; each idea exists in jvae and runs in
# `experiments/dpm2.py`:
#
# * a trainable prior: `model.prior = "mixture"` (variant `mixture_prior`), whose samples
#   `jvae.prior_samples_with_components` draws by component for histograms, pair plots and
#   a t-SNE map (`jvae.plotting.save_prior_histograms`, `save_prior_pairs`,
#   `save_prior_tsne`);
# * a reparameterisable stronger posterior: the normalising flows `model.posterior =
#   "planar" | "iaf" | "coupling"` (`experiments/flows.py`);
# * the mixture estimator (score function for the component, reparameterisation within it):
#   `objective.name = "mixture"`, `jvae.make_mixture_objective` (variant
#   `beyond_mixture_estimator`).

# %%
RESULTS["wall_seconds"] = round(time.perf_counter() - STARTED, 1)
RESULTS["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
RESULTS["measured"] = time.strftime("%Y-%m-%d")
RESULTS["figures"] = sorted(p.name for p in FIGDIR.glob("nb_dpm2_*.png"))
(WORKDIR / "results.json").write_text(json.dumps(RESULTS, indent=1) + "\n")
if ARGS.docs and not QUICK:
    publish()
print(f"dpm2 port: {RESULTS['wall_seconds']} s, results in {WORKDIR / 'results.json'}")
