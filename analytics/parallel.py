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

The command line goes one step further (:class:`Helper`): it forks the second process before
it reads the export, so that the modelling libraries (lifelines, statsmodels, scipy.stats: about
a second) are imported there while this process reads, checks and derives the data; the data
then reach the helper pickled (0.1 s and 40 MB at 10,000 patients), and it starts fitting while
this process imports the same libraries (unpickling the results needs them) and writes what
does not depend on the models.

Failures keep the serial behaviour: an analysis that raises in a child raises the same exception
in the caller; a child that dies (killed, out of memory) loses nothing, because the caller fits
every analysis the child took but did not deliver.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable


# Above this many visits the automatic choice is one process: at 100,000 patients (1 million
# visits) a second process added 0.4-0.6 GB and saved little time, because the largest fits
# (the mixed model's linear algebra, Arrow and pandas kernels) already use both cores.
AUTO_MAX_VISITS = 250_000

# Bytes per visit row of a CSV export, at the low end (the synthetic exports have 156, a real
# export with more columns has more): the file's size divided by this over-counts its visits.
BYTES_PER_VISIT = 120


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
    try:  # terminated, a worker ends at once, whatever handler the process it was forked from set
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # not the main thread
        pass
    try:
        for i in _claims(counter, len(todo)):
            t0 = time.perf_counter()
            try:
                payload, ok = fit(todo[i]), True
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                payload, ok = _portable(exc), False
            try:
                message = pickle.dumps((i, ok, payload, time.perf_counter() - t0), protocol=5)
            except Exception as exc:  # an unpicklable result: the caller fits this one itself
                message = pickle.dumps((i, None, f"{type(exc).__name__}: {exc}", 0.0))
            conn.send_bytes(message)
        conn.send_bytes(pickle.dumps(None))
    except OSError:  # the caller is gone or gave up (it closed its end): nobody left to fit for
        return
    finally:
        conn.close()


def _helper(package: str, jobs, sends: list, counter, unused: list) -> None:
    """The helper process: import ``package``, wait for one job ``(todo, fit, processes)``, fork
    ``processes - 1`` copies of itself (which share the data copy-on-write), and fit from the
    shared counter in each, every process sending on its own pipe of ``sends``. The end of the
    job pipe without a job (the parent closed it, or exited) ends the helper."""
    for conn in unused:  # the parent's ends, inherited by the fork: EOF must reach us when it closes its own
        conn.close()
    try:
        import_package(package)
        try:
            todo, fit, processes = pickle.loads(jobs.recv_bytes())
        except (EOFError, OSError):
            return
        finally:
            jobs.close()
        sys.stdout.flush()
        sys.stderr.flush()
        forks = []
        for k in range(1, min(processes, len(sends))):
            pid = os.fork()  # not multiprocessing: a daemonic process may not start Process children
            if pid == 0:
                code = 1
                try:
                    for j, conn in enumerate(sends):
                        if j != k:
                            conn.close()
                    _child(todo, counter, sends[k], fit)
                    code = 0
                finally:
                    os._exit(code)
            forks.append(pid)
        for conn in sends[1:]:
            conn.close()  # the forks' pipes (and the unused ones: the parent sees their end at once)
    except BaseException:
        for conn in sends:
            conn.close()
        raise
    try:
        _child(todo, counter, sends[0], fit)
    finally:
        for pid in forks:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


