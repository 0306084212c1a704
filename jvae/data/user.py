"""Your own data: arrays, ``.npy`` and ``.npz`` files and folders of images, as sources.

A source reads to a :class:`~jvae.data.Split` with the conventions of the built-in readers:
float32 values, uint8 pixels scaled to ``[0, 1]`` as MNIST's are (``x / 255``), booleans as
0/1, other floats kept as they are (checked for NaN/Inf; their range is checked against the
likelihood by the run, :func:`jvae.runs.load_data`). Shapes: ``[N, H, W]`` (grey images, a
channel axis is added), ``[N, H, W, C]`` (images with any channel count) or ``[N, D]``
(vectors, for MLP models). Labels are int32 ``[N]``.

Splits (:meth:`ArraySource.split`, the same for every source): ``"train_full"`` is every
example; ``"validation"`` is ``validation_size`` examples drawn at random without replacement
(``numpy.random.default_rng(seed)``, as the dev split of :func:`jvae.runs.split_dev`) and
``"train"`` the others, in their stored order; ``"test"`` reads the separate ``test`` source
(a file or folder given by the user).

On the command line the same sources are named ``npy:PATH``, ``npz:PATH`` and ``folder:PATH``
(:func:`as_source`).
"""

from __future__ import annotations

import difflib
import functools
import pathlib
import pickle
import zipfile
import zlib

import numpy as np

from jvae.data import npy_rows
from jvae.data.folder import read_folder
from jvae.data.idx import file_key, one_line, readonly
from jvae.data.transforms import pixels_to_unit
from jvae.data.validate import InvalidDataError, check_data

__all__ = ["ArraySource", "NpySource", "NpzSource", "FolderSource", "Source", "PREFIXES",
           "is_user_name", "as_source", "to_split", "clear_caches"]

#: Dataset names starting with one of these read your own files (``"npz:data/x.npz"``).
PREFIXES = ("npy:", "npz:", "folder:")
#: npz arrays taken as the images / labels when no key is given (in this order).
IMAGE_KEYS = ("x", "images")
LABEL_KEYS = ("labels", "y")
_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, KeyError,
                TypeError, pickle.UnpicklingError)


def is_user_name(name) -> bool:
    """Whether ``name`` selects your own data (``"npy:PATH"``, ``"npz:PATH"``,
    ``"folder:PATH"``)."""
    return isinstance(name, str) and name.startswith(PREFIXES)


class ArraySource:
    """Data already in memory.

    Args:
        images: ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, D]``; uint8 (scaled by 1/255),
            bool or floating point (numpy, JAX or anything ``np.asarray`` takes).
        labels: int ``[N]`` class labels, or ``None``.
        name: what to call the data in messages.
    """

    def __init__(self, images, labels=None, *, name: str = "arrays"):
        self.name = name
        self._images, self._labels = images, labels

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def read(self, stored: bool = False):
        """Every example: ``Split(images float32 [N, ...], labels int32 [N] or None)``; with
        ``stored``, uint8 images stay uint8 (``0..255``, no float32 copy; other dtypes are
        float32 as without it).

        Raises:
            InvalidDataError: (a ``ValueError``) one line naming the data: wrong dtype or
                shape, no examples, NaN/Inf, labels of the wrong length or dtype.
        """
        return to_split(self._images, self._labels, self.name, stored=stored)

    def split(self, split: str, *, validation_size: int = 0, seed: int = 0,
              test: "Source | str | None" = None, stored: bool = False):
        """One split (see the module docstring): ``"train"``, ``"validation"``,
        ``"train_full"`` or ``"test"``.

        Args:
            split: the split's name.
            validation_size: examples carved out as ``"validation"`` (``0 <= size < N``).
            seed: which examples the validation split takes.
            test: the test data (a source, or a path or name for :func:`as_source`); needed
                for ``"test"`` only.
            stored: uint8 images as stored (see :meth:`read`).

        Returns:
            ``Split(images [n, ...] float32 (uint8 with ``stored``), labels [n] int32 or
            None)``, read-only.

        Raises:
            ValueError: one line: an unknown split, a ``validation_size`` not smaller than
                the data, ``"test"`` without ``test``, or bad data.
        """
        from jvae.data.datasets import SPLITS

        if split not in SPLITS:
            close = difflib.get_close_matches(str(split), SPLITS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown split {split!r} of {self.name}; {hint}choose one of "
                             f"{list(SPLITS)}")
        if split == "test":
            if test is None or test == "":
                raise ValueError(f"{self.name} has no test data: give a test file or folder "
                                 "(test=..., config.dataset.test), or use the 'validation' "
                                 "split carved from the training data")
            return as_source(test, like=self).read(stored)
        if split == "train_full":
            return self.read(stored)
        return self._carve(split, validation_size, seed, stored)

    def _carve(self, split: str, validation_size: int, seed: int, stored: bool):
        """``"train"`` or ``"validation"``: carved from the stored data, then converted (no
        float32 copy of the whole array is made)."""
        from jvae.data.datasets import Split

        whole = self.read(True)
        keep = _kept(len(whole.images), split, validation_size, seed, self.name)
        labels = None if whole.labels is None else readonly(whole.labels[keep])
        images = whole.images[keep]
        return Split(readonly(images if stored else pixels_to_unit(images)), labels)


