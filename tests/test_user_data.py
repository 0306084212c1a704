"""Your own data (jvae/data/user.py, folder.py): arrays, npy, npz and image folders read with
the built-in readers' conventions, splits carved by size and seed, a separate test file, the
run's fallback to the carved split, and one-line errors naming the file. Tiny files in
tmp_path keep it fast."""

from __future__ import annotations

import gzip
import pathlib

import numpy as np
import pytest
from PIL import Image

import jvae
from jvae.data import DataNotFoundError, InvalidDataError, load_dataset, load_split
from jvae.data.idx import read_idx
from jvae.runs import default_config, load_data, validate_config
from jvae.runs.outputs import evaluated_split, trained_split


def _pixels(n=12, h=6, w=5, c=None, seed=0):
    shape = (n, h, w) if c is None else (n, h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _folder(root: pathlib.Path, classes=("b", "a"), per=4, size=(6, 5), mode="L", seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per):
            shape = size if mode == "L" else (*size, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                root / name / f"{i}.png")
    return root


# ----------------------------------------------------------------------------- values, shapes


def test_uint8_pixels_are_scaled_exactly_as_the_builtin_mnist_reader(tmp_path):
    x = _pixels(3, 28, 28)
    idx = tmp_path / "train-images-idx3-ubyte.gz"     # the built-in IDX format of MNIST
    header = np.array([2051, 3, 28, 28], ">u4").tobytes()
    idx.write_bytes(gzip.compress(header + x.tobytes()))
    np.save(tmp_path / "x.npy", x)
    ours = jvae.NpySource(tmp_path / "x.npy").read()
    assert ours.images.dtype == np.float32 and ours.images.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(ours.images, read_idx(idx, kind="images"))
    assert not ours.images.flags.writeable and ours.labels is None


@pytest.mark.parametrize("shape, want", [((4, 6, 5), (4, 6, 5, 1)), ((4, 6, 5, 3), (4, 6, 5, 3)),
                                         ((4, 7), (4, 7)), ((4, 6, 5, 2), (4, 6, 5, 2))])
def test_any_height_width_channels_and_vectors(shape, want):
    x = np.random.default_rng(0).random(shape)             # float64 in, float32 out
    got = jvae.ArraySource(x).read().images
    assert got.shape == want and got.dtype == np.float32
    np.testing.assert_array_equal(got.reshape(shape), x.astype(np.float32))


def test_bad_arrays_get_one_line_errors_naming_the_file(tmp_path):
    for name, x, match in [("flat.npy", np.zeros(5, np.float32), r"flat.npy: expected .*got shape \(5,\)"),
                           ("nan.npy", np.array([[0.0, np.nan]], np.float32), r"nan.npy: 1 non-finite"),
                           ("ints.npy", np.arange(6, dtype=np.int64).reshape(2, 3), r"ints.npy: integer dtype int64"),
                           ("empty.npy", np.zeros((0, 3), np.float32), r"empty.npy: empty array")]:
        np.save(tmp_path / name, x)
        with pytest.raises(InvalidDataError, match=match) as e:
            jvae.NpySource(tmp_path / name).read()
        assert "\n" not in str(e.value)
    with pytest.raises(InvalidDataError, match=r"labels must be integers \[N\] = \[2\]"):
        jvae.ArraySource(np.zeros((2, 3), np.float32), labels=[0, 1, 2]).read()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"npy:.*nope.npy: no such file \(looked for /"):
        load_split(f"npy:{tmp_path / 'nope.npy'}", "train_full")
    with pytest.raises(DataNotFoundError, match=r"folder:.*nothere: no such folder"):
        jvae.FolderSource(tmp_path / "nothere").read()
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=r"bad.npy: not a valid .npy file, truncated or corrupt"):
        jvae.NpySource(tmp_path / "bad.npy").read()
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"bad.npz: not a valid .npz file"):
        jvae.NpzSource(tmp_path / "bad.npz").read()
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"a.npz: an .npz archive, not a .npy array; use npz:"):
        jvae.NpySource(tmp_path / "a.npz").read()


# ----------------------------------------------------------------------------- npz keys


def test_npz_keys_labels_and_suggestions(tmp_path):
    x, y = _pixels(5), np.arange(5)
    np.savez(tmp_path / "one.npz", whatever=x)
    np.testing.assert_array_equal(jvae.NpzSource(tmp_path / "one.npz").read().images[..., 0],
                                  x / np.float32(255))
    np.savez(tmp_path / "xy.npz", images=x, labels=y, other=np.zeros(3))
    got = jvae.NpzSource(tmp_path / "xy.npz").read()        # "images" and "labels" found
    np.testing.assert_array_equal(got.labels, y)
    assert got.labels.dtype == np.int32
    got = jvae.NpzSource(tmp_path / "xy.npz", key="images", labels_key="other")
    with pytest.raises(InvalidDataError, match="labels must be integers"):
        got.read()                                           # float labels of length 3
    with pytest.raises(ValueError, match=r"xy.npz: no array 'imagse' \(key\); it holds "
                                         r"\['images', 'labels', 'other'\]; did you mean 'images'"):
        jvae.NpzSource(tmp_path / "xy.npz", key="imagse").read()
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(ValueError, match=r"holds 2 arrays \['a', 'b'\] and none is called 'x' or "
                                         r"'images'; name the examples with key="):
        jvae.NpzSource(tmp_path / "two.npz").read()


# ----------------------------------------------------------------------------- folders


