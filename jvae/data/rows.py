"""Random access to the examples of a file without reading it whole: the readers behind
out-of-core training (:mod:`jvae.runs.streaming`).

A reader has a ``shape`` ``[N, ...]`` and a ``dtype`` (uint8 for 8-bit pixels, else
float32) and reads any rows, in any order, with :meth:`Rows.read`; ``rows[a:b]`` reads a
slice. Values are those of the in-memory readers at their stored precision
(``load_dataset(..., dtype="stored")``): uint8 pixels stay uint8, ``bool`` and floats become
float32, ``[N, H, W]`` gets a channel axis. Three kinds:

* :class:`NpyRows`: a ``.npy`` file, its header read by ``np.load(mmap_mode="r")`` and its
  rows by positioned reads (``os.preadv``, consecutive rows in one call) into the output, so
  resident memory holds the rows read, never the file's pages. (Reading rows through the
  memory map instead maps the kernel's page-cache folios whole, up to megabytes per row
  touched.)
* :class:`FolderRows`: a folder of PNG/JPEG images (:mod:`jvae.data.folder`), each read
  decoded from its file.
* :class:`TfdsRows`: a prepared TFDS dataset through ``tfds.data_source`` (ArrayRecord).

:meth:`Rows.subset` restricts a reader to some of its rows (a split carved from a file).
"""

from __future__ import annotations

import mmap
import os
import pathlib

import numpy as np

from jvae.data.idx import one_line
from jvae.data.validate import InvalidDataError

__all__ = ["Rows", "NpyRows", "FolderRows", "TfdsRows"]


class Rows:
    """A random-access reader of ``shape[0]`` examples (see the module docstring)."""

    name: str = "rows"
    shape: tuple = ()
    dtype: np.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    @property
    def nbytes(self) -> int:
        """Bytes of all rows at their stored precision."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def read(self, idx) -> np.ndarray:
        """``[len(idx), *shape[1:]]`` rows ``idx`` (int, any order, repeats allowed)."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.name}: rows {idx.min()}..{idx.max()} outside 0..{len(self) - 1}")
        return self._read(idx)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self.read(np.arange(len(self))[key])
        if isinstance(key, (int, np.integer)):
            return self.read([key])[0]
        return self.read(key)

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is read in chunks (out-of-core training); read rows with "
                        ".read(idx) or a slice instead of converting it whole")

    def subset(self, rows) -> "Rows":
        """The reader of ``rows`` (int ``[M]``) of this one, in that order."""
        index = np.int32 if len(self) < 2 ** 31 else np.int64      # (half the memory)
        return _Subset(self, np.asarray(rows, index))


class _Subset(Rows):
    def __init__(self, base: Rows, rows: np.ndarray):
        self.base, self.rows = base, rows
        self.name, self.dtype = base.name, base.dtype
        self.shape = (len(rows),) + tuple(base.shape[1:])

    def _read(self, idx):
        return self.base.read(self.rows[idx])


class NpyRows(Rows):
    """The rows of a ``.npy`` file, memory-mapped.

    Raises:
        InvalidDataError: one line naming the file: not a valid ``.npy``, a dtype other than
            uint8, bool or floating point, or a shape other than ``[N, H, W]``,
            ``[N, H, W, C]``, ``[N, D]``.
    """

    def __init__(self, path):
        self.path = pathlib.Path(path).expanduser()
        self.name = f"npy:{path}"
        try:
            self._mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InvalidDataError(f"{self.name}: cannot be memory-mapped as a .npy array "
                                   f"({one_line(e)})") from None
        stored = self._mm.dtype
        if not (stored == np.uint8 or stored == np.bool_ or np.issubdtype(stored, np.floating)):
            raise InvalidDataError(f"{self.name}: dtype {stored}; out-of-core training reads "
                                   "uint8, bool or floating-point data")
        if self._mm.ndim not in (2, 3, 4) or not len(self._mm):
            raise InvalidDataError(f"{self.name}: expected examples [N, H, W], [N, H, W, C] or "
                                   f"[N, D], got shape {self._mm.shape}")
        extra = (1,) if self._mm.ndim == 3 else ()
        self.shape = tuple(self._mm.shape) + extra
        self.dtype = np.dtype(np.uint8 if stored == np.uint8 else np.float32)

    #: Rows read between two releases of the mapped pages, where the rows are read through
    #: the memory map (a Fortran-ordered file, or no ``os.preadv``).
    GROUP = 16

    def _read(self, idx):
        order = np.argsort(idx, kind="stable")       # file order: sequential reads
        raw = np.empty((len(idx), *self._mm.shape[1:]), self._mm.dtype)
        if self._mm.flags.c_contiguous and hasattr(os, "preadv"):
            self._pread(idx, order, raw)
        else:
            self._read_mapped(idx, order, raw)
        out = raw.reshape(len(idx), *self.shape[1:]).astype(self.dtype, copy=False)
        if self.dtype != np.uint8 and not np.all(np.isfinite(out)):
            bad = int(idx[np.flatnonzero(~np.isfinite(out.reshape(len(idx), -1)).all(1))[0]])
            raise InvalidDataError(f"{self.name}: non-finite values (NaN/Inf) in example {bad}")
        return out

    def _pread(self, idx, order, raw) -> None:
        """Reads rows ``idx`` into ``raw`` with positioned reads, in file order: each run of
        rows consecutive both in the file and in ``raw`` is one ``preadv``."""
        if not len(idx):
            return
        size = raw[0].nbytes
        buf = memoryview(raw.reshape(-1).view(np.uint8))
        src, dst = idx[order], order
        cut = np.flatnonzero((np.diff(src) != 1) | (np.diff(dst) != 1)) + 1
        starts = np.r_[0, cut]
        lengths = (np.diff(np.r_[starts, len(src)]) * size).tolist()
        at_file = (int(self._mm.offset) + src[starts] * size).tolist()
        at_out = (dst[starts] * size).tolist()
        fd, preadv = os.open(self.path, os.O_RDONLY), os.preadv
        try:
            for f, o, n in zip(at_file, at_out, lengths):
                got = preadv(fd, [buf[o: o + n]], f)
                while got < n:                   # a short read: go on after what was read
                    more = preadv(fd, [buf[o + got: o + n]], f + got)
                    if more <= 0:
                        raise InvalidDataError(
                            f"{self.name}: the file ends {n - got} bytes short of the rows "
                            f"read (at byte {f + got}); it was truncated or replaced after "
                            "it was opened")
                    got += more
        finally:
            os.close(fd)

    def _read_mapped(self, idx, order, raw) -> None:
        for a in range(0, len(idx), self.GROUP):
            part = order[a: a + self.GROUP]
            raw[part] = np.take(self._mm, idx[part], axis=0)
            self._release()

    def _release(self) -> None:
        """Drop the mapped pages from this process's resident memory."""
        raw = getattr(self._mm, "_mmap", None)
        if raw is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                raw.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass


