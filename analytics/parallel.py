"""Fitting the registered analyses on more than one core.

The analyses of one run are independent of each other, so ``fit_all(ctx, workers=2)`` runs them
in the calling process and in ``workers - 1`` forked children at once. Each process takes the
next analysis from one shared counter (registry order), so a slow analysis on one core does not
hold up the rest; a child sends each result back pickled. The children are forked after the
data are loaded and derived, so they share them copy-on-write instead of reading them again.

Used by the command line (``analyze`` and ``report``, ``--jobs``; by default two processes on
a machine with two cores or more, one above :data:`AUTO_MAX_VISITS` visits). The dashboard fits
in its own process (a forked copy of a threaded web server is not safe), and so does any
platform without ``fork``: :func:`usable_workers` says 1 there.

Failures keep the serial behaviour: an analysis that raises in a child raises the same exception
in the caller; a child that dies (killed, out of memory) loses nothing, because the caller fits
every analysis the child took but did not deliver.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import threading
import time
import traceback
from typing import Any, Callable


# Above this many visits the automatic choice is one process: at 100,000 patients (1 million
# visits) a second process added 0.4-0.6 GB and saved little time, because the largest fits
# (the mixed model's linear algebra, Arrow and pandas kernels) already use both cores.
AUTO_MAX_VISITS = 250_000


def usable_workers(requested: int | None, visits: int | None = None) -> int:
    """The number of processes to fit with: ``requested``, at least 1; None chooses: one per
    core, at most 2, or 1 above :data:`AUTO_MAX_VISITS` visits or when this process runs other
    threads (a notebook's, a server's). Always 1 where processes cannot be forked."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if requested is None:
        if visits is not None and visits > AUTO_MAX_VISITS:
            return 1
        if threading.active_count() > 1:  # another thread may hold a lock that a forked copy would keep
            return 1
        requested = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return max(1, int(requested))


def _child(todo, counter, conn, fit: Callable[[Any], Any]) -> None:
    """A forked worker: fit analyses from the shared counter until none is left; send
    ``(index, ok, payload, seconds)`` for each, then ``None``."""
    try:
        for i in _claims(counter, len(todo)):
            t0 = time.perf_counter()
            try:
                payload, ok = fit(todo[i]), True
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                payload, ok = _portable(exc), False
            try:
                conn.send_bytes(pickle.dumps((i, ok, payload, time.perf_counter() - t0), protocol=5))
            except Exception as exc:  # an unpicklable result: the caller fits this one itself
                conn.send_bytes(pickle.dumps((i, None, f"{type(exc).__name__}: {exc}", 0.0)))
        conn.send_bytes(pickle.dumps(None))
    finally:
        conn.close()


def _receive(conn, done: dict) -> None:
    """Put a child's results into ``done`` until it says it has finished or dies (EOF: what it
    claimed and did not send is fitted by the caller)."""
    try:
        while True:
            try:
                message = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                return
            if message is None:
                return
            i, ok, payload, seconds = message
            if ok is not None:
                done[i] = (ok, payload, seconds)
    finally:
        conn.close()


def _claims(counter, n: int):
    while True:
        with counter.get_lock():
            i = counter.value
            counter.value += 1
        if i >= n:
            return
        yield i


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, otherwise a RuntimeError that carries its traceback."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}")


def fit_parallel(todo: list, fit: Callable[[Any], Any], workers: int) -> list[tuple[Any, float]]:
    """``[(fit(item), seconds) for item in todo]``, computed by this process and ``workers - 1``
    forked children. Raises what ``fit`` raised for the first failing item (in ``todo`` order)."""
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("l", 0)
    children = []
    done: dict[int, tuple[bool, Any, float]] = {}
    sys.stdout.flush()
    sys.stderr.flush()
    pipes = []
    for _ in range(max(0, min(workers, len(todo)) - 1)):  # every fork before any thread of ours starts
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(todo, counter, send, fit), daemon=True)
        proc.start()
        send.close()
        pipes.append((proc, receive))
    for proc, receive in pipes:
        # a thread empties the pipe as results arrive: a child blocked on a full pipe would stop fitting
        reader = threading.Thread(target=_receive, args=(receive, done), name="cdasi-fit-results", daemon=True)
        reader.start()
        children.append((proc, reader))
    try:
        for i in _claims(counter, len(todo)):
            t0 = time.perf_counter()
            try:
                done[i] = (True, fit(todo[i]), time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - raised below, in todo order (Ctrl-C stops at once)
                done[i] = (False, exc, 0.0)
        for proc, reader in children:
            reader.join()
            proc.join()
    except BaseException:
        for proc, _ in children:
            proc.terminate()
        raise
    for i in range(len(todo)):
        if i not in done:  # claimed by a child that died, or a result that could not be sent
            t0 = time.perf_counter()
            try:
                done[i] = (True, fit(todo[i]), time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001
                done[i] = (False, exc, 0.0)
    out = []
    for i in range(len(todo)):
        ok, payload, seconds = done[i]
        if not ok:
            raise payload
        out.append((payload, seconds))
    return out


def import_package(name: str) -> None:
    """Import every module of package ``name`` (what the analyses import: lifelines, statsmodels,
    scipy), so that forked workers inherit the modules instead of each importing them again.
    A module that fails to import is left to the analysis that needs it, which reports the error."""
    import importlib
    import pkgutil

    package = importlib.import_module(name)
    for info in pkgutil.iter_modules(package.__path__):
        try:
            importlib.import_module(f"{name}.{info.name}")
        except Exception:  # noqa: BLE001
            pass
