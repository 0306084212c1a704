"""The default run configuration every experiment config starts from.

Experiment files (``experiments/configs/NAME.py``) define ``get_config()`` returning
``default_config()`` with their changes; any field can be overridden on the command line as
``--config.FIELD=VALUE`` (``--config.model.likelihood=continuous_bernoulli``). Fields whose
value 0 or "" means "off" say so below.
"""

from __future__ import annotations

import ml_collections

__all__ = ["default_config", "split_variant"]


def default_config() -> ml_collections.ConfigDict:
    """The default run config: MNIST grey levels, a 784-400-20 MLP VAE with a Bernoulli
    likelihood, the reparameterised ELBO, Adam 1e-3, batch 128, 10 epochs, a checkpoint and
    an evaluation every epoch. Every field is commented in the source; experiment configs
    change what they need."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.num_epochs = 10
    c.batch_size = 128
    c.drop_last = True              # False: keep the last partial batch of an epoch, padded
                                    # and masked (PyTorch's DataLoader(drop_last=False))
    c.learning_rate = 1e-3
    c.latent_dim = 20
    c.num_seeds = 1                 # > 1: seeds seed, seed+1, ... trained as one vmapped program
    c.data_parallel = False         # split every batch over all devices (jax.devices())
    c.shard_seeds = False           # spread the seeds / sweep values over all devices
    c.checkpoint_every = 1          # epochs between checkpoints (0: only at the end)
    c.figures = True
    c.tensorboard = False           # also write the run's scalars to workdir/tensorboard/
                                    # (needs tensorboardX: pip install 'jvae[tensorboard]')

    c.dataset = _dataset()
    c.model = _model()
    c.objective = _objective()
    c.optim = _optim()
    c.sweep = _sweep()  # vmapped hyperparameter sweep (one program)
    c.divergence = _divergence()   # stop a run whose loss blows up (finite or not)
    c.eval = _eval()
    return c


def _dataset() -> ml_collections.ConfigDict:
    """Where the data come from and how they are prepared."""
    g = ml_collections.ConfigDict()
    g.name = "mnist"        # mnist | fashion_mnist | binarized_mnist | cifar10 |
                            # gaussian2d | tfds:NAME (any prepared TFDS image dataset) |
                            # npy:PATH | npz:PATH | folder:PATH (your own data)
    g.data_dir = ""         # "": $JVAE_DATA_DIR (tfds:*: the TFDS data dir, "": TFDS's)
    g.download = False      # fetch MNIST / Fashion-MNIST / CIFAR-10 into the cache
                            # if missing
    g.verify_checksums = True   # check local files against their published SHA-256
    g.train_split = "train"
    g.eval_split = "validation"
    g.validation_size = 10000
    g.binarize = "none"     # none | static | dynamic
    g.threshold = 0.5
    g.resize = 0            # 0: keep the stored size (28x28, CIFAR 32x32)
    g.centre = False        # map [0, 1] to [-1, 1] (2x - 1, Homework 2's centring;
                            # needs likelihood=gaussian; figures map back to [0, 1])
    g.tfds_image_key = "image"  # tfds:*: the image feature
    g.key = ""              # npz:*: the examples' array ("": the only one, else x | images)
    g.labels_key = ""       # npz:*: the labels' array ("": labels | y if present, else none)
    g.test = ""             # npy/npz/folder: the test file or folder ("": none; the
                            # "test" split is then the carved validation split)
    g.validation_seed = 0   # npy/npz/folder: which examples validation_size takes
    g.limit_train = 0       # 0: all examples
    g.limit_eval = 0
    g.data_seed = 42        # synthetic data and the fixed eval binarisation
    g.order_seed = -1       # batch order (shared by all seeds of a run); -1: use seed
    g.dev_size = 0          # hold out this many random training examples as a dev
                            # split, assessed at step 0, every eval.every_steps steps
                            # and at the end (0: no dev split)
    g.dev_seed = 0          # which examples the dev split takes
    g.memory_budget = "auto"    # bytes the training split may take in memory (e.g. "2GB");
                            # larger splits of npy:/folder:/tfds: data are streamed from
                            # the file in chunks (same parameters); "auto": half the
                            # accelerator's memory, a quarter of the host's on the CPU;
                            # "none" or "0": always in memory
    g.mode = "univariate"   # gaussian2d: univariate | multivariate
    g.count = 15000         # gaussian2d: number of points (70% train)
    return g


def _model() -> ml_collections.ConfigDict:
    """The model: kind, networks, prior, posterior, likelihood."""
    g = ml_collections.ConfigDict()
    g.kind = "vae"            # vae | autoencoder (point-mass code, reconstruction loss)
    g.encoder = "mlp"         # mlp | conv
    g.decoder = "mlp"         # mlp | conv
    g.encoder_hidden = (400,)
    g.encoder_activate_final = True   # mlp encoder: activation after its last layer too
    g.decoder_hidden = (400,)
    g.encoder_dropout = 0.0   # dropout before every dense layer of the encoder and the
    g.decoder_dropout = 0.0   # posterior head / decoder and likelihood head, in [0, 1)
                              # (training losses only; 0: off)
    g.activation = "relu"     # relu | sigmoid | tanh | softplus | elu | gelu |
                              # leaky_relu | identity
    g.init = "lecun"          # dense and conv init: lecun (Flax) | torch (PyTorch) | glorot
    g.likelihood_bias = "zero"  # bernoulli + mlp decoder: the output bias starts at zero |
                              # marginal (the training pixels' log-odds, Burda et al.'s code)
    g.conv_encoder_features = (32, 64, 128, 256)
    g.conv_encoder_out = 0    # dense projection after the conv stack (0: none)
    g.conv_decoder_features = (128, 64, 32)
    g.conv_preset = ""        # "": the conv_* widths above | dpm2 (the DPM2 notebook's CNN)
    g.conv_impl = "auto"      # auto (subpixel on CPU, native on GPU/TPU) | subpixel | native
    g.compute_dtype = "float32"   # float32 | bfloat16 (products in bfloat16, accumulated in
                                  # float32; parameters and densities float32: mixed precision)
    g.posterior = "gaussian"        # gaussian | mixture (of diagonal Gaussians) |
                                    # planar | iaf | coupling (flows, jvae.models.flows)
    g.posterior_components = 2       # mixture posterior: number of components
    g.posterior_init_spread = 1.0    # mixture posterior: std of its learned component offsets
                                     # (0: none, the DPM2 notebook's MoGCPDNet)
    g.posterior_hidden = 0           # dense + ReLU of this width before the posterior head's
                                     # output layers (0: none; DPM2: 2 * latent_dim)
    g.flow_layers = 4                # flow posteriors: number of layers
    g.flow_hidden = 100              # iaf: MADE width; coupling: conditioner width
    g.posterior_scale = "softplus"   # softplus | exp (log-variance) | log_std
    g.likelihood = "bernoulli"       # bernoulli | continuous_bernoulli | gaussian
    g.gaussian_scale = "predicted"   # fixed | learned | predicted
    g.likelihood_scale = "softplus"  # a predicted Gaussian scale: softplus | log_std
                                     # (Homework 2's mu, log_std) | exp (log-variance)
    g.fixed_scale = 1.0
    g.prior = "standard"             # standard | mixture | vamp (VampPrior)
    g.prior_components = 10          # mixture components / vamp pseudo-inputs
    return g


def _objective() -> ml_collections.ConfigDict:
    """The training objective and its gradient estimator."""
    g = ml_collections.ConfigDict()
    g.name = "elbo"              # elbo | sfe | mixture | nvil | iwae | vimco (nvil: the DPM2
                                 # notebook's choice: reparameterised if q can be, else sfe)
    g.beta = 1.0                 # rate weight (elbo, sfe, mixture)
    g.beta_schedule = "constant" # elbo, sfe, mixture, nvil: constant | linear | cosine KL
                                 # warm-up of the rate
                                 # weight from kl_warmup_start to beta (per optimiser step)
    g.kl_warmup_steps = 0        # optimiser steps of the warm-up (> 0 unless constant)
    g.kl_warmup_start = 0.0      # the rate weight at step 0
    g.free_bits = 0.0            # elbo: nats per latent dimension, training loss's rate
                                 # term sum_j max(free_bits, mean_B KL_j) (0: off)
    g.num_samples = 1            # S samples (elbo, sfe, mixture) or K (iwae, vimco)
    g.kl = "auto"                # elbo: auto (analytic where known) | analytic | mc
                                 # sfe: auto (= mc, the NVIL signal) | analytic | mc
    g.estimator = "iwae"         # iwae: iwae | stl | dreg
    g.control_variates = ()      # sfe, mixture, nvil, vimco: applied in order, from
                                 # centred | scaled | self_critic | baseline |
                                 # leave_one_out | vimco (vimco defaults to (vimco,))
    g.cv_decay = 0.9             # decay of the running mean / std
    g.baseline_hidden = (512,)   # learned baseline MLP widths
    g.baseline_learning_rate = 0.0   # 0: the model's learning rate
    return g


def _optim() -> ml_collections.ConfigDict:
    """The optimiser."""
    g = ml_collections.ConfigDict()
    g.name = "adam"                  # adam | adamw | rmsprop | adagrad | sgd
    g.grad_clip = 0.0                # 0: no clipping
    g.param_groups = ml_collections.ConfigDict()   # {module regex: learning rate}
    g.eps = 1e-8                     # adam/adamw/rmsprop/adagrad epsilon
    g.weight_decay = 0.0             # L2 added to the gradients (adamw: decoupled)
    g.rmsprop_decay = 0.9            # rmsprop's averaging (PyTorch's alpha is 0.99)
    g.initial_accumulator = 0.0      # adagrad's starting sum of squared gradients
                                     # (PyTorch's 0; optax's default is 0.1)
    g.schedule = "constant"          # constant | iwae (stages of 3^i epochs, lr * 10^(-i/7))
    return g


def _sweep() -> ml_collections.ConfigDict:
    """A vmapped hyperparameter sweep (one program)."""
    g = ml_collections.ConfigDict()
    g.beta = ()                      # e.g. (0.1, 0.3, 1.0, 3.0): one run per value
    g.learning_rate = ()             # e.g. (3e-4, 1e-3, 3e-3); paired with beta if both
    return g


def _divergence() -> ml_collections.ConfigDict:
    """When a run whose loss blows up (finite or not) stops."""
    g = ml_collections.ConfigDict()
    g.factor = 100.0            # `patience` consecutive step losses above
                                # m + factor * max(|m|, 1), m the running minimum,
                                # stop the run (0: off)
    g.patience = 20             # steps (a brief spike that recovers is no divergence)
    g.max_loss = 1e10           # |loss| above this stops the run (0: off)
    return g


def _eval() -> ml_collections.ConfigDict:
    """Evaluation, dev assessments, step logs and the figures' t-SNE."""
    g = ml_collections.ConfigDict()
    g.batch_size = 1000
    g.elbo_samples = 1
    g.ll_samples = 0                  # K for importance-sampled log p(x) each epoch (<= 1: off)
    g.ll_chunk = 100
    g.every = 1                       # evaluate every N epochs (and at the end)
    g.ll_every = 0                    # log p(x) only every N epochs and at the end
                                      # (0: at every evaluation)
    g.snapshot_every = 0              # write snapshots/reconstruction_{epoch}.png and
                                      # sample_{epoch}.png every N epochs, as Lab 5 (0: off)
    g.latent_snapshot_every = 0       # the lecture's latent space "on the fly": posterior
                                      # means and standard deviations of ALL evaluation
                                      # points before training (epoch 0) and every N epochs,
                                      # snapshots/latents_{epoch}.npz and .png (0: off)
    g.reconstructions = "mean"        # reconstructions.png decodes the posterior mean
                                      # (mean), a sample z ~ q(z|x) (sample: the PyTorch
                                      # example's and Pyro's), or shows both rows (both)
    g.every_steps = 0                 # assess the dev split every N steps of each epoch
                                      # and after its last step (0: at step 0 and at the
                                      # end only); needs dataset.dev_size > 0
    g.dev_ll_samples = 0              # K for log p(x) in every dev assessment (<= 1: none)
    g.dev_final_ll_samples = -1       # K at the last dev assessment (-1: dev_ll_samples)
    g.log_steps = True                # write every step's training metrics to steps.jsonl
    g.tsne_points = 1000              # latents_tsne.png at the end of a run with more than
                                      # 2 latent dimensions: t-SNE of this many evaluation
                                      # posterior means (0: no t-SNE figure)
    return g


def split_variant(variant: str, name: str, keys, describe: str) -> dict[str, str]:
    """Split a config string ``"key=value,key=value"`` (``--config FILE.py:STRING``) into a
    dict of strings, for experiment configs with variants.

    Raises ``ValueError`` naming the config ``name`` for an item that is not ``key=value``, a
    key not in ``keys`` or a key given twice; ``describe`` (the valid keys and values) ends
    the first two messages. Checking the values is the caller's job.
    """
    chosen: dict[str, str] = {}
    for item in (variant or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise ValueError(f"{name} variant {item!r} is not key=value; {describe}.")
        if key not in keys:
            raise ValueError(f"Unknown {name} variant key {key!r}; {describe}.")
        if key in chosen:
            raise ValueError(f"{name} variant key {key!r} given twice.")
        chosen[key] = value
    return chosen
