"""CPU-fast convolutions (jvae.models.conv) against flax.linen's, and the conv nets' computed shapes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae.runs import builders

from jvae.runs import schema
from jvae.runs.defaults import default_config
from jvae.models.conv import Conv, ConvTranspose, resolve_conv_impl
from jvae.models.conv_nets import ConvDecoder, ConvEncoder, conv_preset

# (kernel, stride, padding, input H x W): the DPM2 notebook's 5x5/6x6 VALID and jvae's 4x4
# SAME, odd kernels, stride 3, explicit pads (smaller than the kernel: lax's own gradient is
# wrong for pads of the dilated input >= the kernel, see docs/benchmarks-history.md) and a 1x1 input.
TRANSPOSE_CASES = [(4, 2, "SAME", (3, 4)), (5, 2, "VALID", (1, 1)), (4, 2, "SAME", (1, 1)), (6, 2, "VALID", (4, 3)),
                   (3, 3, "SAME", (2, 3)), (5, 2, ((2, 1), (0, 3)), (3, 3)),
                   (3, 1, "SAME", (4, 5)), (2, 1, ((1, 0), (0, 1)), (3, 3))]
CONV_CASES = [(4, 2, "VALID", (9, 8)), (3, 2, "SAME", (5, 6)), (5, 3, ((1, 0), (2, 1)), (8, 7)),
              (3, 1, "SAME", (5, 4)), (3, 1, ((0, 1), (2, 0)), (4, 4))]


def _random_params(module, x, seed=0):
    """Random normal values in the parameter tree of ``module`` (no init compiled)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), jnp.float32), shapes)


def _compare(ref, mine, x):
    params = _random_params(ref, x)                       # random kernels and biases
    # Same parameter tree: same names and shapes.
    mine_shapes = jax.eval_shape(mine.init, jax.random.key(0), x)
    assert jax.tree.structure(params) == jax.tree.structure(mine_shapes)
    assert [a.shape for a in jax.tree.leaves(params)] == [
        a.shape for a in jax.tree.leaves(mine_shapes)]
    np.testing.assert_allclose(jax.jit(mine.apply)(params, x), jax.jit(ref.apply)(params, x),
                               rtol=1e-5, atol=1e-5)

    def loss(module):
        return lambda p, v: jnp.sum(jnp.sin(module.apply(p, v)))
    g_ref = jax.jit(jax.grad(loss(ref), (0, 1)))(params, x)
    g_mine = jax.jit(jax.grad(loss(mine), (0, 1)))(params, x)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_mine)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,padding,size", TRANSPOSE_CASES)
def test_subpixel_conv_transpose_equals_flax(kernel, stride, padding, size):
    x = jax.random.normal(jax.random.key(0), (2,) + size + (3,))
    _compare(nn.ConvTranspose(4, (kernel, kernel), (stride, stride), padding),
             ConvTranspose(4, kernel, stride, padding, impl="subpixel"), x)


@pytest.mark.parametrize("kernel,stride,padding,size", CONV_CASES)
def test_space_to_depth_conv_equals_flax(kernel, stride, padding, size):
    x = jax.random.normal(jax.random.key(0), (2,) + size + (3,))
    _compare(nn.Conv(4, (kernel, kernel), (stride, stride), padding),
             Conv(4, kernel, stride, padding, impl="subpixel"), x)


# (input channels, output channels): each way jvae.models.conv computes the stride-1 convolutions
# inside (XLA's for few input channels or a large product, one product to all taps).
@pytest.mark.parametrize("c_in,c_out", [(3, 4), (16, 4), (16, 64)])
def test_every_stride1_strategy_equals_flax(c_in, c_out):
    x = jax.random.normal(jax.random.key(1), (2, 4, 5, c_in))
    _compare(nn.ConvTranspose(c_out, (4, 4), (2, 2), "SAME"),
             ConvTranspose(c_out, 4, 2, "SAME", impl="subpixel"), x)
    _compare(nn.Conv(c_out, (3, 3), (1, 1), "SAME"), Conv(c_out, 3, 1, "SAME", impl="subpixel"), x)


def test_stride1_strategy_choice():
    from jvae.models.conv import _conv_strategy
    # kernels [kh, kw, I, O] after the sub-pixel rearrangement
    assert _conv_strategy(4, 2, 2, 32) == "xla"                # first layer: 1 channel s2d
    assert _conv_strategy(32, 3, 3, 4) == "all_taps"
    assert _conv_strategy(128, 2, 2, 64) == "all_taps"
    assert _conv_strategy(64, 3, 3, 128) == "xla"


