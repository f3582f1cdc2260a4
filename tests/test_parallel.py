"""Fitting on several processes (analytics.parallel): the same results as one process, errors
raised as they would be, nothing lost when a worker dies, and the command line's --jobs."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics.cli import main
from analytics.parallel import AUTO_MAX_VISITS, fit_parallel, usable_workers

from .procs import descendants, running

ROOT = Path(__file__).resolve().parents[1]
fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
PARENT = os.getpid()


def _square(x):
    return x * x


@fork
def test_results_come_back_in_order_whoever_fitted_them():
    got = fit_parallel(list(range(12)), _square, workers=2)
    assert [r for r, _ in got] == [x * x for x in range(12)]
    assert all(s >= 0 for _, s in got)


def _fails_on_seven(x):
    if x == 7:
        raise ValueError(f"bad item {x}")
    return x


@fork
def test_an_error_is_raised_as_in_one_process():
    with pytest.raises(ValueError, match="bad item 7"):
        fit_parallel(list(range(10)), _fails_on_seven, workers=2)


def _child_dies(x):
    if os.getpid() != PARENT:
        os._exit(9)  # a worker killed (out of memory, a signal) in the middle of its first item
    return -x


@fork
def test_a_worker_that_dies_loses_nothing():
    assert [r for r, _ in fit_parallel(list(range(6)), _child_dies, workers=2)] == [0, -1, -2, -3, -4, -5]


def _unpicklable_in_child(x):
    return (lambda: x) if os.getpid() != PARENT else x


@fork
def test_a_result_that_cannot_be_sent_is_fitted_by_the_caller():
    assert [r for r, _ in fit_parallel(list(range(6)), _unpicklable_in_child, workers=2)] == list(range(6))


@fork
def test_the_automatic_choice(monkeypatch):
    import threading

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert usable_workers(None, 1000) == min(2, cores)
    assert usable_workers(None, AUTO_MAX_VISITS + 1) == 1  # a large export: one process (memory)
    assert usable_workers(3, 10 ** 9) == 3 and usable_workers(0) == 1
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # a server's or a notebook's threads
    assert usable_workers(None, 1000) == 1 and usable_workers(2, 1000) == 2


def _results(folder: Path) -> dict:
    d = json.loads((folder / "results.json").read_text())
    d.pop("timings_s")
    return d


@fork
def test_analyze_gives_the_same_outputs_on_one_and_two_processes(tmp_path, sample_dir, capsys):
    visits, therapies = sample_dir / "visits.csv", sample_dir / "therapies.csv"
    outs, printed = {}, {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        assert main(["analyze", str(visits), "--therapies", str(therapies), "--jobs", jobs, "--out", str(out)]) == 0
        outs[jobs] = out
        printed[jobs] = capsys.readouterr().out.replace(str(out), "OUT")
    assert _results(outs["1"]) == _results(outs["2"])
    # the summary: on two processes the helper's processes send each analysis's lines (Rendered)
    assert printed["1"] == printed["2"] and "Mixed model (" in printed["2"]
    for name in ("lines.csv", "trajectories.csv", "attrition.csv"):
        assert (outs["1"] / name).read_bytes() == (outs["2"] / name).read_bytes()


def test_jobs_below_one_is_refused(tmp_path, sample_dir, capsys):
    code = main(["analyze", str(sample_dir / "visits.csv"), "--jobs", "0", "--out", str(tmp_path / "o")])
    assert code == 2 and "--jobs 0" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_the_command_exits_with_its_code_after_a_fast_exit(tmp_path, sample_dir):
    """``cdasi-outcomes analyze`` ends with os._exit: every file is complete and the exit code and
    the printed summary survive it; on two processes every analysis reports its progress once."""
    exe = Path(sys.executable).with_name("cdasi-outcomes")
    if not exe.exists():
        pytest.skip("the console script is not installed")
    out = tmp_path / "o"
    proc = subprocess.run([str(exe), "analyze", str(sample_dir / "visits.csv"), "--therapies",
                           str(sample_dir / "therapies.csv"), "--jobs", "2", "--out", str(out)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert proc.returncode == 0, proc.stderr
    from analytics.registry import entries

    for e in entries():  # the progress of each analysis, printed once by whichever process fitted it
        assert proc.stderr.count(f"  {e.title}...\n") == 1, (e.title, proc.stderr)
    assert "lines derived" in proc.stdout and str(out / "results.json") in proc.stdout
    assert json.loads((out / "results.json").read_text())["lines"]["derived"] > 0
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,visit_day,cdasi_activity\nP1,0,banana\n")
    proc = subprocess.run([str(exe), "analyze", str(bad), "--out", str(tmp_path / "b")], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert proc.returncode == 1 and "INVALID" in proc.stderr and not (tmp_path / "b").exists()


# A helper forked before the data are read (analytics.parallel.Helper): it and its forks fit,
# this process only receives; whatever goes wrong falls back to the behaviour above.

def _pid_and_square(x):
    return os.getpid(), x * x


@fork
def test_a_helper_and_its_fork_fit_and_this_process_only_receives():
    from analytics.parallel import Helper

    helper = Helper("json", 2)
    got = fit_parallel(list(range(12)), _pid_and_square, 2, helper=helper)
    assert [r[1] for r, _ in got] == [x * x for x in range(12)]
    assert PARENT not in {r[0] for r, _ in got}
    helper.process.join(timeout=10)
    assert not helper.process.is_alive()


@fork
def test_an_unused_helper_ends_when_closed():
    from analytics.parallel import Helper

    helper = Helper("json", 2)
    helper.close()
    helper.process.join(timeout=10)
    assert not helper.process.is_alive()
    helper.close()  # twice: nothing


@fork
def test_work_that_does_not_pickle_is_fitted_without_the_helper():
    from analytics.parallel import Helper

    helper = Helper("json", 2)
    got = fit_parallel(list(range(6)), lambda x: -x, 2, helper=helper)  # a lambda does not pickle
    assert [r for r, _ in got] == [0, -1, -2, -3, -4, -5]
    helper.process.join(timeout=10)
    assert not helper.process.is_alive()


@fork
def test_a_helper_that_died_before_the_work_loses_nothing():
    from analytics.parallel import Helper

    helper = Helper("json", 2)
    helper.process.kill()
    helper.process.join(timeout=10)
    assert [r for r, _ in fit_parallel(list(range(6)), _square, 2, helper=helper)] == [0, 1, 4, 9, 16, 25]


def _helper_fork_dies_on_three(x):
    if x == 3 and os.getpid() != PARENT:
        os._exit(9)
    return -x


@fork
def test_a_helper_process_that_dies_mid_item_loses_nothing():
    from analytics.parallel import Helper

    helper = Helper("json", 2)
    got = fit_parallel(list(range(8)), _helper_fork_dies_on_three, 2, helper=helper)
    assert [r for r, _ in got] == [0, -1, -2, -3, -4, -5, -6, -7]


@fork
def test_meanwhile_runs_here_while_the_others_fit():
    from analytics.parallel import Helper

    ran = []
    for helper in (Helper("json", 2), None):
        got = fit_parallel(list(range(4)), _square, 2, helper=helper, meanwhile=lambda: ran.append(os.getpid()))
        assert [r for r, _ in got] == [0, 1, 4, 9]
    assert ran == [PARENT, PARENT]


def test_no_helper_for_one_process():
    from analytics.parallel import Helper

    assert Helper.start("json", 1, 1000) is None


@fork
def test_analyze_leaves_only_its_outputs_and_nothing_when_a_model_fails(tmp_path, sample_dir, monkeypatch, capsys):
    """The line tables are written while the models are fitted, into a staging folder moved into
    place at the end; when a model fails, neither they nor the folder stay."""
    visits, therapies = sample_dir / "visits.csv", sample_dir / "therapies.csv"
    out = tmp_path / "o"
    assert main(["analyze", str(visits), "--therapies", str(therapies), "--jobs", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["attrition.csv", "lines.csv", "results.json", "trajectories.csv"]

    import analytics.stats.competing as competing

    def boom(*args, **kwargs):
        raise RuntimeError("competing risks failed")

    monkeypatch.setattr(competing, "fit_competing", boom)  # in this process and in the helper, forked after
    for jobs in ("1", "2"):
        failed = tmp_path / f"failed{jobs}"
        assert main(["analyze", str(visits), "--therapies", str(therapies), "--jobs", jobs, "--out", str(failed)]) == 3
        assert "competing risks failed" in capsys.readouterr().err
        assert not failed.exists() or not any(failed.iterdir())


def test_no_helper_when_the_export_is_large_or_cannot_be_sized(tmp_path):
    from analytics.parallel import BYTES_PER_VISIT, Helper

    assert Helper.start("json", 2, None) is None  # the size is unknown: no copy of unknown size
    assert Helper.start("json", 2, AUTO_MAX_VISITS + 1) is None  # even with --jobs 2
    big = tmp_path / "visits.csv"
    big.write_bytes(b"x" * 10)
    assert Helper.visits_in(big) == 10 // BYTES_PER_VISIT and Helper.visits_in(tmp_path / "none.csv") is None


@fork
def test_the_helper_ends_with_its_parent():
    """A parent that exits without closing its helper (os._exit after `analyze`, a kill) leaves no
    process behind: the helper sees its job pipe close and ends."""
    import time

    script = ("import os\nfrom analytics.parallel import Helper\nh = Helper('json', 2)\n"
              "print(h.process.pid, flush=True)\nos._exit(0)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # a zombie of ours counts as gone: it is not our child, so this only matters for init
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.1)
    raise AssertionError(f"helper {pid} still running 30 s after its parent exited")


@fork
def test_a_helper_that_cannot_be_forked_is_no_helper(monkeypatch):
    import multiprocessing.process

    from analytics.parallel import Helper

    def refuse(self):
        raise OSError(11, "Resource temporarily unavailable")  # what fork says at a process limit

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    assert Helper.start("json", 2, 1000) is None


@fork
def test_with_a_helper_this_process_does_not_import_the_modelling_libraries(tmp_path, sample_dir):
    """The helper's processes send results.json's sections (Rendered), not results holding
    lifelines and statsmodels objects: unpickling those would import the libraries here, about
    1 s of a core while the others fit."""
    code = ("import sys; from analytics.cli import main; rc = main(sys.argv[1:]); "
            "print('HEAVY', sorted(m for m in ('lifelines', 'statsmodels', 'patsy', 'plotly') if m in sys.modules)); "
            "sys.exit(rc)")
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-c", code, "analyze", str(sample_dir / "visits.csv"), "--therapies",
                           str(sample_dir / "therapies.csv"), "--jobs", "2", "--out", str(out)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
    assert json.loads((out / "results.json").read_text())["mixed_model"]["converged"] is True


def test_a_rendered_result_places_as_the_result_does(sample_dir):
    """Every built-in analysis: results.json built from Rendered forms (sent by a helper's
    processes) is the document built from the results, and its summary lines are the same."""
    import pickle

    from analytics.pipeline import analyze, load
    from analytics.registry import Rendered, entries, place

    prepared, _ = load(sample_dir / "visits.csv", therapies=sample_dir / "therapies.csv")
    models = analyze(prepared, models=True).models
    direct, rendered = {}, {}
    for e in entries():
        if e.name not in models:
            continue
        result = models[e.name]
        r = Rendered.of(e, result)
        r = pickle.loads(pickle.dumps(r))  # as if sent: nothing shared with the result
        place(direct, e, result)
        r.place(rendered, e)
        assert r.cli == (list(e.cli(result)) if e.cli else None)
    assert json.dumps(rendered, sort_keys=True, default=str) == json.dumps(direct, sort_keys=True, default=str)


@fork
def test_sigterm_during_analyze_cleans_up_like_ctrl_c(tmp_path, sample_dir):
    """A service manager's stop (SIGTERM) while the models are fitted: the command exits 143, its
    staging folder is gone, no results.json is written, and its helper processes end."""
    import signal
    import time

    exe = Path(sys.executable).with_name("cdasi-outcomes")
    if not exe.exists():
        pytest.skip("the console script is not installed")
    out = tmp_path / "o"
    proc = subprocess.Popen([str(exe), "analyze", str(sample_dir / "visits.csv"), "--therapies",
                             str(sample_dir / "therapies.csv"), "--jobs", "2", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".cdasi-partial-*")):  # the line tables are being written: the models are fitting
        assert proc.poll() is None and time.monotonic() < deadline, "the command ended before it could be stopped"
        time.sleep(0.005)
    helpers = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert not list(out.glob(".cdasi-partial-*")) and not (out / "results.json").exists()
    deadline = time.monotonic() + 30
    while any(running(pid) for pid in helpers):
        assert time.monotonic() < deadline, f"helper processes still running: {helpers}"
        time.sleep(0.05)


def _pid_and_sigterm_default(x):
    import signal
    import time

    time.sleep(0.2)  # long enough that the forked worker takes items too
    return os.getpid(), signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@fork
def test_a_worker_ends_when_terminated_whatever_handler_its_parent_set():
    """`analyze` makes SIGTERM raise in its own process (to clean up); the workers it forks
    restore the default, so that terminating them (after an error or Ctrl-C) ends them at once
    instead of raising inside a fit they would report and go on from."""
    import signal

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        got = [r for r, _ in fit_parallel(list(range(6)), _pid_and_sigterm_default, 2)]
    finally:
        signal.signal(signal.SIGTERM, previous)
    in_workers = [default for pid, default in got if pid != os.getpid()]
    assert in_workers and all(in_workers)
    assert not any(default for pid, default in got if pid == os.getpid())  # this process keeps its handler
