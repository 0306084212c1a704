"""NumPyro and hand-written JAX references for the epoch benchmark (``bench_epoch.py``).

Both train the ``pytorch_example`` model (the PyTorch-examples MNIST VAE, Lab 5) on grey-level
MNIST: fc1 784->400 ReLU, fc21/fc22 400->20 (mean, log-variance), fc3 20->400 ReLU, fc4 400->784
Bernoulli logits, Adam 1e-3, batch 128, PyTorch's ``nn.Linear`` initialisation (kernel and bias
uniform in ``+-1/sqrt(fan_in)``). The posterior scale is jvae's ``DiagGaussianHead(scale="exp")``:
``exp(0.5 * clip(logvar, -30, 30)) + 1e-5``, so the three programs compute the same function and
:func:`params_from_jvae` maps jvae's parameters onto these.

- **NumPyro** (:func:`make_numpyro_epoch`), written the way NumPyro's own ``examples/vae.py``
  trains: ``model``/``guide`` with ``numpyro.module`` networks (stax-style ``(init, apply)``
  pairs of plain JAX functions), a ``numpyro.plate`` over the batch, ``SVI`` with
  ``optim.Adam`` and ``Trace_ELBO`` (Monte Carlo KL at the sample, NumPyro's default; pass
  ``elbo="meanfield"`` for ``TraceMeanField_ELBO``, whose KL is analytic as in jvae and PyTorch),
  the epoch one jitted ``lax.fori_loop`` over batches of a permutation drawn inside the program.
  NumPyro's loss is summed over the batch (the PyTorch example's too); Adam is invariant to
  that scale up to its epsilon.
- **Hand-written** (:func:`make_handwritten_epoch`): the same model as a pure ``jax``/``optax``
  loss (mean over the batch, analytic KL), the epoch one jitted ``lax.scan``: the floor of what a
  JAX program of this model costs.

numpyro is an optional dependency (``pip install -e ".[numpyro]"``), imported inside functions
only, so this module imports without it (the hand-written program needs only jax and optax).

    JVAE_DATA_DIR=../shared/data python -m experiments.numpyro_reference --epochs 3
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["numpyro_available", "init_torch_params", "params_from_jvae", "encode",
           "decode_logits", "handwritten_loss", "make_handwritten_epoch", "numpyro_model",
           "numpyro_guide", "make_numpyro_svi", "make_numpyro_epoch", "init_numpyro_state"]

LATENT, HIDDEN, PIXELS = 20, 400, 784
_LAYERS = {"fc1": (PIXELS, HIDDEN), "fc21": (HIDDEN, LATENT), "fc22": (HIDDEN, LATENT),
           "fc3": (LATENT, HIDDEN), "fc4": (HIDDEN, PIXELS)}
_ENCODER, _DECODER = ("fc1", "fc21", "fc22"), ("fc3", "fc4")
MIN_SCALE = 1e-5


def numpyro_available() -> bool:
    """Returns whether NumPyro can be imported."""
    try:
        import numpyro  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- the networks (plain JAX)

@jax.jit
def init_torch_params(key: jax.Array) -> dict:
    """PyTorch ``nn.Linear`` initialisation of every layer.

    Returns:
      ``{"encoder": {"fc1", "fc21", "fc22"}, "decoder": {"fc3", "fc4"}}``, each layer a dict
      ``{"w": [fan_in, fan_out], "b": [fan_out]}`` of float32.
    """
    keys = jax.random.split(key, 2 * len(_LAYERS))
    layers = {}
    for i, (name, (fan_in, fan_out)) in enumerate(_LAYERS.items()):
        bound = 1.0 / math.sqrt(fan_in)
        layers[name] = {
            "w": jax.random.uniform(keys[2 * i], (fan_in, fan_out), jnp.float32, -bound, bound),
            "b": jax.random.uniform(keys[2 * i + 1], (fan_out,), jnp.float32, -bound, bound)}
    return {"encoder": {k: layers[k] for k in _ENCODER},
            "decoder": {k: layers[k] for k in _DECODER}}


def params_from_jvae(variables: Any) -> dict:
    """jvae's ``pytorch_example`` variables (``init_params`` output) in this module's layout."""
    p = variables["params"]

    def layer(d):
        return {"w": d["kernel"], "b": d["bias"]}

    return {"encoder": {"fc1": layer(p["encoder"]["dense_0"]),
                        "fc21": layer(p["posterior"]["loc"]),
                        "fc22": layer(p["posterior"]["raw_scale"])},
            "decoder": {"fc3": layer(p["decoder"]["dense_0"]),
                        "fc4": layer(p["likelihood"]["out"])}}


def _linear(layer: dict, x: jax.Array) -> jax.Array:
    return x @ layer["w"] + layer["b"]


def encode(params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x [B, 784] -> (loc [B, 20], scale [B, 20])`` of ``q(z|x)``."""
    h = jax.nn.relu(_linear(params["fc1"], x))
    logvar = _linear(params["fc22"], h)
    return _linear(params["fc21"], h), jnp.exp(0.5 * jnp.clip(logvar, -30.0, 30.0)) + MIN_SCALE


