"""Datasets by name: finding, verifying and reading the files of a split, carving the
validation split, binarising and resizing as asked (see :mod:`jvae.data` for the layout)."""

from __future__ import annotations

import os
import pathlib
import warnings
from typing import NamedTuple

import numpy as np

from jvae.data import fetch as _dl
from jvae.data import cifar as _cifar
from jvae.data.checksums import ChecksumError, verify_file
from jvae.data.idx import read_idx, readonly
from jvae.data.npz import read_npz
from jvae.data.tfds_source import is_tfds_name, read_tfds
from jvae.data.user import ArraySource, as_source, is_user_name
from jvae.data.validate import (_check_choice, _check_positive)
from jvae.data.fetch import default_cache_dir
from jvae.data.transforms import binarize_static, resize_images

__all__ = ["DATASETS", "FILE_DATASETS", "SPLITS", "BINARIZE", "Split", "DataNotFoundError",
           "find_data_dir", "load_split", "load_dataset"]

DATASETS = ("mnist", "fashion_mnist", "binarized_mnist")
"""The MNIST family (the datasets of the shared data folder)."""
#: Every dataset read from files: the MNIST family and CIFAR-10. Any ``"tfds:<name>"`` is
#: read through TensorFlow Datasets instead.
FILE_DATASETS = DATASETS + ("cifar10",)
SPLITS = ("train", "validation", "test", "train_full")
BINARIZE = ("none", "static", "dynamic")

_NPZ_FILES = {"train": "binarized_mnist_train.npz", "validation": "binarized_mnist_valid.npz",
              "test": "binarized_mnist_test.npz"}


class Split(NamedTuple):
    """One split of a dataset.

    Attributes:
        images: float32 ``[N, H, W, C]`` in ``[0, 1]`` (read-only): ``[N, 28, 28, 1]`` for the
            MNIST family, ``[N, 32, 32, 3]`` for CIFAR-10.
        labels: int32 ``[N]`` class labels (read-only), or ``None`` (binarized_mnist,
            Homework 2's CIFAR-10 pickle, TFDS datasets without a ``label`` feature).
    """

    images: np.ndarray
    labels: np.ndarray | None


class DataNotFoundError(FileNotFoundError):
    """Raised when the files of a dataset cannot be found in any searched directory."""


