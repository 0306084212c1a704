"""CIFAR-10's readers (official batches, their archive, Homework 2's pickle), its download
fallback, the value ranges per likelihood, ``dataset.centre``, the cifar10_beta_vae config's
ranges, and an end-to-end CLI run of that config on mock data.

Every file is written here (small, random); downloads go only to an HTTP server on
127.0.0.1 started here.
"""

import functools
import hashlib
import http.server
import importlib
import io
import os
import pathlib
import pickle
import tarfile
import threading

import numpy as np
import pytest

from jvae.runs import builders

from jvae.runs import schema
from jvae.cli import train
from jvae import data as jdata
from jvae.runs.overrides import apply_override, load_config_file
from jvae.data import cifar

dl = importlib.import_module("jvae.data.fetch")
ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "configs" / "cifar10_beta_vae.py"
BATCHES = cifar.TRAIN_BATCHES + (cifar.TEST_BATCH,)
PER_BATCH = 6


def _batch(seed, n=PER_BATCH):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"mock", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"mock.png"] * n}


def _reference(batches):
    """Images [N, 32, 32, 3] by explicit indexing: pixel (r, c) of channel k is
    data[1024 k + 32 r + c] (the CIFAR page's layout)."""
    data = np.concatenate([b[b"data"] for b in batches])
    r, c, k = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    return data[:, 1024 * k + 32 * r + c].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def batches():
    return {name: _batch(i) for i, name in enumerate(BATCHES)}


@pytest.fixture
def batch_dir(tmp_path, batches):
    folder = tmp_path / "data" / "cifar10" / cifar.BATCH_DIR
    folder.mkdir(parents=True)
    for name, b in batches.items():
        (folder / name).write_bytes(pickle.dumps(b, protocol=2))    # as the official files
    return tmp_path / "data"


