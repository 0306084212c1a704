"""Tests for jvae.data.validate, jvae.data.checksums and the data checks of every entry point.

Tiny models (4-pixel observations, 8 hidden units, 2 latents) keep the compiled programs small:
most checks raise before anything is compiled.
"""

import functools
import hashlib
import importlib
import json
import os
import shutil
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jvae import data
from jvae.data import UNIT_INTERVAL, REAL, InvalidDataError, Support, check_data
from jvae.data import checksums
from jvae.data import validate as jvalidate
from jvae.models.distributions import bernoulli
from jvae.evaluation import evaluate, importance_log_likelihood, make_evaluator
from jvae.models.heads import BernoulliHead, ContinuousBernoulliHead, DiagGaussianHead, GaussianHead
from jvae.models.vae import VAE, init_params, log_joint, naive_lower_bound, reconstruct
from jvae.models.nets import MLP
from jvae.objectives.elbo import make_elbo_loss
from jvae.models.priors import StandardNormalPrior
from jvae.training import TrainState, make_train_epoch

dl = importlib.import_module("jvae.data.fetch")
SHAPE = (4,)
OPT = optax.sgd(1e-2)


def _vae(head):
    return VAE(data_shape=SHAPE, prior=StandardNormalPrior(2), encoder=MLP((8,)),
               posterior=DiagGaussianHead(2), decoder=MLP((8,)), likelihood=head)


@functools.lru_cache(maxsize=None)
def _model(kind):
    head = {"bernoulli": BernoulliHead(SHAPE), "cb": ContinuousBernoulliHead(SHAPE),
            "gaussian": GaussianHead(SHAPE, scale="fixed")}[kind]
    model = _vae(head)
    return model, init_params(model, jax.random.key(0), jnp.zeros((1,) + SHAPE))


def _grey(n=16, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.1, 0.9, (n,) + SHAPE), jnp.float32)


def _state(params):
    return TrainState.create(params, OPT, jax.random.key(1))


def _raises(match, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=match) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value), str(e.value)   # one line
    return str(e.value)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JVAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(dl, "MIRRORS", {k: () for k in dl.MIRRORS})
    checksums._VERIFIED.clear()


# ------------------------------------------------------------------------- check_data


def test_check_data_accepts_good_data_and_names_every_problem():
    good = np.full((3, 4), 0.5, np.float32)
    check_data(good, data_shape=SHAPE, support=UNIT_INTERVAL)
    check_data(jnp.asarray(good), data_shape=SHAPE, support=UNIT_INTERVAL)
    check_data(good.astype(np.float64) * 10 - 20, data_shape=SHAPE, support=REAL)
    _raises(r"x: expected an array .* got list", check_data, [[0.5] * 4], name="x")
    _raises("got NoneType", check_data, None)
    _raises("non-numeric dtype <U1", check_data, np.array([["a"]]))
    _raises("complex", check_data, good.astype(np.complex64))
    msg = _raises(r"integer dtype uint8 \(values 0..255\)", check_data,
                  np.array([[0, 3, 255, 7]], np.uint8))
    assert "x.astype(np.float32) / 255" in msg
    _raises(r"boolean dtype.*astype\(np.float32\)", check_data, good > 0)
    msg = _raises(r"expected shape \[N, 4\] .*\(4,\), got shape \(3, 5\)", check_data,
                  np.zeros((3, 5), np.float32), data_shape=SHAPE)
    _raises(r"got shape \(4,\); add a batch axis", check_data, good[0], data_shape=SHAPE)
    _raises(r"got shape \(2, 3, 4\)", check_data, np.zeros((2, 3, 4), np.float32),
            data_shape=SHAPE)
    check_data(np.zeros((2, 3, 4), np.float32), data_shape=SHAPE, batch_ndim=None)
    _raises(r"leading batch axis", check_data, np.asarray(0.5, np.float32))
    _raises(r"got float32", check_data, np.float32(0.5))            # a scalar, not an array
    _raises(r"empty array of shape \(0, 4\) \(0 examples\)", check_data,
            np.zeros((0, 4), np.float32), data_shape=SHAPE)
    bad = good.copy()
    bad[1, 2], bad[2, 0] = np.nan, -np.inf
    for arr in (bad, jnp.asarray(bad)):
        _raises(r"batch: 2 non-finite values \(NaN/Inf\) of 12; first at index \(1, 2\) "
                r"\(value nan\)", check_data, arr, name="batch")
    # Large enough for XLA's vectorised CPU min/max, which need not propagate NaN.
    big = jnp.zeros((10500, 2)).at[7, 1].set(jnp.nan)
    _raises(r"1 non-finite values .* first at index \(7, 1\)", check_data, big)
    out = good.copy()
    out[0, 1], out[2, 3] = -0.5, 3.0
    for arr in (out, jnp.asarray(out)):
        msg = _raises(r"values must lie in \[0, 1\], got min -0.5 and max 3: 2 of 12 values "
                      r"outside, first at index \(0, 1\)", check_data, arr,
                      support=UNIT_INTERVAL)
    check_data(out, support=REAL)
    check_data(out)                                       # no support: finiteness only
    check_data(np.zeros((2, 4), np.uint8), data_shape=SHAPE, values=False)  # structure only


