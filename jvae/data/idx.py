"""Reader of the gzipped IDX files of the MNIST family (MNIST, Fashion-MNIST).

Each ``.gz`` holds one IDX file: a big-endian header (magic ``2051`` for images, ``2049`` for
labels, then the dimensions) and a ``uint8`` payload. Decoded arrays are cached in-process
on ``(path, size, mtime_ns)`` and returned read-only, so repeated loads share one copy.
"""

from __future__ import annotations

import functools
import gzip
import pathlib
import zlib

import numpy as np

__all__ = ["read_idx", "file_key", "readonly"]

_IDX_MAGIC = {"images": 2051, "labels": 2049}


def file_key(path: pathlib.Path) -> tuple[str, int, int]:
    """``(path, size, mtime_ns)``: the cache key of a file's decoded or verified contents."""
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def readonly(a: np.ndarray) -> np.ndarray:
    """Marks ``a`` (and its base array, if any) read-only and returns it."""
    if isinstance(a.base, np.ndarray):
        a.base.flags.writeable = False
    a.flags.writeable = False
    return a


def one_line(e: BaseException) -> str:
    """``"TypeName: message"`` of an exception, on one line."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def read_idx(path: pathlib.Path, *, kind: str, stored: bool = False) -> np.ndarray:
    """Decodes a gzipped IDX file.

    Args:
        path: the ``.gz`` file.
        kind: ``"images"`` or ``"labels"``.
        stored: images as stored, uint8 ``0..255`` (no float32 copy is made).

    Returns:
        images: float32 ``[N, 28, 28, 1]`` in ``[0, 1]`` (``x / 255``), or uint8 with
        ``stored``; labels: int32 ``[N]`` in ``0..9``. Read-only, shared with the in-process
        cache.

    Raises:
        ValueError: one line naming the file: not gzip, truncated, bad magic or shape.
    """
    return _read_idx(*file_key(path), kind=kind, stored=bool(stored))


@functools.lru_cache(maxsize=8)
def _read_idx(path: str, size: int, mtime_ns: int, *, kind: str, stored: bool) -> np.ndarray:
    del size, mtime_ns  # cache key only
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: not a valid gzip file, truncated or corrupt "
                         f"({one_line(e)})") from e
    ndim = 3 if kind == "images" else 1
    head = 4 * (1 + ndim)
    if len(raw) < head:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {head})")
    magic, *dims = (int(v) for v in np.frombuffer(raw, ">u4", count=1 + ndim))
    if magic != _IDX_MAGIC[kind]:
        raise ValueError(f"{path}: bad IDX magic number {magic}, expected {_IDX_MAGIC[kind]} "
                         f"for {kind}")
    if kind == "images" and dims[1:] != [28, 28]:
        raise ValueError(f"{path}: expected 28x28 images, header says {dims[1]}x{dims[2]}")
    if len(raw) - head != int(np.prod(dims)):
        raise ValueError(f"{path}: payload has {len(raw) - head} bytes, header {dims} needs "
                         f"{int(np.prod(dims))} (truncated or corrupt file)")
    data = np.frombuffer(raw, np.uint8, offset=head).reshape(dims)
    if kind == "images" and stored:
        return readonly(data[..., None])
    if kind == "images":
        grey = data.astype(np.float32)
        grey /= 255.0
        return readonly(grey[..., None])
    if data.max(initial=0) > 9:
        raise ValueError(f"{path}: labels outside 0..9 (max {data.max()})")
    return readonly(data.astype(np.int32))
