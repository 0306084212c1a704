"""The DPM2 notebook's experiment: Fashion-MNIST at 64x64, binarised, latent size 10.

FFNN encoder 4096-512-512-1024 followed by the Gaussian head's 20-unit hidden layer
(``GaussianCPDNet(hidden_size=2*latent)``), FFNN decoder 10-512-512-4096 with a Bernoulli
likelihood; softplus scales; Adam; batch 256, 5 epochs. ``--config.model.encoder=conv
--config.model.decoder=conv`` gives the CNN variant. Differences from the notebook: a ReLU
after the encoder's 1024-unit layer, and no dropout by default: the notebook's decoder drops
units with p = 0.1 before every dense layer (``--config.model.decoder_dropout=0.1``, which
``experiments/dpm2.py`` sets; the encoder's p is 0, ``model.encoder_dropout``). The default
stays 0 because the estimator-variance study and the conv benchmark measure this config's
model, and dropout would add its own noise to every estimator's gradient.
``experiments/dpm2.py`` (and the notebook port) also set the notebook's networks and loader
exactly: ``model.encoder_hidden = (512, 512, 1024)`` with ``model.encoder_activate_final =
False`` and ``model.posterior_hidden = 20`` (the heads' ``Linear(1024, 20)`` + ReLU, for the
CNN too), ``model.init = "torch"``, ``model.posterior_init_spread = 0`` and ``drop_last =
False`` (231 steps an epoch); the defaults here stay as they were for the studies above.
Adding ``--config.model.conv_preset=dpm2`` makes the CNN variant the notebook's own CNN
(``jvae.conv_preset``: unpadded 4x4 convs to a 1024-vector, dense to 1x1x1024 and
5x5/5x5/6x6/6x6 transposed convs); without it the conv nets are jvae's defaults.

Variants (section 3.3.3 and "Beyond")
-------------------------------------
``get_config()`` (no argument, or an empty string) is the classic VAE above: Gaussian prior,
Gaussian posterior, reparameterised ELBO, Adam 1e-3. ``get_config("key=value,...")`` picks one
of the notebook's variants; on the command line through ml_collections' config string::

    python -m jvae.train --workdir runs/dpm2_mix \\
        --config experiments/configs/fashion_mnist_dpm2.py:prior=mixture,posterior=mixture,estimator=sfe

Keys (all optional; unknown keys or values raise ``ValueError`` listing the valid choices):

* ``prior``: ``gaussian`` (standard normal, default) | ``mixture`` (learned mixture of
  ``model.prior_components = 10`` diagonal Gaussians, the notebook's ``MoGPriorNet``).
* ``posterior``: ``gaussian`` (diagonal Gaussian, default) | ``mixture`` (mixture of
  ``model.posterior_components = 2`` diagonal Gaussians, the notebook's ``MoGCPDNet``
  default).
* ``estimator``:

  - ``reparam`` (default): objective ``elbo``, the reparameterised gradient. Needs
    ``posterior=gaussian`` (a mixture is not reparameterisable), otherwise ``ValueError``.
  - ``sfe``: objective ``sfe``, the score-function (NVIL) estimator for the inference
    model (any posterior), with the control-variate chain named by ``cv``.
  - ``mixture``: objective ``mixture``, the "Beyond" section's estimator (score function for
    the component choice, reparameterisation within the component, with the same ``cv``
    chain on the score-function term). Needs ``posterior=mixture``, otherwise ``ValueError``.
  - ``nvil``: objective ``nvil``, the notebook's own ``NVIL.forward``: the reparameterised
    ELBO when the posterior can be sampled pathwise (``posterior=gaussian``), the
    score-function estimator with the ``cv`` chain when it cannot (``posterior=mixture``:
    the notebook's SFE runs). Takes the score-function optimiser recipe below.

* ``cv`` (only with ``estimator=sfe|mixture|nvil``; ``ValueError`` with ``reparam``): the chain
  of control variates (``objective.control_variates``, the notebook's ``CVChain``),
  applied left to right:

  - ``critic`` (default): ``("self_critic", "centred", "scaled")``: subtract the signal of a
    fresh sample ``z' ~ q(z|x)`` (``SelfCritic``; it must come first because it subtracts a
    raw signal), centre what is left by a running mean (``CentredReward``) and divide by a
    running standard deviation floored at 1 (``ScaledReward``). No trained parameters; costs
    one more decoder pass per step.
  - ``baseline``: ``("centred", "baseline", "scaled")``: the notebook's commented-out chain
    ``CVChain(CentredReward(), Baseline(4096, 512), ScaledReward())`` with everything
    enabled; the baseline is an MLP 4096-512-1 of ``x`` trained by squared error with its
    own learning rate (``objective.baseline_learning_rate``).
  - ``centred``: ``("centred",)``, the chain the notebook leaves switched on.
  - ``none``: ``()``, the plain (high-variance) score-function estimator.

  With ``estimator=mixture`` the ``scaled`` step is left out of the chain: it would divide
  only the component choice's score term and not the path derivatives. With ``sfe`` the
  signal is the full ``log p(x, z) - log q(z|x)`` (``objective.kl = "auto"`` is Monte Carlo
  for ``sfe``), so ``scaled`` rescales the whole inference gradient.

  ``objective.cv_decay = 0.1``: the notebook's running estimates put weight ``alpha = 0.9``
  on the newest batch, which is ``decay = 1 - alpha`` in jvae's convention.

Optimiser of the score-function variants (``sfe``, ``mixture`` and ``nvil``): RMSprop with the
notebook's ``OptCollection`` learning rates as parameter groups (``optim.param_groups``,
regexes on module names): the generative model (``prior``, ``decoder``, ``likelihood``) 5e-4,
the inference model (``encoder``, ``posterior``) 1e-4, a learned baseline
(``baseline``, via ``objective.baseline_learning_rate``) 1e-4. ``learning_rate = 5e-4`` is
the default for anything not in a group. RMSprop's averaging is PyTorch's default
(``optim.rmsprop_decay = 0.99``) and an L2 weight decay of 1e-6 is added to the gradients
(``optim.weight_decay``). Differences from the notebook's ``torch.optim.RMSprop``: the weight
decay applies to every parameter (the notebook leaves the inference model without), and
optax puts ``eps`` inside the square root (PyTorch: outside). The reparameterised variant keeps Adam 1e-3 ("Adam is the go-to choice for
(reparameterised) VAEs"; "Adam is not often a good choice for SFE-based optimisation").

Every field can still be overridden after the variant, e.g.
``--config.model.prior_components=5 --config.objective.num_samples=4``.
"""