def test_each_likelihood_declares_its_support_and_the_check_follows_it():
    assert BernoulliHead.support == ContinuousBernoulliHead.support == UNIT_INTERVAL
    assert GaussianHead.support == REAL and str(REAL) == "any finite value"
    assert str(UNIT_INTERVAL) == "[0, 1]"
    x = np.linspace(-1.0, 2.0, 8, dtype=np.float32).reshape(2, 4)
    for kind in ("bernoulli", "cb"):
        model = _vae(_model(kind)[0].likelihood)
        msg = _raises(r"\[0, 1\]", check_data, x, model=model)
        assert type(model.likelihood).__name__ in msg
    check_data(x, model=_vae(GaussianHead(SHAPE)))

    class Positive(nn.Module):                        # a user's head declaring its support
        support = Support(0.0, float("inf"))

        @nn.compact
        def __call__(self, h):
            return bernoulli(nn.Dense(4)(h), 1)

    class Undeclared(Positive):
        support = None

    _raises(r"values must lie in \[0, inf\]", check_data, x, model=_vae(Positive()))
    check_data(x + 1.0, model=_vae(Positive()))
    check_data(x, model=_vae(Undeclared()))            # no support declared: no range check
    _raises("non-finite", check_data, x * np.nan, model=_vae(Undeclared()))


def test_identity_cache_checks_each_immutable_array_once(monkeypatch):
    calls = []
    real = jvalidate._minmax
    monkeypatch.setattr(jvalidate, "_minmax", lambda x: calls.append(1) or real(x))
    x = _grey()
    for _ in range(3):
        check_data(x, support=UNIT_INTERVAL)
    assert len(calls) == 1
    check_data(x, support=REAL)                          # another spec: checked again
    check_data(_grey(), support=UNIT_INTERVAL)           # another array: checked
    assert len(calls) == 3
    frozen = np.array(x)
    frozen.flags.writeable = False
    check_data(frozen), check_data(frozen)
    assert len(calls) == 4
    writable = np.array(x)                               # mutable: checked on every call
    check_data(writable), check_data(writable)
    assert len(calls) == 6
    view = writable[:4]
    view.flags.writeable = False                         # its base can still change
    check_data(view), check_data(view)
    assert len(calls) == 8
    key = id(x)
    del x
    assert key not in jvalidate._CHECKED                 # weak reference: entry dropped


# ------------------------------------------------------------------- entry points


