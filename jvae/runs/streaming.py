"""Out-of-core training: an epoch over a training split larger than its memory budget.

``config.dataset.memory_budget`` bounds the bytes the training split may take in memory at
its stored precision (uint8 pixels: one byte each). When the split is larger, the run does
not load it: it reads its rows from the file (:mod:`jvae.data.rows`: a ``.npy`` by
positioned reads, a folder of images, a TFDS split through ``tfds.data_source``), and each epoch runs
as compiled chunks of steps, each chunk's examples read on the host and put on the device
while the previous chunk trains.

The arithmetic is the in-memory epoch's: the epoch's plan (:func:`jvae.training.make_train_epoch`'s
``plan``) draws the same permutation from the same key, with the training split's size; each
chunk's examples are gathered on the host in the plan's order and the chunk's steps run
through ``run_steps`` with indices into the chunk. The batches are the same arrays, so the
parameters are bit-identical to the in-memory run's, whatever the budget; a run stopped
mid-epoch resumes from its last checkpoint and reads exactly the same examples again.

Grain (Google's data loader for JAX) is not used: its samplers draw their own order (NumPy's
generators), while the epoch's order here must be the in-memory epoch's
``jax.random.permutation`` for the result not to depend on the budget; what is left of a
loader, reading the rows of a chunk and prefetching one chunk on a thread, is
:class:`Prefetcher`.
"""

from __future__ import annotations

import functools
import os
import queue
import re
import threading
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jvae.data import rows as jrows
from jvae.data import user
from jvae.training import sharding

__all__ = ["parse_budget", "resolve_budget", "auto_budget", "training_rows", "streamed_rows",
           "is_streamed", "to_device",
           "check_loaded", "chunk_steps",
           "stream_chunks", "Stream", "Prefetcher", "streamed_epoch"]

FIELD = "config.dataset.memory_budget"
#: A chunk of an epoch holds at most this many bytes of examples (and at most a quarter of
#: the budget): small enough to prefetch, large enough that a chunk's steps dwarf its launch.
CHUNK_BYTES = 64 << 20
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
          "t": 1e12, "tb": 1e12, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


def parse_budget(value) -> int | None:
    """``config.dataset.memory_budget`` as bytes: ``None`` for ``"auto"``, ``0`` for ``0``
    or ``"none"`` (never stream), else a positive number of bytes (``"2GB"``, ``"512MiB"``,
    ``"1e9"``, ``1000000``).

    Raises:
        ValueError: one line: anything else (a negative or unreadable value).
    """
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{FIELD} must be bytes, 'auto' or 'none', got {value!r}")
    if isinstance(value, (int, np.integer, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        text = str(value).strip().lower()
        if text == "auto":
            return None
        if text in ("none", "0"):
            return 0
        m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)", text)
        if m is None or m.group(2) not in _UNITS:
            raise ValueError(f"{FIELD} must be bytes (e.g. 2GB, 512MiB, 1000000), 'auto' or "
                             f"'none', got {value!r}")
        number, unit = float(m.group(1)), m.group(2)
    size = number * _UNITS[unit]
    if not np.isfinite(size) or size < 0 or (0 < size < 1):
        raise ValueError(f"{FIELD} must be a non-negative number of bytes, got {value!r}")
    return int(size)


def auto_budget(device=None) -> int:
    """The ``"auto"`` budget: half of the device's memory on an accelerator (what
    ``memory_stats()["bytes_limit"]`` reports; the rest for parameters, optimiser state and
    activations), a quarter of the host's physical memory on the CPU (the in-memory path
    holds a host copy while the device copy is made)."""
    device = device or jax.local_devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:        # noqa: BLE001 (a backend without memory statistics)
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) // 2
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 4


def resolve_budget(value) -> int:
    """Bytes the training split may take in memory; ``0``: no limit (see
    :func:`parse_budget`, :func:`auto_budget`)."""
    budget = parse_budget(value)
    return auto_budget() if budget is None else budget