class NpySource(ArraySource):
    """One ``.npy`` array of examples (see :class:`ArraySource` for dtypes and shapes).

    Args:
        path: the ``.npy`` file.
        labels: int ``[N]`` labels, a path to a ``.npy`` of them, or ``None``.
    """

    def __init__(self, path, labels=None):
        self.path = pathlib.Path(path).expanduser()
        super().__init__(None, labels, name=f"npy:{path}")

    def read(self, stored: bool = False):
        return to_split(_load_npy(self.path, "npy"), self._read_labels(), self.name,
                        stored=stored)

    def _read_labels(self):
        labels = self._labels
        if isinstance(labels, (str, pathlib.Path)):
            labels = _load_npy(pathlib.Path(labels).expanduser(), "npy labels")
        return labels

    def _carve(self, split: str, validation_size: int, seed: int, stored: bool):
        """Reads only the carved rows, chunk by chunk: the whole array is never in memory
        (a file numpy's header reader cannot read goes the way of every source)."""
        header = npy_rows.header(self.path)
        if header is None:
            return super()._carve(split, validation_size, seed, stored)
        shape, dtype, offset = header
        rows = np.flatnonzero(_kept(shape[0], split, validation_size, seed, self.name))
        labels = self._read_labels()
        if labels is not None:
            labels = _labels(labels, shape[0], self.name)[rows]
        images = readonly(npy_rows.read_rows(self.path, shape, dtype, offset, rows))  # no copy
        return to_split(images, labels, self.name, stored=stored)


class NpzSource(ArraySource):
    """Arrays of an ``.npz`` archive (``np.savez``): the examples and optional labels.

    Args:
        path: the ``.npz`` file.
        key: the examples' array; ``None``: the only array, else ``"x"`` or ``"images"``.
        labels_key: the labels' array; ``None``: ``"labels"`` or ``"y"`` if present (and not
            the examples), else no labels.
    """

    def __init__(self, path, key: str | None = None, labels_key: str | None = None):
        self.path = pathlib.Path(path).expanduser()
        self.key, self.labels_key = key or None, labels_key or None
        super().__init__(None, None, name=f"npz:{path}")

    def read(self, stored: bool = False):
        images, labels = _load_npz(self.path, self.key, self.labels_key)
        return to_split(images, labels, self.name, stored=stored)


class FolderSource(ArraySource):
    """A folder of PNG/JPEG images, one subfolder per class optional (labels: the index of
    the subfolder in sorted order); see :mod:`jvae.data.folder`.

    Args:
        path: the folder.
        resize: ``None`` (all images of one size), a side ``S`` or ``(H, W)``: images of
            another size are resized to it (antialiased bilinear).
    """

    def __init__(self, path, resize: int | tuple[int, int] | None = None):
        self.path = pathlib.Path(path).expanduser()
        self.resize = resize or None
        super().__init__(None, None, name=f"folder:{path}")

    def read(self, stored: bool = False):
        try:
            images, labels = read_folder(self.path, self.resize)
        except FileNotFoundError as e:
            from jvae.data.datasets import DataNotFoundError
            raise DataNotFoundError(str(e)) from None
        return to_split(images, labels, self.name, stored=stored)