def test_epoch_refuses_nan_integer_out_of_range_and_wrong_shape_data():
    model, params = _model("bernoulli")
    state = _state(params)
    loss = make_elbo_loss(model)
    epoch = make_train_epoch(loss, OPT, 8, model=model)
    x = np.array(_grey())
    x[5, 2] = np.nan
    _raises(r"training data: 1 non-finite values \(NaN/Inf\) of 64; first at index \(5, 2\)",
            epoch, state, jnp.asarray(x))
    plain = make_train_epoch(loss, OPT, 8)   # no model: finiteness and dtype are still checked
    _raises("non-finite", plain, state, jnp.asarray(x))
    # uint8 is stored pixels (converted per batch, tests/test_stored_pixels.py); int32 is not
    _raises("integer dtype int32", plain, state, (np.asarray(_grey()) * 255).astype(np.int32))
    _raises(r"\[0, 1\].*BernoulliHead", epoch, state, _grey() * 3)
    _raises(r"got shape \(16, 5\)", epoch, state, jnp.zeros((16, 5)))
    _raises("empty", plain, state, jnp.zeros((0, 4)))
    binarizing = make_train_epoch(loss, OPT, 8, dynamic_binarization=True)
    _raises(r"\[0, 1\]", binarizing, state, _grey() * 3)          # probabilities, no model
    cb, cb_params = _model("cb")
    _raises(r"\[0, 1\].*ContinuousBernoulliHead",
            make_train_epoch(make_elbo_loss(cb), OPT, 8, model=cb), _state(cb_params),
            _grey() - 0.5)


def test_epoch_accepts_real_data_under_a_gaussian_and_validate_false_lets_nan_through():
    model, params = _model("gaussian")
    epoch = make_train_epoch(make_elbo_loss(model), OPT, 8, model=model)
    state, metrics, _ = epoch(_state(params), _grey() * 3 - 1)   # outside [0, 1]: fine here
    assert np.isfinite(float(metrics["loss"]))
    assert hasattr(epoch, "lower")
    nan = jnp.full((16,) + SHAPE, jnp.nan)
    unchecked = make_train_epoch(make_elbo_loss(model), OPT, 8, model=model, validate=False)
    state, metrics, _ = unchecked(_state(params), nan)
    assert np.isnan(float(metrics["loss"]))           # what the check protects against


def test_tracers_are_not_checked_so_nothing_syncs_inside_jit_or_vmap(monkeypatch):
    calls = []
    real = jvalidate._minmax
    monkeypatch.setattr(jvalidate, "_minmax", lambda x: calls.append(1) or real(x))
    model, params = _model("gaussian")
    epoch = make_train_epoch(make_elbo_loss(model), OPT, 8, jit=False, model=model)
    jaxpr = jax.make_jaxpr(epoch)(_state(params), jnp.full((16,) + SHAPE, jnp.nan))
    assert any(e.primitive.name == "scan" for e in jaxpr.jaxpr.eqns)
    key = jax.random.key(2)
    x = _grey(6)
    ll = jax.jit(lambda x: importance_log_likelihood(model, params, key, x, 3))(x)
    per_row = jax.vmap(lambda xi: importance_log_likelihood(model, params, key, xi[None], 3))(x)
    rec = jax.jit(lambda x: reconstruct(model, params, key, x))(x * 5)    # not checked
    assert ll.shape == (6,) and per_row.shape == (6, 1) and rec.shape == x.shape
    assert calls == []


def test_evaluator_refuses_uint8_nan_and_out_of_range_but_not_under_gaussian():
    model, params = _model("bernoulli")
    evaluator = make_evaluator(model, batch_size=8)
    key = jax.random.key(3)
    uint8 = (np.asarray(_grey()) * 255).astype(np.uint8)
    msg = _raises(r"evaluation data: integer dtype uint8", evaluator, params, key, uint8)
    assert "/ 255" in msg
    _raises("non-finite", evaluator, params, key, _grey().at[0, 0].set(jnp.inf))
    _raises(r"\[0, 1\]", evaluator, params, key, _grey() + 1)
    _raises(r"\[0, 1\]", evaluate, model, params, key, np.asarray(_grey() + 1))
    _raises("empty", evaluator, params, key, jnp.zeros((0, 4)))
    _raises(r"\(16, 2, 2\)", evaluator, params, key, jnp.zeros((16, 2, 2)))
    assert hasattr(evaluator, "lower")
    cb, _ = _model("cb")
    _raises(r"ContinuousBernoulliHead", make_evaluator(cb), None, key, _grey() - 1)
    gauss, g_params = _model("gaussian")
    out = make_evaluator(gauss, batch_size=8)(g_params, key, _grey() * 4 - 2)
    assert np.isfinite(float(out["elbo"]))
    unchecked = make_evaluator(model, batch_size=8, validate=False)(params, key, uint8)
    assert np.isfinite(float(unchecked["elbo"]))      # a number, but meaningless: no check