def find_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Returns the data directory: ``data_dir`` if given, else ``$JVAE_DATA_DIR``, else None."""
    if data_dir is None:
        data_dir = os.environ.get("JVAE_DATA_DIR") or None
    return None if data_dir is None else pathlib.Path(data_dir).expanduser()


def load_split(name: str | ArraySource, split: str, *, data_dir=None, download: bool = False,
               cache_dir=None, validation_size: int = 10000, verify: bool = True,
               tfds_image_key: str = "image", limit: int | None = None,
               validation_seed: int = 0, test=None, stored: bool = False) -> Split:
    """Loads one split of a dataset as values in ``[0, 1]``.

    Files are looked for in ``find_data_dir(data_dir)``, then in the download cache
    (``cache_dir``, default ``$JVAE_CACHE_DIR`` or ``~/.cache/jvae``). If they are in neither
    and ``download=True``, MNIST / Fashion-MNIST are fetched with :func:`download`.

    With ``verify=True`` every file is checked against its pinned SHA-256 the first time it
    is used (then remembered by path, size and mtime, in-process and in a JSON file in the
    cache folder). A file that fails raises :class:`ChecksumError`, unless ``download=True``
    and the dataset can be downloaded: then a verified copy is fetched into the cache (with
    a warning) and used instead.

    Splits of mnist / fashion_mnist: ``"train"`` is the first ``60000 - validation_size``
    training images, ``"validation"`` the last ``validation_size``, ``"train_full"`` all
    60000, ``"test"`` the 10000 ``t10k`` images. For binarized_mnist the splits are the
    published files (train 50000, validation 10000, test 10000; ``"train_full"`` is train
    followed by validation), labels are ``None`` and ``validation_size`` is ignored.

    cifar10 (see :mod:`jvae.data.cifar`): the official ``cifar-10-batches-py`` folder, else
    the official archive ``cifar-10-python.tar.gz`` read in place, else Homework 2's
    ``cifar10.pkl`` (no labels), in ``<dir>/cifar10/``; MD5-checked with ``verify=True``.
    Its splits cut the 50000 training images (the pickle's ``train``) as MNIST's 60000:
    ``"train"`` the first ``50000 - validation_size``, ``"validation"`` the last
    ``validation_size``, ``"train_full"`` all, ``"test"`` the 10000 test images.
    ``download=True`` fetches the archive (170 MB) into the cache.

    ``"tfds:<name>"`` (any prepared TFDS image dataset, :mod:`jvae.data.tfds_source`):
    ``split`` is a TFDS split (``"train"``, ``"test"``, ``"train[:90%]"``; ``"train_full"``
    is ``"train"``), ``data_dir`` the TFDS data directory (default TFDS's own; not
    ``$JVAE_DATA_DIR``); ``validation_size``, ``download`` and ``verify`` do not apply.

    Your own data (:mod:`jvae.data.user`): ``name`` is ``"npy:PATH"``, ``"npz:PATH"``,
    ``"folder:PATH"`` or a source object (:class:`~jvae.data.ArraySource`,
    :class:`~jvae.data.NpySource`, :class:`~jvae.data.NpzSource`,
    :class:`~jvae.data.FolderSource`). ``"validation"`` is ``validation_size`` examples drawn
    at random with ``validation_seed``, ``"train"`` the rest, ``"train_full"`` all, ``"test"``
    the ``test`` file or folder; ``data_dir``, ``download``, ``verify`` do not apply.

    Decoded files are cached in-process (keyed on path, size and mtime), so repeated loads
    are cheap; the returned arrays are read-only views of that cache.

    Args:
        name: one of ``FILE_DATASETS``, ``"tfds:<name>"``, ``"npy:PATH"``, ``"npz:PATH"``,
            ``"folder:PATH"``, or a source.
        split: one of ``SPLITS`` (a TFDS split for ``"tfds:*"``).
        data_dir: directory holding ``<name>/...``; defaults to ``$JVAE_DATA_DIR``.
        download: fetch missing MNIST / Fashion-MNIST files into the cache.
        cache_dir: download cache; defaults to :func:`default_cache_dir`.
        validation_size: number of training images held out for ``"validation"``
            (``0 <= validation_size <`` the number of training images).
        verify: check the files' SHA-256 (CIFAR-10: MD5) (``False`` skips it, e.g. for files
            of your own).
        tfds_image_key: the image feature of a TFDS dataset.
        limit: TFDS only: read just the first ``limit`` examples (other sources are decoded
            whole and cached; :func:`load_dataset` slices them).
        stored: images at their stored precision where it is 8 bits: uint8 ``0..255`` for
            mnist / fashion_mnist and your own uint8 data (no float32 copy is made); the
            other datasets and dtypes come back as float32 all the same.

    Returns:
        ``Split(images [N, H, W, C] float32 (or uint8 with stored), labels [N] int32 or
        None)``.

    Raises:
        ValueError: unknown name/split, bad ``validation_size``, or a corrupt file (one line
            naming the file).
        ChecksumError: (a ``ValueError``) a file's SHA-256 is not the pinned one; the message
            says which dataset the file really is when its digest is known.
        DataNotFoundError: the files are missing everywhere searched.
    """
    if isinstance(name, ArraySource) or is_user_name(name):
        return as_source(name).split(split, validation_size=validation_size,
                                     seed=validation_seed, test=test, stored=stored)
    if is_tfds_name(name):
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be a TFDS split name such as 'train', got {split!r}")
        _check_positive("limit", limit)
        return Split(*read_tfds(name, split, data_dir=data_dir, image_key=tfds_image_key,
                                limit=limit))
    _check_choice("dataset name", name, FILE_DATASETS)
    _check_choice("split", split, SPLITS)
    if name == "cifar10":
        _check_validation_size(validation_size, split, 50000)
        given = find_data_dir(data_dir)
        searched = [d for d in (given, default_cache_dir(cache_dir)) if d]
        images, labels = _cifar.load_cifar10(split, searched, cache_dir=cache_dir,
                                             download=download,
                                             validation_size=validation_size, verify=verify)
        return Split(images, labels)
    if name == "binarized_mnist":
        parts = ("train", "validation") if split == "train_full" else (split,)
        files = [_NPZ_FILES[p] for p in parts]
        root = _locate(name, files, data_dir, cache_dir, download, verify)
        arrays = [read_npz(root / name / f) for f in files]
        images = arrays[0] if len(arrays) == 1 else readonly(np.concatenate(arrays))
        return Split(images, None)

    _check_validation_size(validation_size, split, 60000)
    prefix = "t10k" if split == "test" else "train"
    files = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    root = _locate(name, files, data_dir, cache_dir, download, verify)
    images = read_idx(root / name / files[0], kind="images", stored=stored)
    labels = read_idx(root / name / files[1], kind="labels")
    if len(images) != len(labels):
        raise ValueError(f"{root / name}: {len(images)} images but {len(labels)} labels")
    cut = {"train": slice(0, len(images) - validation_size),
           "validation": slice(len(images) - validation_size, None)}.get(split, slice(None))
    return Split(images[cut], labels[cut])


def load_dataset(name: str | ArraySource, split: str, *, data_dir=None, binarize: str = "none",
                 threshold: float = 0.5, resize: int | None = None, limit: int | None = None,
                 download: bool = False, cache_dir=None,
                 validation_size: int = 10000, verify: bool = True,
                 tfds_image_key: str = "image", validation_seed: int = 0,
                 test=None, dtype: str = "float32") -> np.ndarray:
    """Loads images of a split, optionally subset, resized and statically binarised.

    Order of operations: take the first ``limit`` examples, resize, then binarise.

    Args:
        name: as in :func:`load_split` (a dataset's name, your own data's, or a source).
        split: as in :func:`load_split`.
        data_dir: as in :func:`load_split`.
        download: as in :func:`load_split`.
        cache_dir: as in :func:`load_split`.
        validation_size: as in :func:`load_split`.
        verify: as in :func:`load_split`.
        tfds_image_key: as in :func:`load_split`.
        validation_seed: as in :func:`load_split`.
        test: as in :func:`load_split`.
        binarize: ``"none"`` (grey levels), ``"static"`` (``x > threshold``, fixed once) or
            ``"dynamic"``. Dynamic binarisation draws a fresh ``Bernoulli(x)`` each epoch
            inside training (:func:`binarize_dynamic`), so here it returns grey levels.
        threshold: static binarisation threshold in ``(0, 1)``.
        resize: output side length ``S`` (antialiased bilinear, see :func:`resize_images`).
        limit: keep only the first ``limit`` examples (``limit > 0``).
        dtype: ``"float32"`` (default): grey levels in ``[0, 1]``. ``"stored"``: 8-bit images
            (mnist, fashion_mnist, your own uint8 data) stay uint8 ``0..255``, a quarter of
            the memory, for the training epoch to convert per batch
            (:func:`jvae.data.pixels_to_unit` gives exactly the float32 values); with
            ``resize`` or ``binarize="static"``, and for other data, float32 as by default.

    Returns:
        float32 ``[N, S, S, C]`` (without ``resize`` the stored ``[N, H, W, C]``: 28x28x1 for
        the MNIST family, 32x32x3 for CIFAR-10; your own data's ``[N, H, W, C]`` or
        ``[N, D]``), values in ``[0, 1]`` (your own float data: as stored).
        Without ``limit``/``resize``/``binarize="static"`` this is a read-only view of the
        in-process cache; otherwise a new array.

    Raises:
        ValueError: unknown choices or out-of-range arguments, a corrupt file, or (as
            :class:`ChecksumError`) a file whose SHA-256 is not the pinned one.
    """
    _check_choice("binarize", binarize, BINARIZE)
    _check_choice("dtype", dtype, ("float32", "stored"))
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    _check_positive("limit", limit)
    _check_positive("resize", resize)
    x = load_split(name, split, data_dir=data_dir, download=download, cache_dir=cache_dir,
                   validation_size=validation_size, verify=verify,
                   tfds_image_key=tfds_image_key, validation_seed=validation_seed, test=test,
                   limit=limit if is_tfds_name(name) else None,
                   stored=dtype == "stored" and resize is None and binarize != "static").images
    if limit is not None:
        x = x[:limit]
    if resize is not None and x.ndim != 4:
        raise ValueError(f"resize={resize} applies to images [N, H, W, C]; {name} holds "
                         f"vectors of shape {x.shape}")
    if resize is not None and (resize != x.shape[1] or resize != x.shape[2]):
        x = resize_images(x, resize)
    if binarize == "static":
        x = binarize_static(x, threshold)
    return x


# ----------------------------------------------------------------------------- helpers


def _locate(name: str, files: list[str], data_dir, cache_dir, fetch: bool,
            verify: bool) -> pathlib.Path:
    """Returns the first directory ``d`` with every ``d/name/file`` (verified if ``verify``);
    downloads if allowed (also to replace files that fail verification)."""
    given = find_data_dir(data_dir)
    searched = [d for d in (given, default_cache_dir(cache_dir)) if d]
    for root in searched:
        if all((root / name / f).is_file() for f in files):
            if not verify:
                return root
            where = ("the download cache" if root != given else
                     "data_dir" if data_dir is not None else "$JVAE_DATA_DIR")
            try:
                for f in files:
                    verify_file(root / name / f, name, where=where, cache_dir=cache_dir)
            except ChecksumError as e:
                if not (fetch and name in _dl.SHA256):
                    raise
                warnings.warn(f"{e} Using a verified download instead.", stacklevel=3)
                break
            return root
    if fetch and name in _dl.SHA256:
        root = _dl.download(name, cache_dir=cache_dir).parent
        if verify:  # download() verified them; record it so later loads skip the hash
            for f in files:
                verify_file(root / name / f, name, where="the download cache",
                            cache_dir=cache_dir)
        return root
    where = ", ".join(str(root / name) for root in searched) or "nowhere (no data_dir given)"
    how = ("pass data_dir=..., set the JVAE_DATA_DIR environment variable to the folder "
           f"holding {name}/")
    if name in _dl.SHA256:
        how += f", or pass download=True to fetch it into {default_cache_dir(cache_dir)}"
    else:
        how += (". binarized_mnist cannot be downloaded by jvae: place the files there by hand "
                "(Larochelle & Murray 2011 .amat data, packed as described in the data README)")
    raise DataNotFoundError(f"{name}: missing {', '.join(files)}; searched {where}. "
                            f"To provide them, {how}.")


def _check_validation_size(validation_size, split: str, size: int) -> None:
    if (isinstance(validation_size, bool) or not isinstance(validation_size, (int, np.integer))
            or not 0 <= validation_size < size):
        raise ValueError(f"validation_size must be an int in [0, {size}), got "
                         f"{validation_size!r}")
    if split == "validation" and validation_size == 0:
        raise ValueError('split "validation" is empty because validation_size=0; '
                         'use validation_size > 0 or the "train_full" split')
