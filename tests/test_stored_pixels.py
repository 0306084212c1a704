"""8-bit images kept as uint8 on the device and converted per batch inside the compiled step.

The conversion must give the readers' float32 values bit for bit (``x.astype(float32) /
255``), so a run on uint8 data trains exactly as the same data read as float32: checked on
all 256 levels, on a tiny epoch (plain and dynamically binarised), on what a run places on
the device, and on a whole run of a uint8 ``npy`` against its float32 twin.
"""

import functools
import json
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jvae import default_config, train_and_evaluate
from jvae.data import PIXEL_LEVELS, ArraySource, NpySource, load_dataset, pixels_to_unit
from jvae.data import npy_rows
from jvae.models.heads import BernoulliHead, DiagGaussianHead
from jvae.models.nets import MLP
from jvae.models.priors import StandardNormalPrior
from jvae.models.vae import VAE, init_params
from jvae.objectives.elbo import make_elbo_loss
from jvae.runs.builders import load_data
from jvae.runs.placement import place
from jvae.training import TrainState, make_train_epoch

SHAPE = (4, 3, 1)
OPT = optax.adam(1e-2)


def _pixels(n=64, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _unit(u):
    """The readers' conversion: float32 array divided in place by 255."""
    x = u.astype(np.float32)
    x /= 255.0
    return x


def test_pixels_to_unit_gives_the_readers_float32_for_every_level_in_numpy_and_jit():
    u = np.arange(256, dtype=np.uint8)
    ref = _unit(u)
    np.testing.assert_array_equal(PIXEL_LEVELS, ref)
    for got in (pixels_to_unit(u), jax.jit(pixels_to_unit)(u), pixels_to_unit(jnp.asarray(u))):
        assert got.dtype == np.float32
        assert np.array_equal(np.asarray(got).view(np.uint32), ref.view(np.uint32))
    # a compiled x / 255 is a multiplication by the reciprocal: it would not be exact
    assert not np.array_equal(np.asarray(jax.jit(lambda v: v.astype(jnp.float32) / 255)(u)),
                              ref)
    x = np.ones(3, np.float32)
    assert pixels_to_unit(x) is x                                  # other dtypes untouched


def _numbers(a):
    a = jnp.asarray(a)
    return np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key)
                      else a)


def _setup():
    model = VAE(data_shape=SHAPE, prior=StandardNormalPrior(2), encoder=MLP((8,), in_event_ndims=3),
                posterior=DiagGaussianHead(2), decoder=MLP((8,)),
                likelihood=BernoulliHead(SHAPE))
    params = init_params(model, jax.random.key(0), jnp.zeros((1, *SHAPE)))
    return model, make_elbo_loss(model), TrainState.create(params, OPT, jax.random.key(1))


@pytest.mark.parametrize("dynamic", [False, True])
def test_an_epoch_on_uint8_equals_the_epoch_on_float32_over_255(dynamic):
    model, loss, state = _setup()
    epoch = make_train_epoch(loss, OPT, 16, model=model, dynamic_binarization=dynamic,
                             step_metrics=True)
    u = _pixels()
    out_u8 = epoch(state, jax.device_put(u))
    out_f32 = epoch(state, jax.device_put(_unit(u)))
    for a, b in zip(jax.tree.leaves(out_u8), jax.tree.leaves(out_f32)):
        np.testing.assert_array_equal(_numbers(a), _numbers(b))
    assert out_u8[0].step == 4
    # and training changed something (the comparison is not of two untouched states)
    assert not np.array_equal(np.asarray(jax.tree.leaves(out_u8[0].params)[0]),
                              np.asarray(jax.tree.leaves(state.params)[0]))


def test_an_epoch_refuses_other_integer_data_and_wrong_shapes_of_uint8():
    model, loss, state = _setup()
    epoch = make_train_epoch(loss, OPT, 16, model=model)
    with pytest.raises(ValueError, match="integer dtype int32"):
        epoch(state, _pixels().astype(np.int32))
    with pytest.raises(ValueError, match=r"got shape \(64, 4, 3, 2\)"):
        epoch(state, _pixels(shape=(4, 3, 2)))


def _npy_config(path, **dataset):
    c = default_config()
    c.dataset.name = f"npy:{path}"
    c.dataset.validation_size = 16
    c.dataset.train_split, c.dataset.eval_split = "train", "validation"
    for k, v in dataset.items():
        c.dataset[k] = v
    c.batch_size, c.latent_dim, c.num_epochs = 16, 2, 2
    c.model.encoder_hidden = c.model.decoder_hidden = (8,)
    c.figures = False
    c.eval.ll_samples = 0
    return c