def test_folder_with_class_subfolders(tmp_path):
    root = _folder(tmp_path / "imgs", classes=("dog", "cat"), per=3)
    got = jvae.FolderSource(root).read()
    assert got.images.shape == (6, 6, 5, 1)
    np.testing.assert_array_equal(got.labels, [0, 0, 0, 1, 1, 1])   # cat, then dog (sorted)
    first = np.asarray(Image.open(root / "cat" / "0.png"), np.float32) / np.float32(255)
    np.testing.assert_array_equal(got.images[0, ..., 0], first)


def test_folder_jpeg_rgb_and_grey_promoted(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    Image.fromarray(_pixels(1, 6, 5, 3)[0]).save(root / "a.jpg", quality=95)
    Image.fromarray(_pixels(1, 6, 5)[0]).save(root / "b.png")
    got = jvae.FolderSource(root).read()
    assert got.images.shape == (2, 6, 5, 3) and got.labels is None
    np.testing.assert_array_equal(got.images[1, ..., 0], got.images[1, ..., 2])   # grey repeated


def test_folder_errors(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"folder:.*empty: empty: no images ending in .png"):
        jvae.FolderSource(tmp_path / "empty").read()
    root = _folder(tmp_path / "mixed", classes=("a",), per=2)
    Image.fromarray(_pixels(1, 9, 9)[0]).save(root / "a" / "big.png")
    with pytest.raises(ValueError, match=r"images of 2 sizes \(0.png is 6x5, big.png is 9x9\); "
                                         r"resize them .*config.dataset.resize"):
        jvae.FolderSource(root).read()
    got = jvae.FolderSource(root, resize=4).read()
    assert got.images.shape == (3, 4, 4, 1) and got.images.dtype == np.float32
    assert 0.0 <= got.images.min() and got.images.max() <= 1.0
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"broken.png: not a readable PNG/JPEG image"):
        jvae.FolderSource(root, resize=4).read()


# ----------------------------------------------------------------------------- splits


def test_validation_is_carved_by_size_and_seed(tmp_path):
    x = np.arange(20, dtype=np.float32)[:, None] / 20
    src = jvae.ArraySource(x, labels=np.arange(20))
    val = src.split("validation", validation_size=5, seed=3)
    train = src.split("train", validation_size=5, seed=3)
    assert len(val.images) == 5 and len(train.images) == 15
    assert sorted(np.r_[val.labels, train.labels]) == list(range(20))   # disjoint, complete
    assert list(train.labels) == sorted(train.labels)                    # stored order kept
    np.testing.assert_array_equal(val.images[:, 0] * 20, val.labels)     # rows move with labels
    again = load_split(src, "validation", validation_size=5, validation_seed=3)
    np.testing.assert_array_equal(again.labels, val.labels)
    other = src.split("validation", validation_size=5, seed=4)
    assert set(other.labels) != set(val.labels)
    assert len(src.split("train_full").images) == 20
    with pytest.raises(ValueError, match=r"validation_size 20 must be an int in \[0, 20\) for the "
                                         r"20 examples of arrays \(e.g. 2, a tenth"):
        src.split("train", validation_size=20)
    with pytest.raises(ValueError, match="arrays has no test data"):
        src.split("test")


def test_test_file_is_read_as_the_training_kind(tmp_path):
    np.save(tmp_path / "train.npy", _pixels(10))
    np.save(tmp_path / "test.npy", _pixels(4, seed=1))
    x = load_dataset(f"npy:{tmp_path / 'train.npy'}", "test", test=str(tmp_path / "test.npy"))
    np.testing.assert_array_equal(x[..., 0], _pixels(4, seed=1) / np.float32(255))


# ----------------------------------------------------------------------------- the run


def _config(name, **dataset):
    c = default_config()
    c.dataset.name = name
    for k, v in dataset.items():
        c.dataset[k] = v
    return c


def test_run_config_reads_a_folder_and_falls_back_to_the_carved_split(tmp_path):
    root = _folder(tmp_path / "imgs", per=5)
    c = _config(f"folder:{root}", validation_size=3, train_split="train_full",
                eval_split="test")
    validate_config(c)
    assert (evaluated_split(c), trained_split(c)) == ("validation", "train")
    with pytest.warns(UserWarning, match=r"no test file or folder \(config.dataset.test\): "
                                         r"evaluating on the 'validation' split carved"):
        data = load_data(c)
    assert data.train.shape == (7, 6, 5, 1) and data.eval.shape == (3, 6, 5, 1)
    assert data.eval_labels is not None and len(data.eval_labels) == 3
    c.dataset.test = str(_folder(tmp_path / "held", per=1))
    assert (evaluated_split(c), trained_split(c)) == ("test", "train_full")
    data = load_data(c)
    assert data.train.shape[0] == 10 and data.eval.shape[0] == 2


def test_run_config_checks_fields_and_value_ranges(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((6, 4), 200.0, np.float32))
    c = _config(f"npz:{tmp_path / 'd.npz'}", validation_size=2)
    with pytest.raises(ValueError, match=r"training data \(npz:.*d.npz\) for the bernoulli "
                                         r"likelihood: values must lie in \[0, 1\]"):
        load_data(c)
    c.model.likelihood = "gaussian"                        # any finite value
    assert load_data(c).train.shape == (4, 4)
    with pytest.raises(ValueError, match=r"config.dataset.key = 'x' would be ignored: it "
                                         r"applies to 'npz:\*' datasets"):
        validate_config(_config(f"folder:{tmp_path}", key="x"))
    with pytest.raises(ValueError, match="names no file"):
        validate_config(_config("npy:"))
