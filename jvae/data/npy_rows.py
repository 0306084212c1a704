"""Rows of a ``.npy`` file read without loading the whole array: a split carved from a
file larger than the memory it may take (the training rows of ``npy:PATH`` with a
validation split) costs the rows and one chunk, not a copy of the file."""

from __future__ import annotations

import pathlib

import numpy as np

__all__ = ["header", "read_rows"]


def header(path: pathlib.Path):
    """``(shape, dtype, data offset)`` of a plain C-order ``.npy`` file of at least one
    axis, or ``None`` (missing, unreadable, truncated, Fortran order, objects)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with open(path, "rb") as f:
            read = readers.get(np.lib.format.read_magic(f))
            if read is None:
                return None
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (OSError, ValueError):
        return None
    if fortran or dtype.hasobject or not shape:
        return None
    if path.stat().st_size < offset + int(np.prod(shape)) * dtype.itemsize:
        return None
    return tuple(shape), dtype, offset


def read_rows(path: pathlib.Path, shape, dtype, offset: int, rows: np.ndarray,
                chunk_bytes: int = 1 << 24) -> np.ndarray:
    """``array[rows]`` of a ``.npy`` file (``rows`` increasing), read in chunks of about
    ``chunk_bytes``: memory is the result and one chunk."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    out = np.empty((len(rows), *shape[1:]), dtype)
    step = max(1, chunk_bytes // max(row_bytes, 1))
    with open(path, "rb") as f:
        for start in range(0, shape[0], step):
            stop = min(shape[0], start + step)
            i, j = np.searchsorted(rows, [start, stop])
            if i == j:
                continue
            f.seek(offset + start * row_bytes)
            chunk = np.frombuffer(f.read((stop - start) * row_bytes), dtype)
            out[i:j] = chunk.reshape(stop - start, *shape[1:])[rows[i:j] - start]
    return out