def training_rows(config) -> jrows.Rows | None:
    """A reader of the run's training rows, exactly those that
    :func:`jvae.runs.builders.load_data` would load before it holds out the dev split (the
    training split carved from the file, its first ``limit_train``), or ``None`` when the
    dataset is not read from a random-access source (``npy:``, ``folder:``, ``tfds:``) or
    the source cannot be opened so (a missing or invalid file: the in-memory readers' errors
    name the problem)."""
    from jvae.runs.outputs import trained_split

    ds = config.dataset
    name = str(ds.name)
    kind = _kind(name)
    if kind not in ("npy", "folder", "tfds"):
        return None
    split = trained_split(config)
    try:
        if kind == "tfds":
            reader = jrows.TfdsRows(name, split, data_dir=ds.data_dir or None,
                                    image_key=ds.get("tfds_image_key", "image"))
        else:
            path = name.split(":", 1)[1]
            reader = (jrows.NpyRows(path) if kind == "npy" else
                      jrows.FolderRows(path, resize=ds.resize or None))
    except (ValueError, OSError, ImportError, KeyError):
        return None        # the in-memory readers say what is wrong, in their words
    if kind != "tfds":
        if split == "test":             # (the separate test file: loaded, not streamed)
            return None
        if split != "train_full":
            kept = user._kept(len(reader), split, int(ds.validation_size),
                              int(ds.get("validation_seed", 0)), reader.name)
            reader = reader.subset(np.flatnonzero(kept))
    if ds.limit_train and int(ds.limit_train) < len(reader):
        reader = reader.subset(np.arange(int(ds.limit_train)))
    return reader


def is_streamed(config, train) -> bool:
    """Whether a run's training split (an array, or a reader from :func:`streamed_rows`) is
    over ``config.dataset.memory_budget`` and so streamed."""
    budget = resolve_budget(config.dataset.get("memory_budget", "auto"))
    return isinstance(train, jrows.Rows) and bool(budget) and train.nbytes > budget


def streamed_rows(config) -> jrows.Rows | None:
    """The reader that :func:`jvae.runs.builders.load_data` gives a training run instead of
    an array: a split over ``config.dataset.memory_budget`` (streamed, :func:`is_streamed`),
    and uint8 ``npy:`` data within it (put on the device chunk by chunk, :func:`to_device`,
    never whole on the host). ``None``: load the split as an array.

    Raises:
        ValueError: one line: a bad budget; a split over the budget that cannot be streamed
            (not ``npy:``, ``folder:`` or ``tfds:``, checked by the caller once loaded) or whose
            preparation cannot be applied example by example (static binarisation,
            centring, resizing other than a folder's).
    """
    ds = config.dataset
    budget = resolve_budget(ds.get("memory_budget", "auto"))
    rows = training_rows(config)
    if rows is None:
        return None
    if not budget or rows.nbytes <= budget:
        plain = not (ds.binarize == "static" or ds.get("centre", False) or ds.resize)
        return rows if plain and _kind(ds.name) == "npy" and rows.dtype == np.uint8 else None
    if ds.binarize == "static" or ds.get("centre", False) or (ds.resize and
                                                              _kind(ds.name) != "folder"):
        what = ("binarize=static" if ds.binarize == "static" else
                "centre=True" if ds.get("centre", False) else f"resize={ds.resize}")
        raise ValueError(f"{ds.name}: {rows.nbytes / 1e6:.1f} MB of training data exceed "
                         f"{FIELD} ({budget / 1e6:.1f} MB) but {what} cannot be applied example "
                         f"by example while streaming; prepare the file that way, or raise {FIELD}"
                         " (0: always in memory)")
    return rows


def check_loaded(config, nbytes: int) -> None:
    """Refuse a loaded training split over the budget (its source cannot be streamed).

    Raises:
        ValueError: one line naming the sizes and what to do.
    """
    if _kind(config.dataset.name) in ("npy", "folder", "tfds"):
        return               # (its stored size was compared by streamed_rows)
    budget = resolve_budget(config.dataset.get("memory_budget", "auto"))
    if budget and nbytes > budget:
        raise ValueError(f"{config.dataset.name}: {nbytes / 1e6:.1f} MB of training data exceed "
                         f"{FIELD} ({budget / 1e6:.1f} MB) and only npy:, folder: and tfds: data "
                         f"are streamed; save the images as .npy, or raise {FIELD} (0: always in "
                         "memory)")


