"""Readers of CIFAR-10: the official "python version" batches (or their archive) and the
single pickle of Homework 2.

Official layout (Krizhevsky, 2009, https://www.cs.toronto.edu/~kriz/cifar.html), found in
``<dir>/cifar10/``::

    cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch    (extracted), or
    cifar-10-python.tar.gz                                           (the archive itself)

Each batch is a pickled dict with ``data`` (uint8 ``[10000, 3072]``: the 1024 red, then green,
then blue values of a 32x32 image, rows first) and ``labels`` (10000 ints in ``0..9``). The
archive's published MD5 (``c58f30108f718f92721af3b95e74349a``) and the batches' MD5s (the
values torchvision pins) are checked on first use. The archive is read in place, without
extracting it.

Homework 2's file (``cifar10.pkl``, read by its ``dgm_utils.load_pickle``): one pickled dict
``{"train": uint8 [N, H, W, C], "test": uint8 [M, H, W, C]}`` with values in ``0..255`` and
no labels; ``load_pickle`` divides by 255 (NHWC here; the notebook transposes to NCHW for
PyTorch). A pickle of another stored dtype is read by its values: integers (any width) and
floats in ``0..255`` are divided by 255, floats already in ``[0, 1]`` (and booleans) are
kept, both splits alike; NaN/Inf, negative values, values above 255 and other dtypes are
refused in one line naming the file.

Pickles are read with a restricted unpickler that builds only numpy arrays and plain Python
containers, so a file cannot run code while it is read. Decoded arrays are cached in-process
on ``(path, size, mtime_ns)`` and returned read-only.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import pathlib
import pickle
import tarfile
import warnings
import zlib

import numpy as np

from jvae.data.idx import file_key, one_line, readonly

__all__ = ["ARCHIVE", "ARCHIVE_MD5", "BATCH_DIR", "BATCH_MD5", "TRAIN_BATCHES", "TEST_BATCH",
           "PICKLE", "load_cifar10", "read_cifar_batches", "read_cifar_archive",
           "read_image_pickle", "md5_file"]

ARCHIVE = "cifar-10-python.tar.gz"
#: MD5 of the official archive, as published on the CIFAR page (pinned in jvae.data.fetch.MD5).
ARCHIVE_MD5 = importlib.import_module("jvae.data.fetch").MD5["cifar10"][ARCHIVE]
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
#: MD5 of each extracted batch (the values torchvision's CIFAR10 pins).
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
#: File name of Homework 2's pickle (as its download cell saves it).
PICKLE = "cifar10.pkl"

_READ_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                AttributeError, IndexError, ImportError, OSError, zlib.error, tarfile.TarError)
_VERIFIED: set[tuple[str, int, int, str]] = set()
_BLOCK = 1 << 20


def md5_file(path: pathlib.Path, expected: str | None = None, *, what: str = "") -> str:
    """MD5 of a file's bytes; with ``expected``, raises :class:`ChecksumError` on a mismatch
    (one line naming the file and both digests). Files that matched are remembered by
    ``(path, size, mtime_ns)`` in this process."""
    from jvae.data.checksums import ChecksumError

    path = pathlib.Path(path)
    key = file_key(path) + (expected or "",)
    if expected is not None and key in _VERIFIED:
        return expected
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    actual = h.hexdigest()
    if expected is not None:
        if actual != expected:
            raise ChecksumError(
                f"{path}: MD5 {actual} does not match the published {expected} of "
                f"{what or path.name} (corrupt, truncated or another file). To fix it, replace "
                "it with the official file, pass download=True to fetch a verified archive "
                "into the cache, or pass verify=False (config.dataset.verify_checksums=False) "
                "to skip the check.")
        _VERIFIED.add(key)
    return actual


def read_cifar_batches(folder: pathlib.Path, names, *, verify: bool = True
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Reads extracted CIFAR-10 batches from ``folder`` (``cifar-10-batches-py``).

    Args:
        folder: the folder holding the batch files.
        names: batch file names, e.g. :data:`TRAIN_BATCHES` or ``(TEST_BATCH,)``.
        verify: check each file against :data:`BATCH_MD5` first.

    Returns:
        ``(images float32 [N, 32, 32, 3] in [0, 1], labels int32 [N])``, read-only,
        concatenated in the order of ``names``.

    Raises:
        ValueError: one line naming the file: not a CIFAR batch, truncated, wrong shapes.
        ChecksumError: (a ``ValueError``) a file's MD5 is not the pinned one.
    """
    parts = []
    for name in names:
        path = pathlib.Path(folder) / name
        if verify and name in BATCH_MD5:
            md5_file(path, BATCH_MD5[name], what=f"CIFAR-10 {name}")
        parts.append(_read_batch_file(*file_key(path)))
    return _concat(parts)