from jvae import default_config
from jvae.runs import split_variant

PRIORS = {"gaussian": "standard", "mixture": "mixture"}
POSTERIORS = {"gaussian": "gaussian", "mixture": "mixture"}
ESTIMATORS = {"reparam": "elbo", "sfe": "sfe", "mixture": "mixture", "nvil": "nvil"}
CV_CHAINS = {
    "critic": ("self_critic", "centred", "scaled"),
    "baseline": ("centred", "baseline", "scaled"),
    "centred": ("centred",),
    "none": (),
}
CHOICES = {"prior": tuple(PRIORS), "posterior": tuple(POSTERIORS),
           "estimator": tuple(ESTIMATORS), "cv": tuple(CV_CHAINS)}
DEFAULTS = {"prior": "gaussian", "posterior": "gaussian", "estimator": "reparam"}

GENERATIVE_LR = 5e-4        # notebook: RMSprop(model.gen_params(), lr=5e-4)
INFERENCE_LR = 1e-4         # notebook: RMSprop(model.inf_params(), lr=1e-4)
BASELINE_LR = 1e-4          # notebook: RMSprop(model.cv_params(), lr=1e-4)


def parse_variant(variant: str) -> dict:
    """``"prior=mixture,estimator=sfe"`` -> ``{"prior": "mixture", "posterior": "gaussian",
    "estimator": "sfe", "cv": "critic"}`` (defaults filled in); raises ``ValueError`` on an
    unknown key or value, a repeated key, or an invalid combination."""
    chosen = split_variant(variant, "fashion_mnist_dpm2", CHOICES,
                           f"valid keys and values: {_describe_choices()}")
    for key, value in chosen.items():
        if value not in CHOICES[key]:
            raise ValueError(f"Unknown value {value!r} for fashion_mnist_dpm2 variant key "
                             f"{key!r}; choose one of {list(CHOICES[key])}.")
    out = {**DEFAULTS, **chosen}
    if out["estimator"] == "reparam":
        if out["posterior"] == "mixture":
            raise ValueError("fashion_mnist_dpm2: estimator=reparam needs posterior=gaussian "
                             "(a mixture posterior is not reparameterisable); use "
                             "estimator=sfe or estimator=mixture.")
        if "cv" in chosen:
            raise ValueError("fashion_mnist_dpm2: cv (control variates) applies to "
                             "estimator=sfe or estimator=mixture, not estimator=reparam.")
    if out["estimator"] == "mixture" and out["posterior"] != "mixture":
        raise ValueError("fashion_mnist_dpm2: estimator=mixture needs posterior=mixture.")
    if out["estimator"] != "reparam":
        out.setdefault("cv", "critic")
    return out


def _describe_choices() -> str:
    return "; ".join(f"{k} in {list(v)}" for k, v in CHOICES.items())


def get_config(variant: str = ""):
    v = parse_variant(variant)
    c = default_config()
    c.seed = 42
    c.num_epochs = 5
    c.batch_size = 256
    c.learning_rate = 1e-3
    c.latent_dim = 10
    c.dataset.name = "fashion_mnist"
    c.dataset.resize = 64
    c.dataset.binarize = "static"
    c.dataset.threshold = 0.5
    c.dataset.eval_split = "validation"
    c.model.encoder_hidden = (512, 512, 1024, 20)
    c.model.decoder_hidden = (512, 512)
    c.model.decoder_dropout = 0.0           # the notebook's is 0.1 (see above; dpm2.py sets it)
    c.model.conv_encoder_out = 1024
    c.model.posterior_scale = "softplus"
    c.model.likelihood = "bernoulli"
    c.eval.batch_size = 500
    c.checkpoint_every = 1

    c.model.prior = PRIORS[v["prior"]]
    c.model.prior_components = 10
    c.model.posterior = POSTERIORS[v["posterior"]]
    c.model.posterior_components = 2
    c.objective.name = ESTIMATORS[v["estimator"]]
    if v["estimator"] != "reparam":
        chain = CV_CHAINS[v["cv"]]
        if v["estimator"] == "mixture":     # `scaled` would divide only the component's
            chain = tuple(cv for cv in chain if cv != "scaled")     # score term
        c.objective.control_variates = chain
        if {"centred", "scaled"} & set(chain):      # the running estimates' decay
            c.objective.cv_decay = 0.1
        if "baseline" in c.objective.control_variates:
            c.objective.baseline_hidden = (512,)
            c.objective.baseline_learning_rate = BASELINE_LR
        c.optim.name = "rmsprop"
        c.optim.rmsprop_decay = 0.99
        c.optim.weight_decay = 1e-6
        c.learning_rate = GENERATIVE_LR
        for module in ("prior", "decoder", "likelihood"):
            c.optim.param_groups[module] = GENERATIVE_LR
        for module in ("encoder", "posterior"):
            c.optim.param_groups[module] = INFERENCE_LR
    return c
