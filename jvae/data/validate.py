"""Validation of data arrays at every public entry point, cheap enough to run on every call.

:func:`check_data` raises :class:`InvalidDataError` (a ``ValueError`` with a one-line
message) for an argument that is not an array, has a non-numeric, integer or boolean dtype,
the wrong shape for the model's ``data_shape``, no examples, NaN/Inf values, or values
outside the support of the model's likelihood. The support is declared by each likelihood
head class (its ``support`` attribute: :data:`UNIT_INTERVAL` for Bernoulli and
ContinuousBernoulli, :data:`REAL` for Gaussian); a head without one gets no range check.

The value checks are one jitted ``min``/``max`` reduction on the device for JAX arrays (two
scalars come back) and a numpy reduction for numpy arrays. Inside ``jit``/``vmap`` tracing
the data is a tracer and nothing is checked, so no compiled step ever waits for the host.
An immutable array that passed (a JAX array, or a read-only numpy array such as those of
:func:`jvae.data.load_split`) is remembered by identity through a weak reference, so passing
the same training array to every epoch costs one dictionary lookup after the first call.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Support", "REAL", "UNIT_INTERVAL", "InvalidDataError", "check_data",
           "check_points", "likelihood_support", "validate_images"]


class Support(NamedTuple):
    """Closed interval ``[low, high]`` holding every value of an observation.

    Attributes:
        low: smallest allowed value (``-inf`` for none).
        high: largest allowed value (``inf`` for none).
    """

    low: float
    high: float

    def __str__(self) -> str:
        if math.isinf(self.low) and math.isinf(self.high):
            return "any finite value"
        return f"[{self.low:g}, {self.high:g}]"

    @property
    def bounded(self) -> bool:
        """Whether either end is finite (so a range check is needed)."""
        return not (math.isinf(self.low) and math.isinf(self.high))


REAL = Support(-math.inf, math.inf)
"""Any finite value (Gaussian likelihoods)."""
UNIT_INTERVAL = Support(0.0, 1.0)
"""Values in ``[0, 1]`` (Bernoulli and ContinuousBernoulli likelihoods; grey levels)."""


class InvalidDataError(ValueError):
    """Raised (with a one-line message) for data a model cannot use."""


def likelihood_support(model: Any) -> Support | None:
    """The support declared by a model's likelihood head, or ``None`` if it declares none.

    Args:
        model: a :class:`~jvae.models.vae.VAE` (anything with a ``likelihood`` attribute), or a
            likelihood head itself.

    Returns:
        ``type(head).support`` when it is a :class:`Support`, else ``None``.
    """
    head = getattr(model, "likelihood", model)
    support = getattr(head, "support", None)
    return support if isinstance(support, Support) else None


def check_data(x: Any, *, model: Any = None, data_shape: Sequence[int] | None = None,
               support: Support | None = None, name: str = "data",
               batch_ndim: int | None = 1, values: bool = True) -> None:
    """Checks that ``x`` is usable as observations, or raises one clear error.

    Tracers (inside ``jax.jit``/``vmap`` tracing) are accepted unchecked. Checks, in order:
    an array (numpy or JAX); a numeric dtype; a floating-point dtype (``values=True``: an
    integer or boolean array is refused, with the conversion to use); the shape
    ``[N, *data_shape]`` (``batch_ndim=1``) or ``[..., *data_shape]`` (``batch_ndim=None``);
    at least one example; no NaN/Inf (count and first index); values in ``support``
    (min and max, count and first index outside).

    Args:
        x: the data, e.g. ``[N, 28, 28, 1]`` float32.
        model: a :class:`~jvae.models.vae.VAE`; supplies ``data_shape`` and the support of its
            likelihood (:func:`likelihood_support`) unless they are given.
        data_shape: shape of one observation; ``None`` checks only for a leading batch axis.
        support: allowed values; ``None`` checks finiteness only.
        name: what to call ``x`` in messages (e.g. ``"training data"``).
        batch_ndim: number of leading batch axes, or ``None`` for any number.
        values: also check dtype and values (``False``: structure only, no reduction, e.g.
            for an example batch whose values are not used).

    Raises:
        InvalidDataError: a ``ValueError`` whose one-line message names the problem.
    """
    if isinstance(x, jax.core.Tracer):
        return
    source = ""
    if model is not None:
        data_shape = getattr(model, "data_shape", None) if data_shape is None else data_shape
        if support is None:
            support = likelihood_support(model)
            head = getattr(model, "likelihood", model)
            source = f"the support of the model's {type(head).__name__} likelihood"
    shape = None if data_shape is None else tuple(int(s) for s in data_shape)
    spec = (shape, support, batch_ndim, values)
    if _seen(x, spec):
        return
    if not isinstance(x, (np.ndarray, jax.Array)):
        raise InvalidDataError(
            f"{name}: expected an array [N, ...] (numpy or JAX), got {type(x).__name__}; "
            "convert it with np.asarray(x, np.float32)")
    _check_dtype(x, name, values)
    _check_shape(x, name, shape, batch_ndim)
    if values:
        _check_values(x, name, support if support is not None and support.bounded else None,
                      source)
    _remember(x, spec)


def check_points(x: Any, name: str = "x", *, lists: bool = False, integers: bool = False,
                 min_points: int = 1) -> Any:
    """Checks ``x`` as ``[N, D]`` points (one example per row, as the classical methods and
    t-SNE take them) and returns it with a floating-point dtype, or raises one clear error.

    Half-precision input (float16, bfloat16) comes back as float32: the decompositions
    (SVD, Cholesky) behind these methods have no half-precision kernels. Tracers pass
    unchecked and unchanged.

    Args:
      x: the points.
      name: what to call ``x`` in messages.
      lists: accept nested lists and other array-likes (converted with ``np.asarray``);
        otherwise only NumPy and JAX arrays.
      integers: accept integer arrays (converted to float32); otherwise they are refused
        with the conversion to use, as :func:`check_data` does.
      min_points: the fewest rows accepted.

    Returns:
      ``x`` (float32 for half-precision or integer input; NumPy for converted lists).

    Raises:
      InvalidDataError: one line: not an array, a non-numeric, complex, boolean (or integer)
        dtype, not 2-D, fewer than ``min_points`` rows or no columns, NaN/Inf (count and first
        index).
    """
    if isinstance(x, jax.core.Tracer):
        return x
    if lists and not isinstance(x, (np.ndarray, jax.Array)):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise InvalidDataError(f"{name}: not an array of numbers ({e})") from None
    if not isinstance(x, (np.ndarray, jax.Array)):
        raise InvalidDataError(
            f"{name}: expected an array [N, D] (numpy or JAX), got {type(x).__name__}; "
            "convert it with np.asarray(x, np.float32)")
    dtype = x.dtype
    if jnp.issubdtype(dtype, jnp.integer) and integers:
        x = np.asarray(x, np.float32) if isinstance(x, np.ndarray) else x.astype(jnp.float32)
    elif not jnp.issubdtype(dtype, jnp.floating):
        _check_dtype(x, name, True)              # raises, naming the dtype
    if x.ndim != 2:
        raise InvalidDataError(
            f"{name}: expected a 2-D array [N, D] with one example per row, got shape "
            f"{tuple(x.shape)}; flatten images with x.reshape(len(x), -1)")
    if x.shape[0] < min_points or x.shape[1] == 0:
        raise InvalidDataError(f"{name}: expected at least {min_points} row"
                               f"{'s' * (min_points > 1)} and one column [N, D], got shape "
                               f"{tuple(x.shape)}")
    if jnp.finfo(x.dtype).bits < 32:
        x = np.asarray(x, np.float32) if isinstance(x, np.ndarray) else x.astype(jnp.float32)
    try:
        _check_values(x, name, None, "")
    except jax.errors.ConcretizationTypeError:   # a concrete array closed over inside a jit
        pass
    return x


def validate_images(x, name: str = "data", *, check_range: bool = False,
                    support: Support | None = None, source: str = "") -> None:
    """Checks that ``x`` is a finite numeric ``[N, H, W, C]`` image array.

    Args:
        x: array to check.
        name: what to call it in error messages.
        check_range: also require values in ``[0, 1]`` (grey levels / RGB intensities);
            ignored when ``support`` is given.
        support: the allowed values, e.g. a likelihood's (:func:`likelihood_support`:
            :data:`UNIT_INTERVAL` for Bernoulli, :data:`REAL` for Gaussian); ``None`` with
            ``check_range=False``: finiteness only.
        source: where ``support`` comes from, for the message (e.g. ``"the gaussian
            likelihood"``).

    Raises:
        InvalidDataError: (a ``ValueError``) naming the problem (dtype, ndim, NaN/Inf count
            and first index, range).
    """
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise InvalidDataError(f"{name}: expected a numeric array, got dtype {x.dtype}")
    if x.ndim != 4:
        raise InvalidDataError(
            f"{name}: expected images [N, H, W, C] (ndim 4), got shape {x.shape}")
    if support is None:
        support, source = (UNIT_INTERVAL, source or "grey levels") if check_range else (None, "")
    _check_values(x, name, support if support is not None and support.bounded else None,
                  source)


# ----------------------------------------------------------------------------- helpers

# id(array) -> (weak reference, specs it passed); only immutable arrays are entered.
_CHECKED: dict[int, tuple[weakref.ref, set]] = {}


def _immutable(x) -> bool:
    if isinstance(x, jax.Array):
        return True
    if isinstance(x, np.ndarray):  # read-only, and so is every array it is a view of
        a = x
        while isinstance(a, np.ndarray):
            if a.flags.writeable:
                return False
            a = a.base
        return True
    return False


def _seen(x, spec) -> bool:
    entry = _CHECKED.get(id(x))
    return entry is not None and entry[0]() is x and spec in entry[1]


def _remember(x, spec) -> None:
    if not _immutable(x):
        return
    key = id(x)
    entry = _CHECKED.get(key)
    if entry is not None and entry[0]() is x:
        entry[1].add(spec)
        return

    def forget(ref, key=key):
        if _CHECKED.get(key, (None,))[0] is ref:
            del _CHECKED[key]

    try:
        _CHECKED[key] = (weakref.ref(x, forget), {spec})
    except TypeError:  # not weakly referenceable: check every time
        pass


def _check_dtype(x, name: str, values: bool) -> None:
    dtype = x.dtype
    if jnp.issubdtype(dtype, jnp.floating):
        return
    if jnp.issubdtype(dtype, jnp.integer) or dtype == np.bool_:
        if not values:
            return
        if dtype == np.bool_:
            raise InvalidDataError(
                f"{name}: boolean dtype; models need floating-point data: convert it with "
                "x.astype(np.float32)")
        lo, hi = (int(v) for v in _minmax(x)[:2]) if x.size else (0, 0)
        raise InvalidDataError(
            f"{name}: integer dtype {dtype} (values {lo}..{hi}); models need floating-point "
            "data: convert it with x.astype(np.float32) / 255 for 0..255 grey levels (or "
            "x.astype(np.float32) for values already in range)")
    what = "complex" if jnp.issubdtype(dtype, jnp.complexfloating) else "non-numeric"
    raise InvalidDataError(f"{name}: expected a real floating-point array, got {what} dtype "
                           f"{dtype}")


def _check_shape(x, name: str, shape, batch_ndim) -> None:
    got = tuple(x.shape)
    if shape is None:
        lead = 1 if batch_ndim is None else batch_ndim
        if len(got) < lead:
            raise InvalidDataError(
                f"{name}: expected an array with a leading batch axis [N, ...], got shape {got}")
    else:
        dims = ", ".join(str(s) for s in shape)
        n = len(shape)
        if batch_ndim is None:
            ok, want = len(got) >= n and got[len(got) - n:] == shape, f"[..., {dims}]"
        else:
            ok = len(got) == n + batch_ndim and got[batch_ndim:] == shape
            lead = ["N"] if batch_ndim == 1 else [f"N{i}" for i in range(batch_ndim)]
            want = "[" + ", ".join(lead + [str(s) for s in shape]) + "]"
        if not ok:
            hint = "; add a batch axis (x[None])" if got == shape else ""
            raise InvalidDataError(
                f"{name}: expected shape {want} for the model's data_shape {shape}, got shape "
                f"{got}{hint}")
    if math.prod(got) == 0:
        raise InvalidDataError(f"{name}: empty array of shape {got} (0 examples); pass at "
                               "least one example")


def _check_values(x, name: str, support: Support | None, source: str) -> None:
    if x.size == 0:
        return
    lo, hi, finite = _minmax(x)
    lo, hi = float(lo), float(hi)
    if not finite:
        count, first, value = _first(x, "nonfinite", 0.0, 0.0)
        raise InvalidDataError(
            f"{name}: {count} non-finite values (NaN/Inf) of {x.size}; first at index "
            f"{first} (value {value})")
    if support is not None and (lo < support.low or hi > support.high):
        count, first, value = _first(x, "outside", support.low, support.high)
        of = f" ({source})" if source else ""
        raise InvalidDataError(
            f"{name}: values must lie in {support}{of}, got min {lo:g} and max {hi:g}: "
            f"{count} of {x.size} values outside, first at index {first} (value {value:g}); "
            "rescale the data (e.g. x / 255 for 0..255 grey levels) or use a likelihood "
            "whose support holds it (GaussianHead for real values)")


def _minmax(x) -> tuple:
    """``(min, max, all finite)`` on the host: numpy reductions, or one jitted reduction on
    the device whose three scalars are fetched explicitly (allowed under
    ``transfer_guard("disallow")``). Finiteness is tested on its own: XLA's vectorised
    ``min``/``max`` on the CPU need not propagate NaN (numpy's do)."""
    if isinstance(x, np.ndarray):
        lo, hi = np.min(x), np.max(x)
        return lo, hi, bool(np.isfinite(lo) and np.isfinite(hi))
    lo, hi, finite = jax.device_get(_device_minmax(x))
    return lo, hi, bool(finite)


@jax.jit
def _device_minmax(x):
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.min(x), jnp.max(x), jnp.asarray(True)
    return jnp.min(x), jnp.max(x), jnp.all(jnp.isfinite(x))


def _first(x, kind: str, low: float, high: float) -> tuple[int, tuple[int, ...], float]:
    """Count, first index and value of the bad elements (error path only)."""
    a = np.asarray(jax.device_get(x))  # the error path may copy: it runs once, then raises
    bad = ~np.isfinite(a) if kind == "nonfinite" else (a < low) | (a > high)
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))
    return int(bad.sum()), first, float(a[first])


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {', '.join(choices)}")


def _check_positive(what: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                              or value <= 0):
        raise ValueError(f"{what} must be a positive int or None, got {value!r}")