Source = ArraySource
"""Every source is an :class:`ArraySource` (``NpySource``, ``NpzSource`` and
``FolderSource`` read theirs from files)."""


def as_source(name, *, like: ArraySource | None = None, key: str | None = None,
              labels_key: str | None = None, resize=None) -> ArraySource:
    """A source from a name: ``"npy:PATH"``, ``"npz:PATH"``, ``"folder:PATH"``; a source is
    returned as it is.

    Args:
        name: the name, or a bare path when ``like`` is given (read as ``like``'s kind: a
            test file next to a training file).
        like: the source whose kind a bare path takes.
        key: npz: the examples' array (see :class:`NpzSource`).
        labels_key: npz: the labels' array.
        resize: folder: the size images are resized to (see :class:`FolderSource`).

    Raises:
        ValueError: a name without a known prefix, or with no path after it.
    """
    if isinstance(name, ArraySource):
        return name
    text = str(name)
    if not is_user_name(text) and isinstance(like, (NpySource, NpzSource, FolderSource)):
        text = {NpySource: "npy:", NpzSource: "npz:", FolderSource: "folder:"}[type(like)] + text
        if isinstance(like, NpzSource):
            key, labels_key = key or like.key, labels_key or like.labels_key
        resize = resize or getattr(like, "resize", None)
    if not is_user_name(text):
        raise ValueError(f"{text!r} names no data of your own; use npy:PATH, npz:PATH or "
                         "folder:PATH")
    prefix, path = text.split(":", 1)
    if not path:
        raise ValueError(f"{text!r} names no file; give a path, e.g. {prefix}:data/train.{prefix}")
    if prefix == "npy":
        return NpySource(path)
    if prefix == "npz":
        return NpzSource(path, key=key, labels_key=labels_key)
    return FolderSource(path, resize=resize)


def to_split(images, labels, name: str, *, stored: bool = False):
    """Converts arrays to a read-only ``Split`` (see the module docstring).

    Args:
        images: the examples, ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, D]``.
        labels: int ``[N]`` or ``None``.
        name: what to call the data in messages.
        stored: keep uint8 images as uint8 (``0..255``; the training epoch converts each
            batch to ``v / 255``, :func:`jvae.data.pixels_to_unit`).

    Returns:
        ``Split(images float32 [N, H, W, C] or [N, D], labels int32 [N] or None)``; uint8
        images with ``stored`` and uint8 input.

    Raises:
        InvalidDataError: one line naming ``name`` and the problem.
    """
    from jvae.data.datasets import Split

    x = _as_float(images, name, stored)
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim not in (2, 4):
        raise InvalidDataError(f"{name}: expected examples [N, H, W], [N, H, W, C] or [N, D], "
                               f"got shape {x.shape}")
    # no examples, NaN/Inf (count, first index); uint8 pixels have no bad values
    check_data(x, name=name, values=x.dtype != np.uint8)
    return Split(readonly(x), None if labels is None else _labels(labels, len(x), name))


def clear_caches() -> None:
    """Forget the decoded files that readers of your own data and of TFDS keep in-process
    (``.npy``, ``.npz``, image folders, ``tfds:`` splits: whole datasets): a training run
    calls it once its training array is on the device, so no host copy stays alive. The
    built-in datasets' caches (MNIST, CIFAR-10: a fixed size) are kept. The next read of a
    file decodes it again."""
    from jvae.data import folder, tfds_source

    for cached in (_read_npy, _read_npz, folder._read, tfds_source._read):
        cached.cache_clear()


# ----------------------------------------------------------------------------- helpers


def _as_float(images, name: str, stored: bool = False) -> np.ndarray:
    try:
        x = np.asarray(images)
    except (TypeError, ValueError) as e:
        raise InvalidDataError(f"{name}: not an array of numbers ({one_line(e)})") from None
    if x.dtype == np.uint8 and stored:          # a copy: never mark the caller's array read-only
        return x if not x.flags.writeable else x.copy()
    if x.dtype == np.uint8:
        out = x.astype(np.float32)
        out /= 255.0                            # as the built-in MNIST reader
        return out
    if x.dtype == np.bool_:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.floating):
        return x if x.dtype == np.float32 and not x.flags.writeable else x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        raise InvalidDataError(f"{name}: integer dtype {x.dtype} (values {lo}..{hi}); store "
                               "uint8 for 0..255 pixels (scaled by 1/255) or floating point")
    raise InvalidDataError(f"{name}: expected uint8, bool or floating-point data, got dtype "
                           f"{x.dtype}")


