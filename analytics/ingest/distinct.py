"""Distinct values of an export's columns, found once per column while an export is validated.

Validation reads each distinct value once (exports repeat values a lot), so it factorises columns
many times: blank checks, numbers, dates and the de-identification scan of the same column. Within
:func:`shared_factorization` a column's codes are computed once and reused; outside it, nothing is
kept. The columns of the frames given are cached, each recognised by the identity of its values
array, which the cache holds while it lives (so an id cannot be reused by another array). Of the
many derived series, only those a per-unique parser made (a stripped or lower-cased copy) are
known too, through :func:`share`: their distinct values follow from their input's, and they are
held weakly.

The CSV reader finds a column's distinct values anyway (Arrow's dictionary encoding, in C) and
hands them over with :func:`remember`: the column is made read-only, so they cannot go stale, and
they are forgotten when the column is freed."""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import pandas as pd

__all__ = ["distinct", "remember", "share", "shared_factorization"]

_CACHE: ContextVar[dict | None] = ContextVar("cdasi_factorize_cache", default=None)
_KNOWN: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # a read-only column's memory -> (codes, uniques)


def _key(values: np.ndarray) -> tuple:
    """The memory a 1-d array reads: equal for the array and a DataFrame's view of it."""
    return (values.__array_interface__["data"][0], values.shape, values.strides, values.dtype.str)


def remember(values: np.ndarray, codes: np.ndarray, uniques: np.ndarray) -> None:
    """Record the distinct values of ``values`` (codes, uniques in order of appearance, as
    :func:`distinct` returns them), found while reading. ``values`` becomes read-only."""
    values.flags.writeable = False
    key = _key(values)
    _KNOWN[key] = (_small(codes, len(uniques)), uniques)
    weakref.finalize(values, _KNOWN.pop, key, None)


def share(values: np.ndarray, codes: np.ndarray, derived: np.ndarray) -> None:
    """Within :func:`shared_factorization`, record the distinct values of a column derived value by
    value from a column with known ones (a stripped or lower-cased copy): ``codes`` are the input's,
    ``derived`` what each of the input's distinct values became (they may coincide: " a" and "a").
    The next :func:`distinct` of ``values`` in the block then needs no factorisation of it.
    Outside the block, nothing. Unlike :func:`remember`, ``values`` stays writeable (pandas 2.1
    cannot compare read-only object arrays); its owner does not change it while the block lasts.
    ``values`` is held weakly: the record goes when the array does."""
    cache = _CACHE.get()
    if cache is None or not isinstance(values, np.ndarray):
        return
    inner, kept = pd.factorize(derived, use_na_sentinel=False)
    # Held weakly, unlike the block's own columns: a derived column is often a temporary (a lower-cased
    # key), and a million-row one is 13 MB that validation's peak need not carry. Its entry goes when it does.
    derived_cache = cache.setdefault("derived", {})
    key = id(values)
    derived_cache[key] = (weakref.ref(values), _small(inner[codes], len(kept)), kept)
    weakref.finalize(values, derived_cache.pop, key, None)


def _remembered(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if values.ndim != 1 or values.flags.writeable:
        return None
    return _KNOWN.get(_key(values))


@contextmanager
def shared_factorization(*frames: pd.DataFrame):
    """Within this block, the distinct values of the columns of ``frames`` are found once."""
    columns = {id(frame[c].values): frame[c].values for frame in frames for c in frame.columns
               if isinstance(frame[c].values, np.ndarray)}
    token = _CACHE.set({"columns": columns})
    try:
        yield
    finally:
        _CACHE.reset(token)


def _small(codes: np.ndarray, n: int) -> np.ndarray:
    """Codes in the narrowest integer type that holds ``n`` values (a million visits: 2 MB, not 8)."""
    for t in (np.int8, np.int16, np.int32):
        if n <= np.iinfo(t).max:
            return codes.astype(t)
    return codes


def distinct(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct values in order of appearance) of ``s``; a missing value is a value."""
    values = s.values
    if isinstance(values, np.ndarray) and (known := _remembered(values)) is not None:
        return known
    cache = _CACHE.get()
    if cache is not None and (derived := cache.get("derived", {}).get(id(values))) is not None \
            and derived[0]() is values:
        return derived[1], derived[2]
    if cache is None or cache["columns"].get(id(values)) is not values:
        return pd.factorize(values, use_na_sentinel=False)
    hit = cache.get(id(values))
    if hit is None:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        cache[id(values)] = hit = (_small(codes, len(uniques)), uniques)
    return hit