def test_a_run_holds_uint8_on_the_device_and_float32_elsewhere(tmp_path):
    u = _pixels(80)
    np.save(tmp_path / "x.npy", u)
    c = _npy_config(tmp_path / "x.npy", dev_size=8)
    data = load_data(c, stored=True)
    assert data.train.dtype == np.uint8 and data.train.shape == (56, *SHAPE)
    assert data.eval.dtype == np.float32 and data.dev.dtype == np.float32
    plain = load_data(c)                                     # the public default: float32
    assert plain.train.dtype == np.float32
    np.testing.assert_array_equal(pixels_to_unit(data.train), plain.train)
    np.testing.assert_array_equal(data.dev, plain.dev)
    _, train, evals, _ = place(c, None, data.train, data.eval, stacked=False)
    assert train.dtype == jnp.uint8 and evals.dtype == jnp.float32
    static = load_data(_npy_config(tmp_path / "x.npy", binarize="static"), stored=True)
    assert static.train.dtype == np.float32 and set(np.unique(static.train)) <= {0.0, 1.0}
    centring = _npy_config(tmp_path / "x.npy", centre=True)
    centring.model.likelihood = "gaussian"
    centred = load_data(centring, stored=True)
    assert centred.train.dtype == np.float32 and centred.train.min() < 0


def test_load_dataset_stored_keeps_uint8_and_float32_stays_the_default(tmp_path):
    u = _pixels(20)
    np.save(tmp_path / "x.npy", u)
    name = f"npy:{tmp_path / 'x.npy'}"
    stored = load_dataset(name, "train_full", dtype="stored")
    assert stored.dtype == np.uint8 and not stored.flags.writeable
    np.testing.assert_array_equal(stored, u)
    np.testing.assert_array_equal(load_dataset(name, "train_full"), _unit(u))
    assert load_dataset(name, "train_full", dtype="stored", resize=2).dtype == np.float32
    with pytest.raises(ValueError, match="unknown dtype 'uint8'"):
        load_dataset(name, "train_full", dtype="uint8")


def test_load_dataset_stored_mnist_is_the_float32_split_before_division(jvae_data_dir):
    stored = load_dataset("mnist", "test", data_dir=jvae_data_dir, dtype="stored")
    grey = load_dataset("mnist", "test", data_dir=jvae_data_dir)
    assert stored.dtype == np.uint8 and stored.shape == grey.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(pixels_to_unit(stored), grey)


@pytest.mark.parametrize("binarize", ["none", "dynamic"])
def test_a_run_on_uint8_npy_gives_the_metrics_of_its_float32_twin(tmp_path, binarize):
    u = _pixels(80)
    np.save(tmp_path / "u8.npy", u)
    np.save(tmp_path / "f32.npy", _unit(u))
    records = []
    for name in ("u8", "f32"):
        c = _npy_config(tmp_path / f"{name}.npy", binarize=binarize, dev_size=8)
        train_and_evaluate(c, tmp_path / name, progress=False)
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        records.append([{k: v for k, v in json.loads(line).items() if "seconds" not in k}
                        for line in lines])
    assert len(records[0]) == 2 and "eval/elbo" in records[0][-1]
    assert records[0] == records[1]


@pytest.mark.parametrize("stored", [False, True])
@pytest.mark.parametrize("split", ["train", "validation"])
def test_an_npy_carve_read_in_chunks_equals_the_in_memory_carve(tmp_path, split, stored):
    u = _pixels(50, shape=(3, 2))
    labels = np.arange(50) % 7
    np.save(tmp_path / "x.npy", u)
    np.save(tmp_path / "f.npy", np.asfortranarray(u))    # Fortran order: read whole instead
    np.save(tmp_path / "g.npy", _unit(u))                # float data
    np.save(tmp_path / "y.npy", labels)
    kw = dict(validation_size=12, seed=3, stored=stored)
    want = ArraySource(u, labels).split(split, **kw)
    for name in ("x", "f"):
        got = NpySource(tmp_path / f"{name}.npy", labels=tmp_path / "y.npy").split(split, **kw)
        assert got.images.dtype == (np.uint8 if stored else np.float32)
        np.testing.assert_array_equal(got.images, want.images)
        np.testing.assert_array_equal(got.labels, want.labels)
    got = NpySource(tmp_path / "g.npy").split(split, **kw)
    np.testing.assert_array_equal(got.images, pixels_to_unit(want.images))
    rows = np.array([0, 4, 5, 17, 49])                     # chunks of 2 rows, some skipped
    np.testing.assert_array_equal(
        npy_rows.read_rows(tmp_path / "x.npy", u.shape, u.dtype, 128, rows, chunk_bytes=12), u[rows])


def test_an_npy_carve_never_holds_the_whole_file(tmp_path, monkeypatch):
    u = _pixels(3000, shape=(28, 28))                      # 2.35 MB, read in 100 kB chunks
    np.save(tmp_path / "x.npy", u)
    monkeypatch.setattr(npy_rows, "read_rows",
                        functools.partial(npy_rows.read_rows, chunk_bytes=100_000))
    tracemalloc.start()
    small = NpySource(tmp_path / "x.npy").split("validation", validation_size=30)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert small.images.shape == (30, 28, 28, 1)
    assert peak < u.nbytes / 2                            # a chunk and the 30 rows, not 2.35 MB