def _archive_bytes(batches):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, b in batches.items():
            raw = pickle.dumps(b, protocol=2)
            info = tarfile.TarInfo(f"{cifar.BATCH_DIR}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


@pytest.fixture
def archive(batches, monkeypatch):
    """The mock archive's bytes, with the pinned archive MD5 patched to match them."""
    raw = _archive_bytes(batches)
    md5 = hashlib.md5(raw).hexdigest()
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", md5)
    monkeypatch.setitem(dl.MD5, "cifar10", {cifar.ARCHIVE: md5})
    return raw


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JVAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("JVAE_DATA_DIR", raising=False)


# ------------------------------------------------------------------------------- readers


def test_batches_layout_splits_and_labels(batch_dir, batches, monkeypatch):
    monkeypatch.setattr(cifar, "BATCH_MD5", {n: hashlib.md5(pickle.dumps(b, protocol=2))
                                             .hexdigest() for n, b in batches.items()})
    train_full = jdata.load_split("cifar10", "train_full", data_dir=batch_dir)
    train_bs = [batches[n] for n in cifar.TRAIN_BATCHES]
    np.testing.assert_array_equal(train_full.images, _reference(train_bs))
    np.testing.assert_array_equal(train_full.labels,
                                  np.concatenate([b[b"labels"] for b in train_bs]))
    assert train_full.images.dtype == np.float32 and train_full.labels.dtype == np.int32
    assert train_full.images.shape == (5 * PER_BATCH, 32, 32, 3)
    assert not train_full.images.flags.writeable
    test = jdata.load_split("cifar10", "test", data_dir=batch_dir)
    np.testing.assert_array_equal(test.images, _reference([batches[cifar.TEST_BATCH]]))
    tr = jdata.load_split("cifar10", "train", data_dir=batch_dir, validation_size=4)
    va = jdata.load_split("cifar10", "validation", data_dir=batch_dir, validation_size=4)
    np.testing.assert_array_equal(np.concatenate([tr.images, va.images]), train_full.images)
    assert len(va.images) == 4
    with pytest.raises(ValueError, match="validation_size 30 must be smaller than the 30"):
        jdata.load_split("cifar10", "train", data_dir=batch_dir, validation_size=30)
    x = jdata.load_dataset("cifar10", "test", data_dir=batch_dir, resize=16, limit=3)
    assert x.shape == (3, 16, 16, 3)


def test_batch_with_wrong_md5_is_refused(batch_dir):
    with pytest.raises(jdata.ChecksumError) as e:       # the real pinned MD5s: mock files fail
        jdata.load_split("cifar10", "test", data_dir=batch_dir)
    msg = str(e.value)
    assert "test_batch" in msg and "MD5" in msg and cifar.BATCH_MD5["test_batch"] in msg
    assert "verify=False" in msg and "\n" not in msg


def test_archive_read_in_place_equals_the_batches(tmp_path, archive, batch_dir):
    folder = tmp_path / "arch" / "cifar10"
    folder.mkdir(parents=True)
    (folder / cifar.ARCHIVE).write_bytes(archive)
    a = jdata.load_split("cifar10", "train_full", data_dir=tmp_path / "arch")
    b = jdata.load_split("cifar10", "train_full", data_dir=batch_dir, verify=False)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    (folder / cifar.ARCHIVE).write_bytes(archive[:-1] + bytes([archive[-1] ^ 1]))
    with pytest.raises(jdata.ChecksumError, match="MD5 .* does not match the published"):
        jdata.load_split("cifar10", "test", data_dir=tmp_path / "arch")
    (folder / cifar.ARCHIVE).write_bytes(archive[: len(archive) // 2])       # truncated
    with pytest.raises(ValueError, match="truncated or corrupt"):
        jdata.load_split("cifar10", "test", data_dir=tmp_path / "arch", verify=False)


def test_homework_pickle(tmp_path):
    rng = np.random.default_rng(3)
    train_u8 = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    test_u8 = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / cifar.PICKLE).write_bytes(pickle.dumps({"train": train_u8, "test": test_u8}))
    full = jdata.load_split("cifar10", "train_full", data_dir=tmp_path)
    np.testing.assert_array_equal(full.images, train_u8.astype(np.float32) / 255)
    assert full.labels is None
    test = jdata.load_split("cifar10", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(test.images, test_u8.astype(np.float32) / 255)
    val = jdata.load_split("cifar10", "validation", data_dir=tmp_path, validation_size=3)
    np.testing.assert_array_equal(val.images, full.images[-3:])


@pytest.mark.parametrize("dtype, scale", [
    (np.uint8, 255), (np.int16, 255), (np.int64, 255), (np.float64, 255), (np.float32, 255),
    (np.float32, 1), (np.float64, 1), (np.float16, 1)])
def test_homework_pickle_of_any_stored_dtype_is_read_by_its_values(tmp_path, dtype, scale):
    """Integers and floats in 0..255 are divided by 255; floats already in [0, 1] are kept
    (not divided again: a maximum of 1/255 would be silently wrong)."""
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (6, 32, 32, 3)).astype(np.float64) / 255   # the truth
    stored = (np.round(grey * 255) if scale == 255 else grey).astype(dtype)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / cifar.PICKLE).write_bytes(pickle.dumps({"train": stored, "test": stored[:2]}))
    for split, n in (("train_full", 6), ("test", 2)):
        images = jdata.load_split("cifar10", split, data_dir=tmp_path).images
        assert images.dtype == np.float32 and images.shape == (n, 32, 32, 3)
        np.testing.assert_allclose(images, grey[:n], atol=1e-3 if dtype == np.float16 else 1e-6)
        assert images.max() > 0.9


@pytest.mark.parametrize("train, test, match", [
    (np.full((2, 32, 32, 3), np.nan), np.zeros((2, 32, 32, 3)), "NaN/Inf values"),
    (np.full((2, 32, 32, 3), -1.0), np.zeros((2, 32, 32, 3)), "min -1"),
    (np.full((2, 32, 32, 3), 0.5), np.full((2, 32, 32, 3), 200.0), "different scales"),
    (np.full((2, 32, 32, 3), 1 + 1j), np.zeros((2, 32, 32, 3)), "dtype complex128"),
    (np.full((2, 32, 32, 3), "a"), np.zeros((2, 32, 32, 3)), "dtype <U1"),
])
def test_homework_pickle_with_unusable_values_is_refused(tmp_path, train, test, match):
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / cifar.PICKLE).write_bytes(pickle.dumps({"train": train,
                                                                   "test": test}))
    with pytest.raises(ValueError, match=match) as info:
        jdata.load_split("cifar10", "test", data_dir=tmp_path)
    assert str(tmp_path / "cifar10" / cifar.PICKLE) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content, match", [
    (pickle.dumps(_batch(0))[:-40], "truncated or corrupt"),
    (pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}),
     r"expected data uint8 \[N, 3072\]"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
     "expected 2 integer labels"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}),
     "labels outside 0..9"),
    (pickle.dumps({b"images": 1}), r"without the keys \['data', 'labels'\]"),
    (pickle.dumps(print), "refusing to load builtins.print"),   # no code runs on load
])
def test_bad_batch_files(tmp_path, batches, content, match):
    folder = tmp_path / "cifar10" / cifar.BATCH_DIR
    folder.mkdir(parents=True)
    for name, b in batches.items():
        (folder / name).write_bytes(pickle.dumps(b, protocol=2))
    (folder / cifar.TEST_BATCH).write_bytes(content)
    with pytest.raises(ValueError, match=match) as e:
        jdata.load_split("cifar10", "test", data_dir=tmp_path, verify=False)
    assert str(folder / cifar.TEST_BATCH) in str(e.value)


