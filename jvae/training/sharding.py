"""Data parallelism over devices: a 1-D mesh, batch and replicated shardings, placement helpers.

The recipe (single host or many): build a mesh with :func:`make_mesh`, put the train state
and the training array on every device with :func:`replicate`, and pass
``batch_sharding(mesh)`` to :func:`jvae.training.make_train_epoch`. Inside the compiled
epoch each ``[batch_size, ...]`` batch is then split over the devices and the compiler
all-reduces the gradients, so every device ends each step with the same parameters.
Independent runs (a vmapped stack of seeds) can instead be spread with
:func:`shard_leading_axis`, one slice of the stack per device.

With one device every function here is a no-op in effect, so code written for a mesh also
runs unchanged on a laptop.

Several processes (``python -m jvae.launch -n N``, or ``jax.distributed.initialize`` on each
host): ``jax.devices()`` then lists the devices of every process and :func:`make_mesh` spans
them all. Every process holds the same (replicated) train state and either the same
training array or only its share of the examples (:func:`shard_examples`); inside
the compiled epoch each process computes the slices of the global batch that fall on its own
devices, and the gradient all-reduce crosses the processes (gloo on CPU). The helpers
:func:`is_main_process`, :func:`to_host`, :func:`barrier` and :func:`broadcast_flag` are what
the run uses to let process 0 alone write files while the others wait for it.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["make_mesh", "batch_sharding", "replicated", "replicate", "shard_leading_axis",
           "check_batch_divisible", "is_main_process", "to_host", "barrier", "broadcast_flag",
           "process_rows", "shard_examples"]


def make_mesh(num_devices: int | None = None, axis_name: str = "data") -> Mesh:
    """A 1-D mesh over the first ``num_devices`` of ``jax.devices()``.

    In a multi-host job (after ``jax.distributed.initialize()``) ``jax.devices()`` lists the
    devices of every process, so the default mesh spans all hosts.

    Args:
      num_devices: how many devices to use; ``None`` uses all of them.
      axis_name: name of the mesh axis (the batch is split along it).

    Returns:
      A ``jax.sharding.Mesh`` of shape ``{axis_name: num_devices}``.

    Raises:
      ValueError: ``num_devices`` is not positive or exceeds the number of devices.
    """
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if int(num_devices) != num_devices or num_devices <= 0:
        raise ValueError(f"num_devices must be a positive integer, got {num_devices!r}.")
    if num_devices > len(devices):
        raise ValueError(
            f"Requested {num_devices} devices but only {len(devices)} are available "
            f"({devices[0].platform}); on CPU, set XLA_FLAGS="
            f"--xla_force_host_platform_device_count={num_devices} before importing jax.")
    return Mesh(np.asarray(devices[: int(num_devices)]), (axis_name,))


def batch_sharding(mesh: Mesh, axis_name: str = "data") -> NamedSharding:
    """Sharding that splits an array's leading (batch) axis over ``axis_name``."""
    return NamedSharding(mesh, P(axis_name))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy of an array on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copy every leaf of ``tree`` to every device of ``mesh``.

    Works on any pytree of arrays, including a :class:`jvae.training.TrainState` whose
    ``key`` is a typed PRNG key array (``jax.random.key``). In a multi-process job every
    process must pass the same values (e.g. parameters initialised from the same seed);
    ``jax.device_put`` checks this.

    Args:
      tree: pytree of arrays (NumPy or JAX).
      mesh: the device mesh.

    Returns:
      The same pytree with every leaf a JAX array replicated over ``mesh``.
    """
    return _put(tree, replicated(mesh))


def shard_leading_axis(tree: Any, mesh: Mesh, axis_name: str = "data") -> Any:
    """Split every leaf's leading axis over the devices of ``axis_name``.

    Meant for a stack of independent runs (e.g. a ``TrainState`` vmapped over seeds, leaves
    ``[S, ...]``): with S equal to the device count each device holds one run, and a vmapped
    epoch applied to the result runs the seeds in parallel without communication.

    In a multi-process job every process passes the whole stack (the same values); each
    keeps the slices of its own devices.

    Args:
      tree: pytree whose leaves all have the same leading size S.
      mesh: the device mesh.
      axis_name: mesh axis to split over.

    Returns:
      The pytree with every leaf sharded as ``P(axis_name)``.

    Raises:
      ValueError: a leaf is a scalar or its leading size is not divisible by the number of
        devices on ``axis_name``.
    """
    n = mesh.shape[axis_name]
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = np.shape(leaf)
        where = jax.tree_util.keystr(path) or "the array"
        if not shape:
            raise ValueError(f"Cannot shard {where}: it is a scalar with no leading axis.")
        if shape[0] % n:
            raise ValueError(
                f"Leading axis of {where} has size {shape[0]}, not divisible by the {n} "
                f"devices on mesh axis {axis_name!r}.")
    return _put(tree, batch_sharding(mesh, axis_name))


def check_batch_divisible(batch_size: int, mesh: Mesh, axis_name: str = "data") -> None:
    """Raise ``ValueError`` unless ``batch_size`` splits evenly over ``axis_name``.

    Args:
      batch_size: examples per training step.
      mesh: the device mesh.
      axis_name: mesh axis the batch is split over.
    """
    n = mesh.shape[axis_name]
    if batch_size % n:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {n} devices on mesh axis "
            f"{axis_name!r}; choose a multiple of {n}.")


def process_rows(num_examples: int, mesh: Mesh, axis_name: str = "data") -> slice | None:
    """The rows of an ``[N, ...]`` array split over ``axis_name`` that this process's devices
    hold: ``slice(start, stop)``, ``N / num_processes`` rows when every process has as many
    devices. ``None`` when ``N`` is not a multiple of the devices on ``axis_name`` (an array
    cannot be split evenly then) or this process's rows are not one contiguous block."""
    n = int(num_examples)
    devices = mesh.shape[axis_name]
    if n % devices:
        return None
    per = n // devices
    starts = sorted(index[0].start or 0 for index in
                    batch_sharding(mesh, axis_name).addressable_devices_indices_map((n,)).values())
    if starts != list(range(starts[0], starts[0] + per * len(starts), per)):
        return None
    return slice(starts[0], starts[-1] + per)


