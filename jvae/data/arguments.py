"""One-line checks of scalar arguments: integer counts and finite numbers in a range.

Every public function of jvae that takes a count (a batch size, a number of samples, draws,
components or iterations) checks it with :func:`check_count`: a count must be an integer
(``int`` or a NumPy integer), so ``batch_size=2.5`` or ``n=2.0`` is refused instead of being
truncated, and so are ``True`` and text. Numbers (a learning rate, a tolerance, a
perplexity) go through :func:`check_number`: a real, finite value within the stated bounds.
Both raise ``ValueError`` with one line naming the argument, the rule and the value given.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np

__all__ = ["check_count", "check_number"]


def check_count(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as a Python ``int``, or a one-line ``ValueError``.

    Args:
      value: the argument.
      name: its name in the message (e.g. ``"batch_size"``).
      minimum: the smallest allowed value.
      maximum: the largest allowed value (``None``: no bound).

    Returns:
      ``int(value)``.

    Raises:
      ValueError: ``value`` is not an integer (a float such as ``2.5`` or ``2.0``, a bool,
        text, an array of more than one element) or lies outside ``[minimum, maximum]``.
    """
    what = _integer_words(minimum, maximum)
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be {what}, got {value!r} "
                         f"({type(value).__name__}).") from None
    if number < minimum or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {what}, got {number}.")
    return int(number)


def _integer_words(minimum: int, maximum: int | None) -> str:
    if maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    return {1: "a positive integer", 0: "a non-negative integer"}.get(
        minimum, f"an integer >= {minimum}")


def check_number(value: Any, name: str, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 high_open: bool = False) -> float:
    """``value`` as a finite Python ``float`` within the bounds, or a one-line ``ValueError``.

    Args:
      value: the argument (an int, a float, a NumPy scalar or 0-d array).
      name: its name in the message.
      low: the lower bound (``None``: none).
      high: the upper bound (``None``: none).
      low_open: exclude the lower bound itself.
      high_open: exclude the upper bound itself.

    Returns:
      ``float(value)``.

    Raises:
      ValueError: not a real number (text, a bool, ``None``), NaN or infinite, or outside
        the bounds.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}" \
                   f"{')' if high_open or high is None else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}.")
    return number