def test_model_helpers_and_init_params_check_their_data():
    model, params = _model("bernoulli")
    key = jax.random.key(4)
    _raises(r"x_example: empty array of shape \(0, 4\)", init_params, model, key,
            jnp.zeros((0, 4)))
    msg = _raises(r"x_example: expected shape \[\.\.\., 4\] for the model's data_shape \(4,\),"
                  r" got shape \(1, 5\)", init_params, model, key, np.zeros((1, 5)))
    _raises("got list", init_params, model, key, [[0.0] * 4])
    init_params(model, key, np.zeros((1, 4), np.uint8))   # values unused: integers are fine
    bad = _grey(4) * 2
    for fn in (lambda x, **kw: reconstruct(model, params, key, x, **kw),
               lambda x, **kw: naive_lower_bound(model, params, key, x, 2, **kw),
               lambda x, **kw: log_joint(model, params, x, jnp.zeros((4, 2)), **kw),
               lambda x, **kw: importance_log_likelihood(model, params, key, x, 2, **kw)):
        _raises(r"x: values must lie in \[0, 1\]", fn, bad)
        _raises("non-finite", fn, bad * jnp.nan)
    assert reconstruct(model, params, key, bad, validate=False).shape == bad.shape  # unchecked


# ------------------------------------------------------------------------ checksums


def _copy(src_dir, dst_dir, files):
    dst_dir.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(src_dir / f, dst_dir / f)


TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def test_pinned_checksums_equal_the_data_folders_sha256sums(jvae_data_dir):
    known = checksums.known_sha256()
    lines = (jvae_data_dir / "SHA256SUMS").read_text().split("\n")
    listed = dict(reversed(line.split()) for line in lines if line.strip())
    assert len(listed) == 11
    for path, digest in listed.items():
        name, fname = path.split("/")
        assert known[name][fname] == digest, path


def test_fashion_file_under_mnist_is_refused_and_named(jvae_data_dir, tmp_path):
    _copy(jvae_data_dir / "fashion_mnist", tmp_path / "mnist", TEST_FILES)
    msg = _raises("SHA-256", data.load_split, "mnist", "test", data_dir=tmp_path)
    path = tmp_path / "mnist" / TEST_FILES[0]
    for s in (str(path), "data_dir", dl.SHA256["mnist"][TEST_FILES[0]],
              dl.SHA256["fashion_mnist"][TEST_FILES[0]],
              f"fashion_mnist file fashion_mnist/{TEST_FILES[0]}", "download=True",
              "verify=False"):
        assert s in msg, s
    with pytest.raises(checksums.ChecksumError):
        data.load_dataset("mnist", "test", data_dir=tmp_path, limit=3)
    x = data.load_dataset("mnist", "test", data_dir=tmp_path, limit=3, verify=False)
    assert x.shape == (3, 28, 28, 1)


def test_binarized_mismatch_names_the_file_and_offers_no_download(jvae_data_dir, tmp_path):
    d = tmp_path / "binarized_mnist"
    d.mkdir()
    shutil.copyfile(jvae_data_dir / "binarized_mnist" / "binarized_mnist_valid.npz",
                    d / "binarized_mnist_test.npz")
    msg = _raises("binarized_mnist/binarized_mnist_valid.npz", data.load_split,
                  "binarized_mnist", "test", data_dir=tmp_path)
    assert "download=True" not in msg and "verify=False" in msg