def to_device(rows: jrows.Rows, chunk_bytes: int = CHUNK_BYTES) -> jax.Array:
    """All of ``rows`` as one array on the default device, written chunk by chunk into a
    buffer the update donates: memory is the device array and one chunk (a host copy and
    ``jax.device_put`` would hold two copies at once)."""
    n = len(rows)
    step = max(1, chunk_bytes // max(1, rows.nbytes // max(n, 1)))
    out = jnp.zeros(rows.shape, rows.dtype)
    for a in range(0, n, step):
        b = min(n, a + step)
        out = _write(out, rows.read(np.arange(a, b)), a)
        out.block_until_ready()            # one chunk alive at a time
    return out


@functools.partial(jax.jit, donate_argnums=0)
def _write(out, chunk, start):
    return jax.lax.dynamic_update_slice_in_dim(out, chunk, start, 0)


def _kind(name) -> str:
    from jvae.data.tfds_source import is_tfds_name

    name = str(name)
    return name.split(":", 1)[0] if (user.is_user_name(name) or is_tfds_name(name)) else ""


def chunk_steps(batch_size: int, row_bytes: int, budget: int, every: int = 0) -> int:
    """Steps per chunk: as many as fit ``min(budget / 4, CHUNK_BYTES)`` bytes (at least one),
    and with dev assessments every ``every`` steps a divisor of ``every`` (so that the
    epoch's chunks have at most two lengths)."""
    limit = min(budget // 4 if budget else CHUNK_BYTES, CHUNK_BYTES)
    steps = max(1, limit // max(1, batch_size * row_bytes))
    if every:
        steps = max(d for d in range(1, min(steps, every) + 1) if every % d == 0)
    return int(steps)


def stream_chunks(num_steps: int, chunk: int, every: int = 0) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(num_steps)``: pieces of ``chunk`` steps, cut
    at every multiple of ``every`` too (dev assessments); lengths ``chunk`` and at most one
    other."""
    bounds = [(a, min(a + every, num_steps)) for a in range(0, num_steps, every)] if every \
        else [(0, num_steps)]
    return [(a, min(a + chunk, b)) for lo, b in bounds for a in range(lo, b, chunk)]


class Stream:
    """The training rows of an out-of-core run and how a chunk of them reaches the devices.

    Args:
      rows: the reader (:func:`training_rows`).
      mesh: the data-parallel mesh (``None``: the default device). In a job of several
        processes each process reads only the rows its devices hold (its share of every
        chunk) and the chunk is one global array split over the devices.
      check: called with every chunk read (on the host) before it is placed; raises on bad
        values.
    """

    def __init__(self, rows: jrows.Rows, mesh=None, check: Callable | None = None):
        self.rows, self.mesh, self.check = rows, mesh, check
        self.shape, self.dtype = rows.shape, rows.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def sharding(self):
        """The sharding :meth:`put` gives (``None``: the default device)."""
        if self.mesh is None:
            return None
        if jax.process_count() == 1:
            return sharding.replicated(self.mesh)
        return sharding.batch_sharding(self.mesh)

    def constant(self, x: np.ndarray):
        """A host array the chunk programs take beside the chunk (the placeholder, the
        chunk's batch indices): replicated over the mesh when there is one."""
        return x if self.mesh is None else sharding.replicate(x, self.mesh)

    def put(self, positions: np.ndarray) -> jax.Array:
        """The rows at ``positions`` (``[M]``, the chunk's examples in step order) as one
        device array ``[M, ...]``."""
        if self.mesh is None:
            return jax.device_put(self._read(positions))
        if jax.process_count() == 1:
            return sharding.replicate(self._read(positions), self.mesh)
        mine = sharding.process_rows(len(positions), self.mesh)
        local = self._read(positions[mine])
        return jax.make_array_from_process_local_data(sharding.batch_sharding(self.mesh), local,
                                                      (len(positions),) + local.shape[1:])


    def _read(self, positions):
        chunk = self.rows.read(positions)
        if self.check is not None:
            self.check(chunk)
        return chunk


_DONE = object()


class Prefetcher:
    """Runs ``make(item)`` for each item on a background thread, at most one result ahead of
    the consumer. Iterate over it for the results in order; an exception raised by ``make``
    is raised by the iteration (after the thread has ended). ``close()`` (also on leaving a
    ``with`` block) stops and joins the thread."""

    def __init__(self, make: Callable[[Any], Any], items):
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(make, list(items)),
                                        name="jvae-prefetch", daemon=True)
        self._thread.start()

    def _work(self, make, items) -> None:
        try:
            for item in items:
                if self._stop.is_set():
                    return
                self._put((True, make(item)))
        except BaseException as e:           # noqa: BLE001 (handed to the consumer)
            self._put((False, e))
            return
        self._put((True, _DONE))

    def _put(self, entry) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self):
        while True:
            ok, value = self._queue.get()
            if not ok:
                self.close()
                raise value
            if value is _DONE:
                self.close()
                return
            yield value

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def streamed_epoch(plan_fn, run_fns: dict, dev, axis: int, num_steps: int, batch_size: int,
                   chunks: list[tuple[int, int]], runs: int, stream: Stream, state, _train,
                   order_key):
    """One out-of-core epoch; returns ``(state, metrics, step_aux)`` like the one-program
    epoch. ``plan_fn(state, placeholder, order_key)`` draws the plan (the placeholder
    ``[N, 0]`` array carries the split's size); ``run_fns`` maps a chunk length to the
    compiled ``run_steps``; ``dev`` (a :class:`~jvae.runs.steplog.DevAssessor`) assesses
    after the chunks that end at one of its boundaries; ``runs``: the length of a stacked
    run's leading axis (0: one run)."""
    dev.seconds_in_epoch = 0.0
    p = plan_fn(state, stream.constant(placeholder(len(stream))), order_key)
    order = np.asarray(p.batches[0] if axis else p.batches).reshape(-1)   # one shared order
    p = p._replace(batches=None)          # (the device copy is not needed any more)
    step0 = int(np.ravel(jax.device_get(state.step))[0])
    rows = p.rows()[1:]
    parts, previous = [], None
    locals_ = {b - a: stream.constant(relative_batches(b - a, batch_size, runs))
               for a, b in chunks}
    with Prefetcher(lambda ab: stream.put(order[ab[0] * batch_size: ab[1] * batch_size]),
                    chunks) as chunk_data:
        for (a, b), data in zip(chunks, chunk_data):
            local = locals_[b - a]
            state, aux = run_fns[b - a](state, data, local,
                                        *(_take(x, a, b, axis) for x in rows))
            parts.append(aux)
            if previous is not None:        # at most two chunks queued on the device
                jax.block_until_ready(previous)
            previous = state.step
            if dev.every_steps and (b % dev.every_steps == 0 or b == num_steps):
                dev.assess(state.params, step0 + b, epoch=dev.epoch - 1 + b / num_steps,
                           final=dev.final and b == num_steps)
    aux = {k: jnp.concatenate([q[k] for q in parts], axis=axis) for k in parts[0]}
    metrics = {k: jnp.mean(v, axis=axis) for k, v in aux.items()}
    return state._replace(key=p.next_key), metrics, aux


def placeholder(n: int) -> np.ndarray:
    """``[n, 0]`` uint8, no bytes: what the plan reads of the data is its leading size."""
    return np.empty((int(n), 0), np.uint8)


def relative_batches(steps: int, batch_size: int, runs: int = 0) -> np.ndarray:
    """int32 ``[steps, batch_size]`` ``0 .. steps * batch_size - 1``: the batches of a chunk
    whose rows are stored in step order (``[runs, steps, batch_size]`` for a stacked run)."""
    local = np.arange(steps * batch_size, dtype=np.int32).reshape(steps, batch_size)
    return np.broadcast_to(local, (int(runs), steps, batch_size)) if runs else local


def _take(x, a: int, b: int, axis: int):
    return x[a:b] if axis == 0 else x[:, a:b]
