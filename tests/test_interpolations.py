"""``interpolate_latents`` (Homework 2's interpolations) and its figure.

With an affine decoder (an MLP without hidden layers) and a Gaussian likelihood the decoder
mean is affine in ``z``, so decoding ``z1 (1 - a) + z2 a`` must equal ``(1 - a) mu(z1) + a
mu(z2)``: a closed form the function is checked against.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae import plotting
from jvae.models.heads import DiagGaussianHead, GaussianHead
from jvae.evaluation.inspection import interpolate_latents
from jvae.models.vae import VAE, init_params
from jvae.models.nets import MLP
from jvae.models.priors import StandardNormalPrior

SHAPE = (4, 4, 3)


@pytest.fixture(scope="module")
def linear_vae():
    model = VAE(SHAPE, StandardNormalPrior(3), MLP((8,), in_event_ndims=3),
                DiagGaussianHead(3), MLP(()), GaussianHead(SHAPE, scale="fixed"))
    x = jax.random.uniform(jax.random.key(0), (6,) + SHAPE)
    return model, init_params(model, jax.random.key(1), x[:1]), x


def test_affine_decoder_closed_form(linear_vae):
    model, params, x = linear_vae
    x1, x2 = x[:3], x[3:]
    out = interpolate_latents(model, params, x1, x2, num=5)
    assert out.shape == (3, 5) + SHAPE and out.dtype == jnp.float32
    z1 = model.apply(params, x1, method=VAE.encode).mean()
    z2 = model.apply(params, x2, method=VAE.encode).mean()
    m1 = model.apply(params, z1, method=VAE.decode).mean()
    m2 = model.apply(params, z2, method=VAE.decode).mean()
    a = np.linspace(0, 1, 5)[None, :, None, None, None]
    want = (1 - a) * np.asarray(m1)[:, None] + a * np.asarray(m2)[:, None]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    jitted = jax.jit(lambda p, u, v: interpolate_latents(model, p, u, v, num=5, validate=False))
    np.testing.assert_allclose(jitted(params, x1, x2), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num=1), "at least 2"),
    (dict(num=2.5), "positive integer"),
    (dict(x2=np.zeros((2,) + SHAPE, np.float32)), "same number of inputs"),
    (dict(x2=np.zeros((3, 4, 4, 1), np.float32)), "expected shape"),
])
def test_bad_arguments(linear_vae, kwargs, match):
    model, params, x = linear_vae
    args = dict(x1=x[:3], x2=x[3:], num=10) | kwargs
    with pytest.raises(ValueError, match=match):
        interpolate_latents(model, params, args["x1"], args["x2"], num=args["num"])


def test_rgb_interpolation_figure(linear_vae, tmp_path):
    model, params, x = linear_vae
    out = np.asarray(interpolate_latents(model, params, x[:2], x[2:4], num=10))
    path = plotting.save_interpolations(out, tmp_path / "interpolations.png", title="t")
    grid = plotting.image_grid(out.reshape((-1,) + SHAPE), nrow=10)
    assert grid.shape == (2 * 6 + 2, 10 * 6 + 2, 3)          # 2 rows of 10 RGB tiles
    np.testing.assert_allclose(grid[2:6, 2:6], np.clip(out[0, 0], 0, 1), atol=1e-6)
    from PIL import Image
    assert Image.open(path).mode in ("RGB", "RGBA")