class Helper:
    """Worker processes forked before the export is read (see the module's docstring).

    ``Helper.start("analytics.stats", workers)`` forks one process, which imports every module of
    the package at once; :func:`fit_parallel` (``helper=``) hands it the work, and it forks the
    other ``workers - 1`` then. :meth:`close` (or this process's exit) ends an unused helper.
    Where processes cannot be forked, or one process is to fit, :meth:`start` returns None."""

    def __init__(self, package: str, processes: int = 2):
        ctx = multiprocessing.get_context("fork")
        self.counter = ctx.Value("l", 0)
        jobs_receive, self._jobs = ctx.Pipe(duplex=False)
        pipes = [ctx.Pipe(duplex=False) for _ in range(max(1, processes))]
        self.results = [receive for receive, _ in pipes]
        sends = [send for _, send in pipes]
        sys.stdout.flush()
        sys.stderr.flush()
        self.process = ctx.Process(target=_helper, name="cdasi-fit-helper", daemon=True,
                                   args=(package, jobs_receive, sends, self.counter, [self._jobs, *self.results]))
        self.process.start()
        jobs_receive.close()
        for send in sends:
            send.close()
        self.submitted = False

    @classmethod
    def start(cls, package: str, workers: int | None = None, visits: int | None = None) -> "Helper | None":
        """Helpers for :func:`usable_workers` processes (``workers``, ``visits``: the expected
        number of visits) when that is two or more and the export is not expected to hold more
        than :data:`AUTO_MAX_VISITS` visits (the data are sent to the helper as a copy; above
        that, forked children share them instead); otherwise, or when the fork fails, None."""
        if visits is None or visits > AUTO_MAX_VISITS:
            return None
        processes = usable_workers(workers, visits)
        if processes < 2:
            return None
        try:
            return cls(package, processes)
        except OSError:  # no process could be forked (a limit on processes or memory): fit here
            return None

    @staticmethod
    def visits_in(path) -> int | None:
        """The visits a plain-text export of this size would hold (:data:`BYTES_PER_VISIT`), as
        the guess that decides whether to start a helper before the export is read; None for a
        file that cannot be sized. A wrong guess costs little: the real count decides whether
        the helper is used, and an unused one is closed."""
        try:
            return os.path.getsize(path) // BYTES_PER_VISIT
        except (OSError, TypeError, ValueError):
            return None

    def submit(self, todo: list, fit: Callable[[Any], Any], processes: int) -> bool:
        """Send the work, to be fitted on ``processes`` processes (at most as many as the helper
        was started for); False (and the helper is closed) when it cannot be sent: ``fit`` or an
        item does not pickle, or the helper has died."""
        if self.submitted or self._jobs.closed:
            return False
        try:
            message = pickle.dumps((todo, fit, processes), protocol=5)
            self._jobs.send_bytes(message)
        except Exception:  # noqa: BLE001 - the caller fits without the helper
            self.close()
            return False
        self.submitted = True
        self._jobs.close()
        return True

    def close(self, stop: bool = False) -> None:
        """End the helper at once if it has no work (it may still be importing), or, with
        ``stop`` (the caller gives up: an error, SIGTERM), even if it has; idempotent. A fork of
        the helper that is fitting ends when it next sends (the pipe is closed)."""
        if not self._jobs.closed:
            self._jobs.close()
        if not self.submitted or stop:
            if not self.submitted:  # once submitted, the threads reading them close them
                for conn in self.results:
                    conn.close()
            if self.process.is_alive():
                self.process.terminate()
            self.process.join(timeout=5)


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


def fit_parallel(todo: list, fit: Callable[[Any], Any], workers: int, helper: Helper | None = None,
                 prepare: Callable[[], None] | None = None,
                 meanwhile: Callable[[], None] | None = None) -> list[tuple[Any, float]]:
    """``[(fit(item), seconds) for item in todo]``, computed on ``workers`` processes at once.

    Without ``helper`` (or when it cannot take the work), this process and ``workers - 1`` forked
    children fit. With a :class:`Helper`, the helper and its forks fit (``todo`` and ``fit`` must
    pickle), and this process only receives their results. ``prepare`` runs here before this
    process forks its own children (imports that they then share; not when the helper fits);
    ``meanwhile`` runs here while the others fit (writing what does not depend on the results). Whatever a
    process took but did not deliver (it died, or the result did not pickle) is fitted here at
    the end. Raises what ``fit`` raised for the first failing item (in ``todo`` order)."""
    ctx = multiprocessing.get_context("fork")
    children = []
    done: dict[int, tuple[bool, Any, float]] = {}
    pipes = []
    own = True
    if helper is not None and workers > 1 and len(todo) > 1 and helper.submit(todo, fit, workers):
        counter = helper.counter
        pipes = [(helper.process if k == 0 else None, receive) for k, receive in enumerate(helper.results)]
        own = False
    else:
        if helper is not None:
            helper.close()
        counter = ctx.Value("l", 0)
    if prepare is not None and own:
        prepare()
    sys.stdout.flush()
    sys.stderr.flush()
    for _ in range(max(0, min(workers, len(todo)) - 1) if own else 0):  # every fork before any thread of ours starts
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
        if meanwhile is not None:
            meanwhile()
        for i in _claims(counter, len(todo)) if own else ():
            t0 = time.perf_counter()
            try:
                done[i] = (True, fit(todo[i]), time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - raised below, in todo order (Ctrl-C stops at once)
                done[i] = (False, exc, 0.0)
        for proc, reader in children:
            reader.join()
            if proc is not None:
                proc.join()
    except BaseException:
        for proc, _ in children:
            if proc is not None:
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