def read_cifar_archive(path: pathlib.Path, names, *, verify: bool = True
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Reads CIFAR-10 batches straight from the official ``cifar-10-python.tar.gz``.

    Args:
        path: the archive.
        names: batch file names inside ``cifar-10-batches-py/``.
        verify: check the archive against :data:`ARCHIVE_MD5` first.

    Returns:
        As :func:`read_cifar_batches`.

    Raises:
        ValueError: not a gzip tar, a member missing, or a member that is not a CIFAR batch.
        ChecksumError: the archive's MD5 is not the published one.
    """
    path = pathlib.Path(path)
    if verify:
        md5_file(path, ARCHIVE_MD5, what="the CIFAR-10 archive cifar-10-python.tar.gz")
    batches = _read_archive(*file_key(path))
    missing = [n for n in names if n not in batches]
    if missing:
        raise ValueError(f"{path}: the archive has no {', '.join(BATCH_DIR + '/' + n for n in missing)}"
                         f" (it holds {sorted(batches) or 'no CIFAR batches'})")
    return _concat([batches[n] for n in names])


def read_image_pickle(path: pathlib.Path, split: str) -> np.ndarray:
    """Reads one split of a ``dgm_utils.load_pickle``-style file (Homework 2's ``cifar10.pkl``).

    Args:
        path: the pickle, a dict ``{"train": [N, H, W, C], "test": [M, H, W, C]}`` of values
            in ``0..255`` (uint8, or any integer or float dtype) or floats in ``[0, 1]``.
        split: ``"train"`` or ``"test"``.

    Returns:
        float32 ``[N, H, W, C]`` in ``[0, 1]`` (divided by 255, as ``load_pickle``, unless
        both splits are floats already in ``[0, 1]``), read-only.

    Raises:
        ValueError: one line naming the file: not a pickle, truncated, not such a dict, wrong
            rank, channels not 1 or 3, NaN/Inf, values outside ``0..255``, splits on
            different scales, or another dtype.
    """
    return _read_image_pickle(*file_key(pathlib.Path(path)))[split]


def load_cifar10(split: str, searched, *, cache_dir=None, download: bool = False,
                 validation_size: int = 10000, verify: bool = True
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """One split of CIFAR-10 from the first of ``searched`` holding one of its layouts (see
    :func:`jvae.data.load_split`, which calls this with ``data_dir`` and the cache).

    Args:
        split: ``"train"``, ``"validation"``, ``"train_full"`` or ``"test"``.
        searched: root folders, each looked at for ``<root>/cifar10/`` in the order of the
            module docstring's layouts.
        cache_dir: the download cache (:func:`jvae.data.fetch.default_cache_dir`).
        download: fetch the official archive into the cache when nothing is found, or when a
            file fails its MD5.
        validation_size: training images held out for ``"validation"``.
        verify: check MD5s.

    Returns:
        ``(images float32 [N, 32, 32, 3] in [0, 1], labels int32 [N] or None)``.

    Raises:
        DataNotFoundError: no layout in any searched folder (naming the files, the folders and
            how to provide them).
        ChecksumError: a file's MD5 is not the published one (and ``download=False``).
        ValueError: a corrupt file, or ``validation_size`` not below the training set size.
    """
    from jvae.data.datasets import DataNotFoundError

    _dl = importlib.import_module("jvae.data.fetch")
    name = "cifar10"
    parts = TRAIN_BATCHES if split != "test" else (TEST_BATCH,)
    source = None
    for root in searched:
        folder = pathlib.Path(root) / name
        if all((folder / BATCH_DIR / p).is_file() for p in parts):
            source = ("batches", folder / BATCH_DIR)
        elif (folder / ARCHIVE).is_file():
            source = ("archive", folder / ARCHIVE)
        elif (folder / PICKLE).is_file():
            source = ("pickle", folder / PICKLE)
        if source is not None:
            break
    if source is None and download:
        source = ("archive", _dl.download(name, cache_dir=cache_dir) / ARCHIVE)
    if source is None:
        where = (", ".join(str(pathlib.Path(root) / name) for root in searched)
                 or "nowhere (no data_dir given)")
        raise DataNotFoundError(
            f"{name}: missing {BATCH_DIR}/{{{','.join(parts)}}}, {ARCHIVE} or {PICKLE}; "
            f"searched {where}. To provide them, download the official \"CIFAR-10 python "
            f"version\" archive {ARCHIVE} from https://www.cs.toronto.edu/~kriz/cifar.html "
            "into <data_dir>/cifar10/ (extracting it is optional), put Homework 2's "
            "cifar10.pkl there, pass download=True (config.dataset.download=True) to fetch "
            f"the archive into {_dl.default_cache_dir(cache_dir) / name}, or use a TFDS copy "
            "with name='tfds:cifar10'.")
    kind, path = source
    from jvae.data.checksums import ChecksumError
    try:
        if kind == "batches":
            images, labels = read_cifar_batches(path, parts, verify=verify)
        elif kind == "archive":
            images, labels = read_cifar_archive(path, parts, verify=verify)
        else:
            images, labels = read_image_pickle(path, "test" if split == "test" else "train"), None
    except ChecksumError as e:
        if not download:
            raise
        warnings.warn(f"{e} Using a verified download instead.", stacklevel=3)
        path = _dl.download(name, cache_dir=cache_dir) / ARCHIVE
        images, labels = read_cifar_archive(path, parts, verify=verify)
    if split in ("test", "train_full"):
        return images, labels
    if validation_size >= len(images):
        raise ValueError(f"validation_size {validation_size} must be smaller than the "
                         f"{len(images)} training images of {path}")
    cut = {"train": slice(0, len(images) - validation_size),
           "validation": slice(len(images) - validation_size, None)}[split]
    return images[cut], None if labels is None else labels[cut]


# ----------------------------------------------------------------------------- helpers


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only (no other global can be loaded)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"),
                ("builtins", "bytearray")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays "
                                         "and plain containers are read")
        return super().find_class(module, name)


def _unpickle(raw: bytes):
    return _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()


def _text_keys(d) -> dict:
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}


def _unpickle_dict(raw: bytes, where: str, keys: tuple[str, ...], kind: str,
                   expected: str) -> dict:
    """``raw`` unpickled (restricted) as a dict with text ``keys``; one-line errors naming
    ``where`` for a corrupt pickle, another type, or missing keys."""
    try:
        d = _unpickle(raw)
    except _READ_ERRORS as e:
        raise ValueError(f"{where}: not {kind} pickle, truncated or corrupt "
                         f"({one_line(e)})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{where}: a pickled {type(d).__name__}, not a {expected}")
    d = _text_keys(d)
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"{where}: a dict without the keys {missing} (it has "
                         f"{sorted(map(str, d))[:5]}); expected a {expected}")
    return d


def _decode_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle_dict(raw, where, ("data", "labels"), "a CIFAR-10 batch",
                       "CIFAR-10 batch dict with 'data' and 'labels'")
    data, labels = np.asarray(d["data"]), np.asarray(d["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{where}: expected data uint8 [N, 3072] (32x32x3, channels first), "
                         f"got {data.dtype} {list(data.shape)}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: expected {data.shape[0]} integer labels, got "
                         f"{labels.dtype} {list(labels.shape)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{where}: labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32)
    images /= 255.0
    return images, labels.astype(np.int32)


@functools.lru_cache(maxsize=8)
def _read_batch_file(path: str, size: int, mtime_ns: int):
    del size, mtime_ns  # cache key only
    with open(path, "rb") as f:
        raw = f.read()
    return _decode_batch(raw, path)


@functools.lru_cache(maxsize=2)
def _read_archive(path: str, size: int, mtime_ns: int) -> dict:
    """Every batch of the archive in one pass over the gzip stream: ``{name: (x, y)}``."""
    del size, mtime_ns
    wanted = set(TRAIN_BATCHES) | {TEST_BATCH}
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = member.name.split("/")[-1]
                if member.isfile() and name in wanted and member.name.startswith(BATCH_DIR):
                    out[name] = _decode_batch(tar.extractfile(member).read(),
                                              f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: not a valid gzip tar archive, truncated or corrupt "
                         f"({one_line(e)})") from e
    return out


@functools.lru_cache(maxsize=2)
def _read_image_pickle(path: str, size: int, mtime_ns: int) -> dict:
    del size, mtime_ns
    with open(path, "rb") as f:
        raw = f.read()
    d = _unpickle_dict(raw, path, ("train", "test"), "a valid image",
                       "dict with 'train' and 'test' image arrays (dgm_utils.load_pickle's "
                       "layout: {'train': [N, H, W, C], 'test': [M, H, W, C]})")
    arrays = {}
    for split in ("train", "test"):
        a = np.asarray(d[split])
        if a.ndim != 4 or a.shape[-1] not in (1, 3) or 0 in a.shape:
            raise ValueError(f"{path}: '{split}' must be images [N, H, W, C] with C 1 or 3 "
                             f"(channels last, as load_pickle reads them), got shape "
                             f"{list(a.shape)}")
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
                or a.dtype == np.bool_):
            raise ValueError(f"{path}: '{split}' has dtype {a.dtype}, not image values "
                             "(integers 0..255, or floats in 0..255 or [0, 1])")
        lo, hi = (float(a.min()), float(a.max())) if a.dtype != np.bool_ else (0.0, 1.0)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
            bad = int(np.sum(~np.isfinite(a))) if np.issubdtype(a.dtype, np.floating) else 0
            what = f"{bad} NaN/Inf values" if bad else f"min {lo:g} and max {hi:g}"
            raise ValueError(f"{path}: '{split}' values must lie in 0..255 (or [0, 1] for "
                             f"float images), got {what}")
        arrays[split] = (a, hi)
    scale = _pickle_scale(path, arrays)
    out = {}
    for split, (a, _) in arrays.items():
        x = a.astype(np.float32)
        if scale != 1.0:
            x /= scale
        out[split] = readonly(x)
    if out["train"].shape[1:] != out["test"].shape[1:]:
        raise ValueError(f"{path}: train images {list(out['train'].shape[1:])} and test images "
                         f"{list(out['test'].shape[1:])} differ in shape")
    return out


def _pickle_scale(path: str, arrays: dict) -> float:
    """What the pickle's values are divided by: 255 for integer images (``0..255``, as
    ``load_pickle``) and for float images with values above 1; 1 for float (or boolean)
    images already in ``[0, 1]``. Decided for both splits together, so they always match;
    float images of both kinds in one file are refused."""
    kinds = set()
    for split, (a, hi) in arrays.items():
        if np.issubdtype(a.dtype, np.integer):
            kinds.add(("0..255", split))
        elif a.dtype == np.bool_ or hi <= 1.0:
            kinds.add(("[0, 1]", split))
        else:
            kinds.add(("0..255", split))
    ranges = {k for k, _ in kinds}
    if len(ranges) > 1:
        listed = ", ".join(f"'{s}' in {k}" for k, s in sorted(kinds, key=lambda t: t[1]))
        raise ValueError(f"{path}: the splits hold values on different scales ({listed}); "
                         "store both as 0..255 or both as [0, 1]")
    return 255.0 if ranges == {"0..255"} else 1.0


def _concat(parts) -> tuple[np.ndarray, np.ndarray]:
    if len(parts) == 1:
        x, y = parts[0]
        return readonly(x), readonly(y)
    return (readonly(np.concatenate([p[0] for p in parts])),
            readonly(np.concatenate([p[1] for p in parts])))