def test_verification_is_cached_by_size_and_mtime(jvae_data_dir, tmp_path, monkeypatch):
    _copy(jvae_data_dir / "mnist", tmp_path / "mnist", TEST_FILES)
    hashed = []
    real = checksums._file_sha256
    monkeypatch.setattr(checksums, "_file_sha256", lambda p: hashed.append(p.name) or real(p))
    data.load_split("mnist", "test", data_dir=tmp_path)
    data.load_split("mnist", "test", data_dir=tmp_path)
    assert sorted(hashed) == sorted(TEST_FILES)                   # once per file
    cache = json.loads((tmp_path / "cache" / checksums.CACHE_FILE).read_text())["files"]
    assert str(tmp_path / "mnist" / TEST_FILES[0]) in cache
    checksums._VERIFIED.clear()                                   # a new process
    data.load_split("mnist", "test", data_dir=tmp_path)
    assert len(hashed) == 2                                       # the JSON cache suffices
    image = tmp_path / "mnist" / TEST_FILES[0]
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "changed": hash again
    data.load_split("mnist", "test", data_dir=tmp_path)
    assert hashed[2:] == [TEST_FILES[0]]


def test_unwritable_or_corrupt_cache_never_fails_a_load(jvae_data_dir, tmp_path, monkeypatch):
    _copy(jvae_data_dir / "mnist", tmp_path / "mnist", TEST_FILES)
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    monkeypatch.setenv("JVAE_CACHE_DIR", str(blocker / "cache"))  # mkdir fails
    assert data.load_split("mnist", "test", data_dir=tmp_path).images.shape[0] == 10000
    checksums._VERIFIED.clear()
    cache = tmp_path / "c2"
    cache.mkdir()
    (cache / checksums.CACHE_FILE).write_text("{not json")
    monkeypatch.setenv("JVAE_CACHE_DIR", str(cache))
    assert data.load_split("mnist", "test", data_dir=tmp_path).labels.shape == (10000,)
    assert json.loads((cache / checksums.CACHE_FILE).read_text())["files"]


# -------------------------------------------------------------------------- readers


def _npz_bytes(n=3):
    import io
    buf = io.BytesIO()
    np.savez(buf, bits=np.zeros((n, 98), np.uint8), shape=np.array([n, 784]))
    return buf.getvalue()


@pytest.mark.parametrize("content, match", [
    (_npz_bytes()[:-40], "not a valid binarized_mnist npz"),          # truncated
    (_npz_bytes()[:200], "not a valid binarized_mnist npz"),
    (b"<html>404</html>", "not a valid binarized_mnist npz"),
    ("zip", "without the binarized_mnist arrays"),
    ("npy", "single .npy array"),
])
def test_corrupt_npz_gives_one_line_error_naming_the_file(tmp_path, content, match):
    d = tmp_path / "binarized_mnist"
    d.mkdir()
    path = d / "binarized_mnist_test.npz"
    if content == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        path.write_bytes(content)
    msg = _raises(match, data.load_split, "binarized_mnist", "test", data_dir=tmp_path,
                  verify=False)
    assert str(path) in msg
    path.write_bytes(_npz_bytes(5))                     # a valid file is read (cache keyed
    os.utime(path, ns=(1, 2))                           # on size and mtime)
    x = data.load_split("binarized_mnist", "test", data_dir=tmp_path, verify=False).images
    assert x.shape == (5, 28, 28, 1)


def test_truncated_gzip_gives_one_line_error_naming_the_file(jvae_data_dir, tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    src = jvae_data_dir / "mnist"
    (d / TEST_FILES[0]).write_bytes((src / TEST_FILES[0]).read_bytes()[:5000])
    shutil.copyfile(src / TEST_FILES[1], d / TEST_FILES[1])
    msg = _raises("not a valid gzip file, truncated or corrupt", data.load_split, "mnist",
                  "test", data_dir=tmp_path, verify=False)
    assert str(d / TEST_FILES[0]) in msg and "EOFError" in msg
    garbled = bytearray((src / TEST_FILES[0]).read_bytes())
    garbled[3000:3100] = bytes(100)
    (d / TEST_FILES[0]).write_bytes(bytes(garbled))
    _raises(r"gzip.*(zlib|BadGzip|CRC|Error)", data.load_split, "mnist", "test",
            data_dir=tmp_path, verify=False)
    assert hashlib.sha256(bytes(garbled)).hexdigest() != dl.SHA256["mnist"][TEST_FILES[0]]
