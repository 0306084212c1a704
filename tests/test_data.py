"""Tests for jvae.data and jvae.data.fetch.

Readers run on the real files in $JVAE_DATA_DIR (skipped when it is not set). Downloads run
only against HTTP servers on 127.0.0.1 started here.
"""

import collections
import functools
import gzip
import hashlib
import http.server
import importlib
import os
import pathlib
import socket
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvae import data

dl = importlib.import_module("jvae.data.fetch")  # the module, even if jvae.data.fetch is rebound

IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
COUNTS = {  # split -> (mnist / fashion_mnist, binarized_mnist)
    "train": (50000, 50000), "validation": (10000, 10000),
    "test": (10000, 10000), "train_full": (60000, 60000),
}


@pytest.fixture(scope="session")
def data_dir(jvae_data_dir):
    """The real data folder (conftest's fixture skips when $JVAE_DATA_DIR is absent)."""
    return jvae_data_dir


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty download cache; nothing is fetched from the internet."""
    monkeypatch.setenv("JVAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(dl, "MIRRORS", {k: () for k in dl.MIRRORS})


# ------------------------------------------------------------------------- real data


@pytest.mark.parametrize("name", data.DATASETS)
def test_every_split_shape_range_and_labels(data_dir, name):
    for split in data.SPLITS:
        images, labels = data.load_split(name, split, data_dir=data_dir)
        n = COUNTS[split][name == "binarized_mnist"]
        assert images.shape == (n, 28, 28, 1) and images.dtype == np.float32
        assert images.min() == 0.0 and images.max() == 1.0
        if name == "binarized_mnist":
            assert labels is None
        else:
            assert labels.shape == (n,) and labels.dtype == np.int32
            assert set(np.unique(labels)) == set(range(10))


def test_mnist_statistics_and_split_layout(data_dir):
    full = data.load_split("mnist", "train_full", data_dir=data_dir)
    assert abs(full.images.mean() - 0.1307) < 5e-4
    np.testing.assert_array_equal(
        np.bincount(full.labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    assert abs(data.load_split("mnist", "test", data_dir=data_dir).images.mean() - 0.1325) < 5e-4
    train = data.load_split("mnist", "train", data_dir=data_dir, validation_size=2000)
    valid = data.load_split("mnist", "validation", data_dir=data_dir, validation_size=2000)
    np.testing.assert_array_equal(train.images, full.images[:58000])
    np.testing.assert_array_equal(valid.labels, full.labels[58000:])
    assert len(data.load_split("mnist", "train", data_dir=data_dir, validation_size=0)[0]) == 60000
    with pytest.raises(ValueError, match="validation_size=0"):
        data.load_split("mnist", "validation", data_dir=data_dir, validation_size=0)


def test_binarized_rows_are_bits_and_train_full_concatenates(data_dir):
    x = data.load_split("binarized_mnist", "test", data_dir=data_dir).images
    assert set(np.unique(x[0])) == {0.0, 1.0}
    assert set(np.unique(x[:100])) <= {0.0, 1.0}
    full = data.load_split("binarized_mnist", "train_full", data_dir=data_dir).images
    valid = data.load_split("binarized_mnist", "validation", data_dir=data_dir).images
    np.testing.assert_array_equal(full[50000:], valid)


def test_cache_is_reused_and_cannot_be_corrupted(data_dir):
    a = data.load_split("mnist", "test", data_dir=data_dir)
    b = data.load_split("mnist", "test", data_dir=data_dir)
    assert np.shares_memory(a.images, b.images)  # decoded once
    with pytest.raises(ValueError, match="read-only"):
        a.images[0, 0, 0, 0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        a.labels[0] = 3
    assert data.load_split("mnist", "test", data_dir=data_dir).images.max() == 1.0


def test_load_dataset_limit_resize_binarize(data_dir):
    x = data.load_dataset("fashion_mnist", "test", data_dir=data_dir, limit=64, resize=64,
                          binarize="static", threshold=0.3)
    assert x.shape == (64, 64, 64, 1) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}
    grey = data.load_dataset("mnist", "validation", data_dir=data_dir, limit=7,
                             binarize="dynamic")
    np.testing.assert_array_equal(grey, data.load_split("mnist", "validation",
                                                        data_dir=data_dir).images[:7])


def test_resize_to_64_keeps_range_and_mean(data_dir):
    x = data.load_dataset("mnist", "test", data_dir=data_dir, limit=200)
    y = data.resize_images(x, 64)
    assert y.shape == (200, 64, 64, 1) and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 1.0
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), rtol=0.02)


# ---------------------------------------------------------------- transformations


def test_binarize_static():
    x = np.array([[0.0, 0.2, 0.5], [0.51, 0.9, 1.0]])
    out = data.binarize_static(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(data.binarize_static(x, threshold=0.1), [[0, 1, 1], [1, 1, 1]])


def test_binarize_dynamic_reproducible_jittable_and_unbiased():
    p = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    x = np.broadcast_to(p, (4999, 11))  # odd size: XLA:CPU compiles threefry faster
    k1, k2 = jax.random.split(jax.random.key(0))
    a, b = data.binarize_dynamic(k1, x), data.binarize_dynamic(k1, x)
    assert a.dtype == np.float32 and a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, data.binarize_dynamic(k2, x))
    assert set(np.unique(np.asarray(a))) == {0.0, 1.0}
    # mean within 5 standard errors of p (exact at p = 0 and p = 1)
    se = np.sqrt(p * (1 - p) / x.shape[0])
    assert np.all(np.abs(np.asarray(a).mean(0) - p) <= 5 * se + 1e-7)

    @jax.jit
    def epochs(key, x):  # as in training: a fresh draw per step of a jitted lax.scan
        return jax.lax.scan(lambda c, k: (c, data.binarize_dynamic(k, x)), 0, key)[1]

    draws = epochs(jnp.stack([k1, k2]), x)
    np.testing.assert_array_equal(draws[0], a)


def test_resize_matches_pil_bilinear():
    image_mod = pytest.importorskip("PIL.Image")
    x = np.random.RandomState(0).rand(3, 28, 28, 1).astype(np.float32)
    for size in (64, 11):  # up- and (antialiased) downsampling
        y = data.resize_images(x, size)
        ref = np.stack([np.asarray(image_mod.fromarray(im[..., 0], "F").resize(
            (size, size), image_mod.BILINEAR)) for im in x])[..., None]
        np.testing.assert_allclose(y, ref, atol=1e-5)


def test_resize_chunks_agree(monkeypatch):
    x = np.random.RandomState(1).rand(10, 28, 28, 2).astype(np.float32)
    whole = data.resize_images(x, 32)
    monkeypatch.setattr(data.transforms, "_RESIZE_CHUNK", 3)
    np.testing.assert_allclose(data.resize_images(x, 32), whole, atol=1e-6)
    assert whole.shape == (10, 32, 32, 2)


# ------------------------------------------------------------------- synthetic data


def _generate_2d_data(count, mode="univariate"):  # the notebook's reference, verbatim
    np.random.seed(42)
    mean = [[2.0, 3.0]]
    sigma = [[3.0, 1.0]]
    rotate = ([[1.0, 0.0], [0.0, 1.0]] if mode == "univariate"
              else [[np.sqrt(2) / 2, np.sqrt(2) / 2], [-np.sqrt(2) / 2, np.sqrt(2) / 2]])
    data_ = mean + (np.random.randn(count, 2) * sigma).dot(rotate)
    data_ = data_.astype("float32")
    split = int(0.7 * count)
    return data_[:split], data_[split:]


@pytest.mark.parametrize("mode", ["univariate", "multivariate"])
def test_gaussian2d_equals_notebook(mode):
    state = np.random.get_state()
    try:
        ref_train, ref_test = _generate_2d_data(15000, mode)
        np.random.seed(123)
        before = np.random.get_state()[1].copy()
        train, test = data.gaussian2d(mode)
        np.testing.assert_array_equal(np.random.get_state()[1], before)  # no global seeding
    finally:
        np.random.set_state(state)
    assert train.shape == (10500, 2) and test.shape == (4500, 2) and train.dtype == np.float32
    np.testing.assert_array_equal(train, ref_train)
    np.testing.assert_array_equal(test, ref_test)
    full = np.concatenate([train, test])
    np.testing.assert_allclose(full.mean(0), [2.0, 3.0], atol=0.1)
    # 45 degree rotation of stds (3, 1): both variances (9 + 1) / 2 = 5, covariance 4
    std = [3.0, 1.0] if mode == "univariate" else [np.sqrt(5.0)] * 2
    corr = 0.0 if mode == "univariate" else 0.8
    np.testing.assert_allclose(full.std(0), std, rtol=0.03)
    assert abs(np.corrcoef(full.T)[0, 1] - corr) < 0.03


def test_gaussian2d_bad_mode():
    with pytest.raises(ValueError, match="univariate"):
        data.gaussian2d("bivariate")


# ------------------------------------------------------------------------- errors


def test_missing_files_error_names_files_dirs_and_remedies(tmp_path):
    with pytest.raises(data.DataNotFoundError) as e:
        data.load_split("mnist", "test", data_dir=tmp_path / "nowhere")
    msg = str(e.value)
    for s in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "JVAE_DATA_DIR",
              "download=True", "data_dir", str(tmp_path / "nowhere" / "mnist"),
              str(tmp_path / "cache" / "mnist")):
        assert s in msg
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(data.DataNotFoundError, match="by hand") as e:
        data.load_split("binarized_mnist", "train_full", data_dir=tmp_path, download=True)
    assert "binarized_mnist_valid.npz" in str(e.value)


def test_find_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JVAE_DATA_DIR", str(tmp_path))
    assert data.find_data_dir() == tmp_path
    assert data.find_data_dir("/x/y") == pathlib.Path("/x/y")
    monkeypatch.delenv("JVAE_DATA_DIR")
    assert data.find_data_dir() is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="cifar100"), "mnist, fashion_mnist, binarized_mnist"),
    (dict(split="valid"), "train, validation, test, train_full"),
    (dict(binarize="stochastic"), "none, static, dynamic"),
    (dict(limit=0), "limit"),
    (dict(limit=-3), "limit"),
    (dict(resize=0), "resize"),
    (dict(resize=2.5), "resize"),
    (dict(threshold=1.0), "threshold"),
    (dict(validation_size=60000), "validation_size"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    args = dict(name="mnist", split="train", data_dir=tmp_path) | kwargs
    with pytest.raises(ValueError, match=match):
        data.load_dataset(args.pop("name"), args.pop("split"), **args)


def test_validate_images():
    x = np.full((2, 4, 4, 1), 0.5, np.float32)
    data.validate_images(x, check_range=True)
    bad = x.copy()
    bad[1, 2, 3, 0], bad[1, 3, 0, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"batch: 2 non-finite .*\(1, 2, 3, 0\)"):
        data.validate_images(bad, "batch")
    with pytest.raises(ValueError, match="ndim 4"):
        data.validate_images(x[0])
    with pytest.raises(ValueError, match="numeric"):
        data.validate_images(np.array([["a"]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.validate_images(x * 3, check_range=True)
    data.validate_images(x * 3)  # range only checked on request


def _idx_bytes(kind, n, magic=None, rows=28, payload=None):
    dims = [n, rows, 28] if kind == "images" else [n]
    magic = magic or (2051 if kind == "images" else 2049)
    body = payload if payload is not None else (
        np.arange(int(np.prod(dims))) % (256 if kind == "images" else 10)).astype(np.uint8)
    return np.array([magic] + dims, ">u4").tobytes() + np.asarray(body, np.uint8).tobytes()


@pytest.mark.parametrize("images, match", [
    (_idx_bytes("images", 3, magic=2049), "magic"),
    (_idx_bytes("images", 3, rows=27), "28x28"),
    (_idx_bytes("images", 3)[:-100], "truncated"),
    (b"\x00\x00\x08", "header"),
])
def test_corrupt_idx_raises_value_error(tmp_path, images, match):
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes("labels", 3)))
    with pytest.raises(ValueError, match=match):  # fake contents: skip the SHA-256 check
        data.load_split("mnist", "test", data_dir=tmp_path, verify=False)
    with pytest.raises(data.ChecksumError, match="SHA-256"):  # which comes first otherwise
        data.load_split("mnist", "test", data_dir=tmp_path)


def test_not_gzip_raises_value_error(tmp_path):
    d = tmp_path / "fashion_mnist"
    d.mkdir()
    for f in IDX_FILES[:2]:
        (d / f).write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="gzip"):
        data.load_split("fashion_mnist", "train", data_dir=tmp_path, verify=False)


# ----------------------------------------------------------------------- downloads


class _Server:
    """A static file server on 127.0.0.1 that counts GET requests per path."""

    def __init__(self, root):
        self.root, self.requests = pathlib.Path(root), collections.Counter()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests[self.path.lstrip("/")] += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(self.root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(files):
        root = tmp_path / f"www{len(servers)}"
        root.mkdir()
        for fname, content in files.items():
            (root / fname).write_bytes(content)
        servers.append(_Server(root))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def fake_mnist(monkeypatch):
    """Small valid IDX files, with the pinned SHA-256 table patched to match them."""
    n = {"train": 60, "t10k": 10}
    files = {f: gzip.compress(_idx_bytes("images" if "images" in f else "labels",
                                         n[f.split("-")[0]])) for f in IDX_FILES}
    monkeypatch.setitem(dl.SHA256, "mnist",
                        {f: hashlib.sha256(b).hexdigest() for f, b in files.items()})
    return files


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_download_real_files_verified_and_not_refetched(data_dir, serve, tmp_path):
    server = serve({f: (data_dir / "mnist" / f).read_bytes() for f in IDX_FILES})
    folder = data.download("mnist", mirrors=[server.url])
    assert folder == tmp_path / "cache" / "mnist"
    for f in IDX_FILES:
        assert (folder / f).read_bytes() == (data_dir / "mnist" / f).read_bytes()
    assert sorted(os.listdir(folder)) == sorted(IDX_FILES)  # no temp files left
    assert sum(server.requests.values()) == 4
    data.download("mnist", mirrors=[server.url])
    assert sum(server.requests.values()) == 4  # cached files with good checksums are kept
    x = data.load_split("mnist", "test", data_dir=tmp_path / "empty").images  # found in cache
    assert x.shape == (10000, 28, 28, 1)


def test_download_skips_corrupt_and_unreachable_mirrors(fake_mnist, serve, tmp_path):
    corrupt = serve({f: b[:-1] + bytes([b[-1] ^ 1]) for f, b in fake_mnist.items()})
    good = serve(fake_mnist)
    folder = data.download("mnist", mirrors=[_closed_port_url(), corrupt.url, good.url],
                           cache_dir=tmp_path / "c", timeout=5)
    for f, b in fake_mnist.items():
        assert (folder / f).read_bytes() == b
    assert sorted(os.listdir(folder)) == sorted(IDX_FILES)
    assert sum(corrupt.requests.values()) == 4 and sum(good.requests.values()) == 4


def test_download_all_mirrors_bad(fake_mnist, serve, tmp_path):
    corrupt = serve({f: b"garbage" for f in fake_mnist})
    closed = _closed_port_url()
    with pytest.raises(data.DownloadError) as e:
        data.download("mnist", mirrors=[corrupt.url, closed], timeout=5)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "checksum mismatch" in msg
    assert corrupt.url in msg and closed in msg and "network error" in msg
    assert os.listdir(tmp_path / "cache" / "mnist") == []  # temp file removed
    with pytest.raises(ValueError, match="by hand"):
        data.download("binarized_mnist")


def test_load_split_download_true_fetches_then_uses_cache(fake_mnist, serve, tmp_path,
                                                          monkeypatch):
    server = serve(fake_mnist)
    monkeypatch.setitem(dl.MIRRORS, "mnist", (server.url,))
    with pytest.raises(data.DataNotFoundError):  # no download without asking
        data.load_split("mnist", "train", data_dir=tmp_path, validation_size=20)
    train = data.load_split("mnist", "train", data_dir=tmp_path, download=True,
                            validation_size=20)
    assert train.images.shape == (40, 28, 28, 1) and train.labels.shape == (40,)
    np.testing.assert_array_equal(train.labels, np.arange(40) % 10)
    data.load_split("mnist", "test", data_dir=tmp_path, download=True)
    assert sum(server.requests.values()) == 4


def test_download_true_replaces_a_data_dir_file_that_fails_verification(fake_mnist, serve,
                                                                       tmp_path, monkeypatch):
    server = serve(fake_mnist)
    monkeypatch.setitem(dl.MIRRORS, "mnist", (server.url,))
    d = tmp_path / "data" / "mnist"
    d.mkdir(parents=True)
    for f, b in fake_mnist.items():
        (d / f).write_bytes(b)
    (d / IDX_FILES[2]).write_bytes(fake_mnist[IDX_FILES[0]])   # train images as t10k images
    with pytest.raises(data.ChecksumError, match="mnist/train-images-idx3-ubyte.gz, not"):
        data.load_split("mnist", "test", data_dir=tmp_path / "data")
    with pytest.warns(UserWarning, match="verified download"):
        test = data.load_split("mnist", "test", data_dir=tmp_path / "data", download=True)
    assert test.images.shape == (10, 28, 28, 1)
    assert (tmp_path / "cache" / "mnist" / IDX_FILES[2]).read_bytes() == fake_mnist[IDX_FILES[2]]