def decode_logits(params: dict, z: jax.Array) -> jax.Array:
    """``z [..., 20] -> logits [..., 784]`` of ``p(x|z)``."""
    return _linear(params["fc4"], jax.nn.relu(_linear(params["fc3"], z)))


# ---------------------------------------------------------------- hand-written jax/optax

def handwritten_loss(params: dict, key: jax.Array, x: jax.Array) -> jax.Array:
    """Mean negative ELBO per example, one reparameterised sample, analytic KL.

    Args:
      params: :func:`init_torch_params` layout.
      x: ``[B, 784]`` grey levels in [0, 1].
    """
    loc, scale = encode(params["encoder"], x)
    z = loc + scale * jax.random.normal(key, loc.shape, loc.dtype)
    logits = decode_logits(params["decoder"], z)
    distortion = jnp.sum(jax.nn.softplus(logits) - x * logits, axis=-1)
    rate = 0.5 * jnp.sum(loc ** 2 + scale ** 2 - 1.0 - 2.0 * jnp.log(scale), axis=-1)
    return jnp.mean(distortion + rate)


class HandState(NamedTuple):
    params: dict
    opt_state: Any
    key: jax.Array


def make_handwritten_epoch(batch_size: int = 128, learning_rate: float = 1e-3
                           ) -> tuple[Callable, Callable]:
    """``(init(params, key) -> state, epoch(state, data [N, 784]) -> (state, mean loss))``.

    The epoch is jitted: a permutation of ``N`` drawn from the state's key, ``N // batch_size``
    steps in one ``lax.scan``, each a ``jnp.take`` of its batch, ``value_and_grad`` and an
    ``optax.adam`` update.
    """
    opt = optax.adam(learning_rate)

    def init(params, key):
        return HandState(params, opt.init(params), key)

    @jax.jit
    def epoch(state: HandState, data: jax.Array):
        steps = data.shape[0] // batch_size
        key, perm_key, step_key = jax.random.split(state.key, 3)
        perm = jax.random.permutation(perm_key, data.shape[0])[: steps * batch_size]

        def step(carry, inputs):
            params, opt_state = carry
            idx, k = inputs
            loss, grads = jax.value_and_grad(handwritten_loss)(params, k,
                                                               jnp.take(data, idx, axis=0))
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            step, (state.params, state.opt_state),
            (perm.reshape(steps, batch_size), jax.random.split(step_key, steps)))
        return HandState(params, opt_state, key), jnp.mean(losses)

    return init, epoch


# ---------------------------------------------------------------- NumPyro

def _stax(apply: Callable, params: dict) -> tuple[Callable, Callable]:
    """A stax-style ``(init_fn, apply_fn)`` pair for ``numpyro.module`` (init returns fixed
    parameters; :func:`init_numpyro_state` passes the real ones through ``init_params``)."""
    return (lambda rng, input_shape: (None, params)), apply


def numpyro_model(batch: jax.Array, decoder_params: dict) -> jax.Array:
    """``p(z) p(x|z)``: ``batch [B, 784]``; as in NumPyro's ``examples/vae.py``."""
    import numpyro
    import numpyro.distributions as dist

    batch_dim = batch.shape[0]
    decode = numpyro.module("decoder", _stax(decode_logits, decoder_params), (batch_dim, LATENT))
    with numpyro.plate("batch", batch_dim):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
        # validate_args=False: grey levels are outside Bernoulli's {0, 1} support, where
        # NumPyro's default validation would give log_prob = -inf (the density is still the
        # example's binary cross-entropy).
        px = dist.Bernoulli(logits=decode(z), validate_args=False)
        return numpyro.sample("obs", px.to_event(1), obs=batch)