def _kept(n: int, split: str, validation_size, seed: int, name: str) -> np.ndarray:
    """bool ``[n]``: the examples of ``split`` (``"train"`` or ``"validation"``), the
    validation split being ``validation_size`` examples drawn with ``seed``."""
    if (isinstance(validation_size, bool) or not isinstance(validation_size, (int, np.integer))
            or not 0 <= validation_size < n):
        raise ValueError(f"validation_size {validation_size!r} must be an int in [0, {n}) "
                         f"for the {n} examples of {name} (e.g. {max(1, n // 10)}, a "
                         "tenth; config.dataset.validation_size)")
    if split == "validation" and validation_size == 0:
        raise ValueError(f'split "validation" of {name} is empty because '
                         'validation_size=0; use validation_size > 0 or "train_full"')
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).choice(n, validation_size, replace=False)] = True
    return held if split == "validation" else ~held


def _labels(labels, n: int, name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.dtype.kind == "f" and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise InvalidDataError(f"{name}: labels must be integers [N] = [{n}], got dtype "
                               f"{y.dtype} and shape {y.shape}")
    return readonly(y.astype(np.int32))


def _missing(path: pathlib.Path, what: str):
    from jvae.data.datasets import DataNotFoundError

    return DataNotFoundError(f"{what}:{path}: no such file (looked for {path.resolve()})")


def _load_npy(path: pathlib.Path, what: str) -> np.ndarray:
    if not path.is_file():
        if path.is_dir():
            raise ValueError(f"{what}:{path}: a folder, not a .npy file; use folder:{path}")
        raise _missing(path, what.split()[0])
    return _read_npy(*file_key(path))


@functools.lru_cache(maxsize=2)
def _read_npy(path: str, size: int, mtime_ns: int) -> np.ndarray:
    del size, mtime_ns  # cache key only
    try:
        x = np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise ValueError(f"{path}: not a valid .npy file, truncated or corrupt "
                         f"({one_line(e)})") from e
    if isinstance(x, np.lib.npyio.NpzFile):
        x.close()
        raise ValueError(f"{path}: an .npz archive, not a .npy array; use npz:{path}")
    return readonly(x)


def _load_npz(path: pathlib.Path, key, labels_key):
    if not path.is_file():
        if path.is_dir():
            raise ValueError(f"npz:{path}: a folder, not an .npz file; use folder:{path}")
        raise _missing(path, "npz")
    return _read_npz(*file_key(path), key, labels_key)


@functools.lru_cache(maxsize=2)
def _read_npz(path: str, size: int, mtime_ns: int, key, labels_key):
    del size, mtime_ns  # cache key only
    try:
        z = np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise ValueError(f"{path}: not a valid .npz file, truncated or corrupt "
                         f"({one_line(e)})") from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an .npz archive; use npy:{path}")
    with z:
        keys = list(z.files)
        if not keys:
            raise ValueError(f"{path}: an .npz archive with no arrays")
        key = _pick(path, keys, key, "key", IMAGE_KEYS)
        if labels_key is None:
            labels_key = next((k for k in LABEL_KEYS if k in keys and k != key), None)
        else:
            labels_key = _pick(path, keys, labels_key, "labels_key", ())
        try:
            images = z[key]
            labels = None if labels_key is None else z[labels_key]
        except _READ_ERRORS as e:
            raise ValueError(f"{path}: corrupt or truncated .npz ({one_line(e)})") from e
    return readonly(images), labels


def _pick(path: str, keys: list[str], key, field: str, defaults) -> str:
    if key is not None:
        if key in keys:
            return key
        close = difflib.get_close_matches(str(key), keys, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{path}: no array {key!r} ({field}); it holds {keys}{hint}")
    if len(keys) == 1:
        return keys[0]
    found = next((k for k in defaults if k in keys), None)
    if found is None:
        raise ValueError(f"{path}: holds {len(keys)} arrays {keys} and none is called "
                         f"{' or '.join(repr(k) for k in defaults)}; name the examples with "
                         "key=... (config.dataset.key)")
    return found