class FolderRows(Rows):
    """The images of a folder (:func:`jvae.data.folder.list_images`), decoded per read.

    Every image must have the first image's channel count and size; with ``resize`` images
    of another size are resized (as :func:`jvae.data.folder.read_folder`, and then every
    image is float32 ``v / 255``).

    Raises:
        ValueError: as :func:`~jvae.data.folder.list_images`; at read time, an image whose
            size or channels differ from the first's (one line naming the file).
    """

    def __init__(self, path, resize=None):
        from jvae.data import folder

        self.path = pathlib.Path(path).expanduser()
        self.name = f"folder:{path}"
        self.files, self.labels, _ = folder.list_images(self.path)
        first = folder._decode(self.files[0])
        self.size = None if resize is None else folder._size(resize)
        hw = first.shape[:2] if self.size is None else self.size
        self.shape = (len(self.files), *hw, first.shape[2])
        self.dtype = np.dtype(np.uint8 if self.size is None else np.float32)

    def _read(self, idx):
        from jvae.data import folder
        from jvae.data.transforms import resize_images

        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        for k, i in enumerate(idx):
            f = self.files[int(i)]
            a = folder._decode(f)
            if a.shape[2] == 1 and self.shape[3] == 3:
                a = np.repeat(a, 3, axis=2)
            if a.shape[2] != self.shape[3]:
                raise ValueError(f"{f}: {a.shape[2]} channels, the folder's first image "
                                 f"{self.shape[3]}; convert the images to one mode")
            if self.size is None:
                if a.shape[:2] != self.shape[1:3]:
                    raise ValueError(f"{f}: {a.shape[0]}x{a.shape[1]}, the folder's first image "
                                     f"{self.shape[1]}x{self.shape[2]}; set resize=S "
                                     "(config.dataset.resize)")
                out[k] = a
            else:
                out[k] = (resize_images(a[None], self.size)[0] if a.shape[:2] != self.size
                          else a.astype(np.float32))
        if self.size is not None:
            out /= 255.0
        return out


class TfdsRows(Rows):
    """The images of a prepared TFDS split through ``tfds.data_source`` (uint8 pixels).

    Raises:
        ValueError: as :func:`jvae.data.tfds_source.read_tfds` (unknown dataset, split or
            feature; not prepared); at read time an image of another shape or dtype.
    """

    def __init__(self, name: str, split: str, *, data_dir=None, image_key: str = "image"):
        from jvae.data import tfds_source as ts

        base = name[len(ts.PREFIX):] if ts.is_tfds_name(name) else name
        split = "train" if split == "train_full" else split
        self.name, self.image_key = f"tfds:{base}", image_key
        self.source = ts._open(ts._import_tfds(), base, split,
                               None if data_dir is None else str(data_dir))
        if not len(self.source):
            raise ValueError(f"{self.name} split {split!r} is empty")
        first = self.source[0]
        if image_key not in first:
            raise ValueError(f"{self.name} has no image feature {image_key!r}; its features "
                             f"are {sorted(first)} (set config.dataset.tfds_image_key)")
        image = np.asarray(first[image_key])
        if image.ndim != 3 or image.dtype != np.uint8:
            raise ValueError(f"{self.name} feature {image_key!r}: {image.dtype} {image.shape}, "
                             "not 8-bit images [H, W, C]")
        self.shape, self.dtype = (len(self.source), *image.shape), np.dtype(np.uint8)

    def _read(self, idx):
        out = np.empty((len(idx), *self.shape[1:]), np.uint8)
        for k, i in enumerate(idx):
            image = np.asarray(self.source[int(i)][self.image_key])
            if image.shape != self.shape[1:] or image.dtype != np.uint8:
                raise ValueError(f"{self.name} example {int(i)}: {image.dtype} {image.shape}, "
                                 f"the first uint8 {self.shape[1:]}")
            out[k] = image
        return out