def numpyro_guide(batch: jax.Array, encoder_params: dict) -> jax.Array:
    """``q(z|x)``: ``batch [B, 784]``; as in NumPyro's ``examples/vae.py``."""
    import numpyro
    import numpyro.distributions as dist

    batch_dim = batch.shape[0]
    enc = numpyro.module("encoder", _stax(encode, encoder_params), (batch_dim, PIXELS))
    loc, scale = enc(batch)
    with numpyro.plate("batch", batch_dim):
        return numpyro.sample("z", dist.Normal(loc, scale).to_event(1))


def make_numpyro_svi(params: dict, learning_rate: float = 1e-3, elbo: str = "trace"):
    """``numpyro.infer.SVI`` of :func:`numpyro_model`/:func:`numpyro_guide` with ``optim.Adam``.

    Args:
      params: :func:`init_torch_params` layout (the initial parameters).
      elbo: ``"trace"`` (``Trace_ELBO``) or ``"meanfield"`` (``TraceMeanField_ELBO``).
    """
    from numpyro import optim
    from numpyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

    losses = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO}
    if elbo not in losses:
        raise ValueError(f"Unknown elbo {elbo!r}; choose one of {sorted(losses)}.")
    model = lambda batch: numpyro_model(batch, params["decoder"])  # noqa: E731
    guide = lambda batch: numpyro_guide(batch, params["encoder"])  # noqa: E731
    return SVI(model, guide, optim.Adam(learning_rate), losses[elbo]())


def init_numpyro_state(svi, params: dict, key: jax.Array, batch: jax.Array):
    """``svi.init`` with the given parameters (not NumPyro's own initialisation)."""
    return svi.init(key, batch, init_params={"encoder$params": params["encoder"],
                                             "decoder$params": params["decoder"]})


def make_numpyro_epoch(svi, batch_size: int = 128) -> Callable:
    """Jitted ``epoch(svi_state, key, data [N, 784]) -> (svi_state, mean loss per example)``:
    a permutation drawn from ``key``, then ``lax.fori_loop`` over ``N // batch_size`` steps of
    ``svi.update`` on ``jnp.take`` batches, as NumPyro's ``examples/vae.py``'s ``epoch_train``."""

    @jax.jit
    def epoch(svi_state, key, data):
        steps = data.shape[0] // batch_size
        perm = jax.random.permutation(key, data.shape[0])

        def body(i, val):
            loss_sum, svi_state = val
            idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
            svi_state, loss = svi.update(svi_state, jnp.take(data, idx, axis=0))
            return loss_sum + loss, svi_state

        loss_sum, svi_state = jax.lax.fori_loop(0, steps, body, (jnp.zeros(()), svi_state))
        return svi_state, loss_sum / (steps * batch_size)

    return epoch


# ---------------------------------------------------------------- command line

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="default: $JVAE_DATA_DIR")
    parser.add_argument("--elbo", default="trace", choices=["trace", "meanfield"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from jvae.data import load_dataset

    images = load_dataset("mnist", "train_full", data_dir=args.data_dir)
    data = jax.device_put(np.ascontiguousarray(images, np.float32).reshape(len(images), -1))
    params = init_torch_params(jax.random.key(args.seed))
    init, hand_epoch = make_handwritten_epoch()
    hand = init(params, jax.random.key(args.seed + 1))
    programs = {"hand-written": lambda s, k: hand_epoch(s, data)}
    states = {"hand-written": hand}
    if numpyro_available():
        svi = make_numpyro_svi(params, elbo=args.elbo)
        np_epoch = make_numpyro_epoch(svi)
        states["numpyro"] = init_numpyro_state(svi, params, jax.random.key(args.seed + 1),
                                               data[:128])
        programs["numpyro"] = lambda s, k: np_epoch(s, k, data)
    for e in range(args.epochs):
        for name, run in programs.items():
            t0 = time.perf_counter()
            states[name], loss = run(states[name], jax.random.key(100 + e))
            loss = float(loss)
            print(f"epoch {e + 1} {name}: {time.perf_counter() - t0:.2f} s, loss {loss:.2f}")


if __name__ == "__main__":
    main()