def test_same_initial_params_native_impl_and_structured_batches():
    x = jax.random.normal(jax.random.key(0), (2, 3, 4, 4, 2))       # [S, B, H, W, C]
    ref = nn.ConvTranspose(3, (4, 4), (2, 2), "SAME")
    params = jax.jit(ref.init)(jax.random.key(1), x)
    # The same initial values as flax's (same names, shapes and initialisers).
    mine = jax.jit(ConvTranspose(3, 4, 2, "SAME").init)(jax.random.key(1), x)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(mine), strict=True):
        np.testing.assert_array_equal(a, b)
    for impl in ("native", "subpixel"):
        y = jax.jit(ConvTranspose(3, 4, 2, "SAME", impl=impl).apply)(params, x)
        assert y.shape == (2, 3, 8, 8, 3)
        np.testing.assert_allclose(y, jax.jit(ref.apply)(params, x), rtol=1e-5, atol=1e-5)
    assert resolve_conv_impl("auto") == ("subpixel" if jax.default_backend() == "cpu"
                                         else "native")
    with pytest.raises(ValueError, match="subpixel"):
        resolve_conv_impl("fast")


def test_conv_nets_share_params_across_impls():
    x = jax.random.uniform(jax.random.key(0), (2, 12, 10, 1))
    z = jax.random.normal(jax.random.key(1), (2, 3))
    for net, inp in ((ConvEncoder(features=(4, 6), out_dim=5), x),
                     (ConvDecoder((12, 10), 2, features=(6, 4)), z)):
        params = _random_params(net.clone(impl="native"), inp)
        outs = []
        for impl in ("native", "subpixel"):
            module = net.clone(impl=impl)
            shapes = jax.eval_shape(module.init, jax.random.key(0), inp)
            assert jax.tree.structure(shapes) == jax.tree.structure(params)
            outs.append(jax.jit(module.apply)(params, inp))
        np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [64, 28, 32])
def test_dpm2_preset_shapes(size):
    enc_kw, dec_kw = conv_preset("dpm2", (size, size))
    x = jnp.zeros((3, size, size, 1))
    z = jnp.zeros((3, 10))
    enc = ConvEncoder(**enc_kw)
    dec = ConvDecoder((size, size), 1, **dec_kw)
    enc_out, enc_vars = jax.eval_shape(lambda: enc.init_with_output(jax.random.key(0), x))
    dec_out, dec_vars = jax.eval_shape(lambda: dec.init_with_output(jax.random.key(0), z))
    assert enc_out.shape == (3, 1024)                  # the notebook's bottleneck
    assert dec_out.shape == (3, size, size, 1)
    assert dec_vars["params"]["proj"]["kernel"].shape == (10, 1024)
    if size == 64:                                      # the notebook's layers, exactly
        kernels = [dec_vars["params"][f"deconv_{i}"]["kernel"].shape for i in range(4)]
        assert kernels == [(5, 5, 1024, 128), (5, 5, 128, 64), (6, 6, 64, 32), (6, 6, 32, 1)]
        assert [enc_vars["params"][f"conv_{i}"]["kernel"].shape[:3] for i in range(4)] == [
            (4, 4, 1), (4, 4, 32), (4, 4, 64), (4, 4, 128)]
        assert "proj" not in enc_vars["params"]        # 2x2x256 = 1024 without projection


def test_sizes_that_cannot_be_produced_raise():
    with pytest.raises(ValueError, match="too small"):
        conv_preset("dpm2", (3, 3))
    with pytest.raises(ValueError, match="did you mean 'dpm2'"):
        conv_preset("dmp2", (64, 64))
    with pytest.raises(ValueError, match="cannot produce height 28"):
        ConvDecoder((28, 28), 1, features=(128, 64, 32), kernel=(5, 5, 6, 6),
                    padding="VALID", final="transpose").init(jax.random.key(0), jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="smaller than its 4x4 kernel"):
        ConvEncoder(features=(2, 2, 2, 2), padding="VALID").init(
            jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    with pytest.raises(ValueError, match="one per layer"):
        ConvEncoder(features=(2, 2), kernel=(3, 3, 3)).init(jax.random.key(0),
                                                           jnp.zeros((1, 8, 8, 1)))


def test_builder_preset_and_impl_options():
    config = default_config()
    config.model.encoder = config.model.decoder = "conv"
    config.model.conv_preset = "dpm2"
    config.model.conv_impl = "native"
    schema.validate_config(config)
    model = builders.build_model(config, (28, 28, 1))
    assert model.encoder.impl == model.decoder.impl == "native"
    assert model.decoder.final == "transpose" and model.encoder.padding[0] == "VALID"
    config.model.conv_impl = "fastest"
    with pytest.raises(ValueError, match="conv_impl"):
        schema.validate_config(config)
