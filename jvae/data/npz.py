"""Reader of the fixed binarised MNIST (Larochelle & Murray, 2011) stored as packed-bit npz.

Each file holds ``bits`` (uint8 ``[N, 98]``, ``np.packbits`` of the 784 pixels of a row) and
``shape`` (``[N, 784]``). Decoded arrays are cached in-process on ``(path, size, mtime_ns)``.
"""

from __future__ import annotations

import functools
import pathlib
import pickle
import zipfile
import zlib

import numpy as np

from jvae.data.idx import file_key, one_line, readonly

__all__ = ["read_npz"]

# What numpy and zipfile raise on a truncated, corrupt or foreign file.
_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, KeyError,
                TypeError, pickle.UnpicklingError)


def read_npz(path: pathlib.Path) -> np.ndarray:
    """Decodes a packed-bits binarized_mnist npz.

    Args:
        path: the ``.npz`` file.

    Returns:
        float32 ``[N, 28, 28, 1]`` of 0/1, read-only, shared with the in-process cache.

    Raises:
        ValueError: one line naming the file: not a zip/npz, truncated or corrupt, a zip
            without the ``bits`` and ``shape`` arrays, or arrays of the wrong shape.
    """
    return _read_npz(*file_key(path))


@functools.lru_cache(maxsize=4)
def _read_npz(path: str, size: int, mtime_ns: int) -> np.ndarray:
    del size, mtime_ns  # cache key only
    try:
        z = np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise ValueError(f"{path}: not a valid binarized_mnist npz, truncated or corrupt "
                         f"({one_line(e)})") from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not a binarized_mnist npz archive "
                         "with arrays 'bits' and 'shape'")
    with z:
        missing = [k for k in ("bits", "shape") if k not in z.files]
        if missing:
            raise ValueError(f"{path}: a zip archive without the binarized_mnist arrays "
                             f"{missing} (it holds {sorted(z.files)[:5]})")
        try:
            bits, shape = z["bits"], tuple(int(v) for v in z["shape"])
        except _READ_ERRORS as e:
            raise ValueError(f"{path}: corrupt or truncated binarized_mnist npz "
                             f"({one_line(e)})") from e
    if len(shape) != 2 or shape[1:] != (784,) or bits.shape != (shape[0], 98):
        raise ValueError(f"{path}: expected bits [N, 98] for shape [N, 784], "
                         f"got bits {bits.shape} and shape {list(shape)}")
    x = np.unpackbits(bits, axis=1, count=784)
    return readonly(x.astype(np.float32).reshape(-1, 28, 28, 1))