def shard_examples(data, mesh: Mesh, axis_name: str = "data") -> jax.Array | None:
    """``data`` ``[N, ...]`` as one global array split over ``axis_name``, built from this
    process's rows alone (:func:`process_rows`): ``data[rows]`` is all this process reads, so
    a memory-mapped or random-access ``data`` is read only there, and each device holds
    ``N / devices`` rows. Returns ``None`` where :func:`process_rows` does.

    A compiled epoch gathering a batch from the result (``jnp.take(data, idx, axis=0)``)
    gathers on each device the rows it holds and sums the ``[batch_size, ...]`` pieces over
    the devices (XLA's partitioned gather: one all-reduce of the batch per step, never of
    the array); the batch is the same, bit for bit, as from a replicated array.
    """
    rows = process_rows(len(data), mesh, axis_name)
    if rows is None:
        return None
    local = np.asarray(data[rows])
    return jax.make_array_from_process_local_data(batch_sharding(mesh, axis_name), local,
                                                  (len(data),) + local.shape[1:])


def is_main_process() -> bool:
    """True in process 0 of a multi-process job, and always in a single-process run.

    Process 0 is the one that writes metrics, figures and checkpoints.
    """
    return jax.process_index() == 0


def to_host(tree: Any) -> Any:
    """Every leaf of ``tree`` as a NumPy array holding its whole (global) value.

    Replicated and process-local arrays are read from this process's own copy (no
    communication); an array sharded across processes is gathered with
    ``multihost_utils.process_allgather``, which every process must then call together.
    Typed PRNG keys come back as their raw key data (``jax.random.key_data``).

    Args:
      tree: pytree of JAX or NumPy arrays.

    Returns:
      The same pytree of ``np.ndarray``.
    """
    def get(x):
        if isinstance(x, jax.Array):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                x = jax.random.key_data(x)
            if not (x.is_fully_addressable or x.is_fully_replicated):
                from jax.experimental import multihost_utils
                return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(get, tree)


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (no-op with one process).

    Every process must call it with the same name, in the same order as their other
    collective operations.
    """
    if _multi_process():
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def broadcast_flag(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (itself with one process); also a barrier.

    Used to let every process fail together when process 0 alone tried something (taking the
    work directory's lock, writing a checkpoint) and it went wrong.
    """
    if not _multi_process():
        return bool(flag)
    from jax.experimental import multihost_utils
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(bool(flag), np.int32)))


def _multi_process() -> bool:
    return jax.process_count() > 1


def _put(tree: Any, sharding: NamedSharding) -> Any:
    """``jax.device_put(tree, sharding)``, also from committed arrays in multi-process jobs.

    With several processes ``device_put`` onto devices of other hosts accepts host values
    (and uncommitted arrays), not arrays already committed to a local device, so local JAX
    arrays go through NumPy first; typed PRNG keys travel as their raw key data.
    """
    if not _multi_process():
        return jax.device_put(tree, sharding)

    def put(x):
        if isinstance(x, jax.Array) and x.is_fully_addressable:
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                data = put(jax.random.key_data(x))
                return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
            x = np.asarray(x)
        return jax.device_put(x, sharding)

    return jax.tree.map(put, tree)
