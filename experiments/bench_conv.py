"""Benchmark: convolutional VAEs on the CPU, jvae (native and sub-pixel convolutions) and PyTorch.

Programs, all at batch 256 on 64x64 binary images (random, fixed seed), float32:

- ``dpm2_step``: one training step (ELBO with analytic KL, Bernoulli likelihood, latent 10,
  gradient, Adam 1e-3) of the DPM2 notebook's CNN VAE (``conv_preset("dpm2")``: 4x4 stride-2
  ``VALID`` convs 32-64-128-256 with leaky ReLU, a 1024 -> 2x10 Gaussian head with softplus
  scales; decoder dense 10 -> 1x1x1024, transposed convs 5, 5, 6, 6 of stride 2), in jvae with
  ``conv_impl="native"`` (``flax.linen.ConvTranspose``/``Conv``) and ``"subpixel"``
  (:mod:`jvae.models.conv`), and in PyTorch (the notebook's layers; ``pip install -e ".[torch]"``,
  skipped with a message when torch is missing);
- ``default_step``: the same step of jvae's default conv model (``fashion_mnist_dpm2`` with
  ``--config.model.encoder=conv --config.model.decoder=conv``: SAME 4x4 stride-2 convs, a dense
  projection to 1024, a dense layer to 8x8x128, three 4x4 stride-2 transposed convs, a 3x3
  conv), native against sub-pixel (the issue's "today" is native);
- ``{dpm2,default}_{encoder,decoder}_{fwd,grad}``: each network alone, forward and gradient
  (of the sum of squared outputs w.r.t. the parameters and the input), jvae (both impls) and
  PyTorch (the same layers: ``Conv2d``/``ConvTranspose2d``, ``padding=1`` for SAME).

Every program is compiled (JAX) or warmed up (torch) once, then round ``r`` runs each program
once, in an order rotated every round; printed are the medians over rounds and the ratios
jvae-subpixel / PyTorch and native / subpixel. torch runs with ``torch.set_num_threads(N)``,
``N = os.cpu_count()`` unless ``--threads``. ``--skip-native`` leaves out the native programs
(tens of seconds per gradient on a 2-core CPU).

    python -m experiments.bench_conv --rounds 3 --json bench_conv.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jvae
from experiments.bench_record import stamp
from experiments.configs import fashion_mnist_dpm2

BATCH, SIZE, LATENT = 256, 64, 10


def jvae_config(arch: str, impl: str):
    config = fashion_mnist_dpm2.get_config()
    config.model.encoder = config.model.decoder = "conv"
    config.model.conv_impl = impl
    if arch == "dpm2":
        config.model.conv_preset = "dpm2"
        config.model.conv_encoder_out = 0
    return config


def jvae_programs(arch: str, impl: str, x: np.ndarray, config=None) -> dict:
    """Compiled step and per-network callables ``name -> fn()`` (each blocks until done);
    ``config`` replaces ``jvae_config(arch, impl)`` (e.g. with another compute dtype)."""
    config = jvae_config(arch, impl) if config is None else config
    jvae.validate_config(config)
    model = jvae.build_model(config, x.shape[1:])
    loss_fn = jvae.build_loss(config, model)
    params = jvae.init_params(model, jax.random.key(0), x[:1])
    opt = optax.adam(1e-3)
    xb = jnp.asarray(x)

    @jax.jit
    def step(params, opt_state, key):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, key, xb)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = {"params": params, "opt": opt.init(params), "key": jax.random.key(1)}

    def run_step():
        state["key"], sub = jax.random.split(state["key"])
        p, o, loss = step(state["params"], state["opt"], sub)
        jax.block_until_ready(loss)
        state["params"], state["opt"] = p, o

    out = {f"{arch}_step": run_step}
    z = jax.random.normal(jax.random.key(2), (BATCH, LATENT))
    enc_in = jnp.asarray(x)
    for part, module, inp in (("encoder", model.encoder, enc_in), ("decoder", model.decoder, z)):
        p = params["params"][part]
        fwd = jax.jit(lambda p, v, m=module: m.apply({"params": p}, v))
        grad = jax.jit(jax.grad(lambda p, v, m=module: jnp.sum(m.apply({"params": p}, v) ** 2),
                                (0, 1)))
        out[f"{arch}_{part}_fwd"] = (lambda f=fwd, p=p, v=inp: jax.block_until_ready(f(p, v)))
        out[f"{arch}_{part}_grad"] = (lambda g=grad, p=p, v=inp:
                                      jax.block_until_ready(g(p, v)))
    return out


def torch_programs(arch: str, x: np.ndarray) -> dict:
    import torch
    from torch import nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    if arch == "dpm2":
        encoder = nn.Sequential(nn.Conv2d(1, 32, 4, 2), nn.LeakyReLU(0.2),
                                nn.Conv2d(32, 64, 4, 2), nn.LeakyReLU(0.2),
                                nn.Conv2d(64, 128, 4, 2), nn.LeakyReLU(0.2),
                                nn.Conv2d(128, 256, 4, 2), nn.LeakyReLU(0.2), nn.Flatten())
        decoder = nn.Sequential(nn.Linear(LATENT, 1024), nn.Unflatten(1, (1024, 1, 1)),
                                nn.ConvTranspose2d(1024, 128, 5, 2), nn.ReLU(),
                                nn.ConvTranspose2d(128, 64, 5, 2), nn.ReLU(),
                                nn.ConvTranspose2d(64, 32, 6, 2), nn.ReLU(),
                                nn.ConvTranspose2d(32, 1, 6, 2))
    else:
        encoder = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.LeakyReLU(0.2),
                                nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2),
                                nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2),
                                nn.Conv2d(128, 256, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
                                nn.Linear(4096, 1024), nn.LeakyReLU(0.2))
        decoder = nn.Sequential(nn.Linear(LATENT, 8 * 8 * 128), nn.ReLU(),
                                nn.Unflatten(1, (128, 8, 8)),
                                nn.ConvTranspose2d(128, 128, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                                nn.Conv2d(32, 1, 3, 1, 1))
    head = nn.Linear(1024, 2 * LATENT)
    modules = nn.ModuleList([encoder, head, decoder])
    opt = torch.optim.Adam(modules.parameters(), lr=1e-3)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def run_step():
        loc, pre = head(encoder(xt)).chunk(2, dim=-1)
        scale = F.softplus(pre)
        z = loc + scale * torch.randn_like(loc)
        logits = decoder(z)
        distortion = F.binary_cross_entropy_with_logits(logits, xt, reduction="none").sum(
            (1, 2, 3))
        rate = 0.5 * (loc ** 2 + scale ** 2 - 1).sum(-1) - torch.log(scale).sum(-1)
        loss = (distortion + rate).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    z = torch.randn(BATCH, LATENT)
    out = {f"{arch}_step": run_step}
    for part, module, inp in (("encoder", encoder, xt), ("decoder", decoder, z)):
        def fwd(m=module, v=inp):
            with torch.no_grad():
                m(v)

        def grad(m=module, v=inp):
            v = v.detach().requires_grad_(True)
            m.zero_grad()
            (m(v) ** 2).sum().backward()
        out[f"{arch}_{part}_fwd"] = fwd
        out[f"{arch}_{part}_grad"] = grad
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--skip-native", action="store_true")
    parser.add_argument("--impl", default="auto", choices=["auto", "subpixel"],
                        help="jvae's fast convolutions: 'auto' (what a CPU user gets: "
                             "sub-pixel, a 1-channel output layer native) or 'subpixel'")
    parser.add_argument("--archs", default="dpm2,default")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    x = (np.random.default_rng(0).random((BATCH, SIZE, SIZE, 1)) < 0.3).astype(np.float32)
    archs = [a for a in args.archs.split(",") if a]
    impls = [args.impl] + ([] if args.skip_native else ["native"])
    programs: dict[tuple[str, str], object] = {}
    compile_s = {}
    for arch in archs:
        for impl in impls:
            t0 = time.perf_counter()
            for name, fn in jvae_programs(arch, impl, x).items():
                fn()                                  # compile and first run
                programs[(name, impl)] = fn
            compile_s[f"{arch}/{impl}"] = time.perf_counter() - t0
            print(f"# jvae {arch} {impl}: compiled and ran once in "
                  f"{compile_s[f'{arch}/{impl}']:.1f} s", flush=True)
    try:
        import torch
        torch.set_num_threads(args.threads)
        for arch in archs:
            for name, fn in torch_programs(arch, x).items():
                fn()
                programs[(name, "torch")] = fn
    except ImportError:
        print("# torch is not installed (pip install -e '.[torch]'): PyTorch programs skipped")
    keys = list(programs)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    for r in range(args.rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            t0 = time.perf_counter()
            programs[k]()
            times[k].append(time.perf_counter() - t0)
        print(f"# round {r + 1}/{args.rounds}, load {os.getloadavg()[0]:.2f}: " + ", ".join(
            f"{n}/{i} {times[(n, i)][-1]:.3f}" for n, i in keys), flush=True)
    med = {f"{n}/{i}": statistics.median(v) for (n, i), v in times.items()}
    names = sorted({n for n, _ in keys}, key=lambda n: (n.split("_")[0], n))
    print(f"\n{'program':24s} {args.impl:>10s} {'native':>10s} {'torch':>10s} "
          f"{'sub/torch':>10s} {'native/sub':>10s}")
    rows = {}
    for n in names:
        s, nat, t = (med.get(f"{n}/{i}") for i in (args.impl, "native", "torch"))
        row = {"subpixel_s": s, "native_s": nat, "torch_s": t,
               "subpixel_over_torch": s / t if s and t else None,
               "native_over_subpixel": nat / s if s and nat else None}
        rows[n] = row

        def f(v, fmt="{:10.3f}"):
            return fmt.format(v) if v is not None else f"{'-':>10s}"
        print(f"{n:24s} {f(s)} {f(nat)} {f(t)} {f(row['subpixel_over_torch'], '{:10.2f}')} "
              f"{f(row['native_over_subpixel'], '{:10.1f}')}")
    result = {"rows": rows, "times": {f"{n}/{i}": v for (n, i), v in times.items()},
              "compile_s": compile_s, "rounds": args.rounds, "threads": args.threads,
              "batch": BATCH, "size": SIZE, "loadavg_end": os.getloadavg(),
              "jax": jax.__version__, "backend": jax.default_backend(),
              "cpu_count": os.cpu_count(), "platform": platform.platform()}
    print(f"# load average at the end: {os.getloadavg()}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            stamp(result, "experiments.bench_conv", argv), indent=1))
    return result


if __name__ == "__main__":
    main()