@pytest.mark.parametrize("content, match", [
    (pickle.dumps({"train": np.zeros((2, 3, 32, 32), np.uint8),
                   "test": np.zeros((2, 3, 32, 32), np.uint8)}), "channels last"),
    (pickle.dumps({"train": np.zeros((2, 32, 32, 3))}), r"without the keys \['test'\]"),
    (pickle.dumps({"train": np.full((2, 32, 32, 3), 300.0),
                   "test": np.zeros((2, 32, 32, 3))}), "must lie in 0..255"),
    (pickle.dumps({"train": np.zeros((2, 32, 32, 3), np.uint8),
                   "test": np.zeros((2, 16, 16, 3), np.uint8)}), "differ in shape"),
    (pickle.dumps([1, 2]), "not a dict"),
    (b"\x80\x04garbage", "truncated or corrupt"),
])
def test_bad_homework_pickles(tmp_path, content, match):
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / cifar.PICKLE).write_bytes(content)
    with pytest.raises(ValueError, match=match):
        jdata.load_split("cifar10", "train_full", data_dir=tmp_path)


def test_missing_files_name_files_places_and_remedies(tmp_path):
    with pytest.raises(jdata.DataNotFoundError) as e:
        jdata.load_split("cifar10", "test", data_dir=tmp_path / "nowhere")
    msg = str(e.value)
    for part in ("test_batch", cifar.ARCHIVE, cifar.PICKLE, str(tmp_path / "nowhere" / "cifar10"),
                 str(tmp_path / "cache" / "cifar10"), "download=True", "tfds:cifar10",
                 "https://www.cs.toronto.edu/~kriz/cifar.html"):
        assert part in msg, part


# ----------------------------------------------------------------------------- download


class _Server:
    """Static files on 127.0.0.1, counting GET requests."""

    def __init__(self, root: pathlib.Path):
        self.requests = 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_fallback_fetches_the_archive_once(tmp_path, archive, monkeypatch):
    good, bad = tmp_path / "www_good", tmp_path / "www_bad"
    good.mkdir()
    bad.mkdir()
    (good / cifar.ARCHIVE).write_bytes(archive)
    (bad / cifar.ARCHIVE).write_bytes(archive[:-10])              # wrong MD5: skipped
    servers = [_Server(bad), _Server(good)]
    try:
        monkeypatch.setitem(dl.MIRRORS, "cifar10", tuple(s.url for s in servers))
        with pytest.raises(jdata.DataNotFoundError):               # no download unless asked
            jdata.load_split("cifar10", "test", data_dir=tmp_path / "empty")
        test = jdata.load_split("cifar10", "test", data_dir=tmp_path / "empty", download=True)
        assert test.images.shape == (PER_BATCH, 32, 32, 3)
        cached = tmp_path / "cache" / "cifar10" / cifar.ARCHIVE
        assert cached.read_bytes() == archive
        assert sorted(os.listdir(cached.parent)) == [cifar.ARCHIVE]        # no partial files
        jdata.load_split("cifar10", "train_full", data_dir=tmp_path / "empty", download=True)
        assert [s.requests for s in servers] == [1, 1]             # the cache is used after
    finally:
        for s in servers:
            s.close()


# ------------------------------------------------- value ranges, centring and the config


def test_centre_and_likelihood_ranges(tmp_path, batch_dir):
    config = load_config_file(str(CONFIG))
    config.dataset.data_dir = str(batch_dir)
    config.dataset.verify_checksums = False
    schema.validate_config(config)
    d = builders.load_data(config)
    raw = jdata.load_split("cifar10", "test", data_dir=batch_dir, verify=False).images
    np.testing.assert_allclose(d.eval, raw * 2 - 1, atol=1e-7)
    np.testing.assert_allclose(jdata.uncentre(d.eval), raw, atol=1e-7)
    assert d.train.min() < 0 and d.train.shape == (5 * PER_BATCH, 32, 32, 3)
    model = builders.build_model(config, d.train.shape[1:])
    jdata.check_data(d.train, model=model)                     # Gaussian: any finite value
    bern = config.copy_and_resolve_references()
    bern.model.likelihood = "bernoulli"
    with pytest.raises(jdata.InvalidDataError, match=r"must lie in \[0, 1\]"):
        jdata.check_data(d.train, model=builders.build_model(bern, d.train.shape[1:]))
    with pytest.raises(ValueError, match="outside the support .* of the 'bernoulli'"):
        schema.validate_config(bern)


@pytest.mark.parametrize("override, match", [
    ("latent_dim=64", r"config.latent_dim = 64 is outside this config's range \[128, 1024\]"),
    ("objective.beta=20.0", r"config.objective.beta = 20.0 is outside .* \[0.1, 10\]"),
    ("sweep.beta=(1.0, 0.05)", r"config.sweep.beta\[1\] = 0.05 is outside"),
    ("ranges.beta=(5.0, 1.0)", "low <= high"),
])
def test_homework_ranges_are_checked(override, match):
    config = load_config_file(str(CONFIG))
    schema.validate_config(config)
    apply_override(config, *override.split("=", 1))
    with pytest.raises(ValueError, match=match):
        schema.validate_config(config)


def test_ranges_can_be_lifted():
    config = load_config_file(str(CONFIG))
    apply_override(config, "objective.beta", "20.0")
    apply_override(config, "ranges.beta", "()")
    schema.validate_config(config)


def test_cli_run_of_the_config_on_mock_cifar(tmp_path):
    """The real config (smallest allowed latent size) for one epoch of 2 steps on 16 mock
    images in the homework's pickle format; every image figure is written."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    (folder / cifar.PICKLE).write_bytes(pickle.dumps({
        "train": rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
        "test": rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)}))
    workdir = tmp_path / "run"
    rc = train.main([f"--config={CONFIG}", f"--workdir={workdir}", "--noprogress",
                     f"--config.dataset.data_dir={tmp_path / 'data'}", "--config.num_epochs=1",
                     "--config.batch_size=8", "--config.latent_dim=128",
                     "--config.eval.tsne_points=0", "--config.eval.log_steps=False"])
    assert rc == 0
    for name in ("reconstructions.png", "samples.png", "interpolations.png", "curves.png"):
        assert (workdir / name).stat().st_size > 1000, name
    from PIL import Image
    assert Image.open(workdir / "interpolations.png").mode in ("RGB", "RGBA")
