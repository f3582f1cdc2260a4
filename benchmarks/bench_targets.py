"""Benchmark of issue 13's figures at 400, 10,000 and 100,000 patients, each against its baseline
(the measurements in the issue, made before the work) and its target. Prints a table; asserts
nothing. Every command runs in a fresh process, timed by the wall clock, with its own peak memory
(os.wait4, or the proportional sum over its child processes if larger); the synthetic cohorts
are made once and kept in the system's temporary folder.

    .venv/bin/python benchmarks/bench_targets.py [--patients 400 10000 100000] [--repeats 3]
                                                 [--skip dashboard report]

- CLI start: `cdasi-outcomes --help` against a bare `python -c "import pandas"` (medians).
- Meeting pack: `cdasi-outcomes report` wall time and size, and the 10,000 / 400 ratio.
- `cdasi-outcomes analyze`: wall time (median, fastest and slowest of ``--repeats`` runs, at every
  size: at 100,000 patients one run can differ from the next by a fifth, mostly in the kernel's
  time) and peak memory.
- Dashboard (Streamlit's AppTest on a cohort, in a process that has imported what
  :mod:`dashboard.serve` imports while the real server starts): the app's first run and every
  page's first visit, clicked at once, and again after ``--think`` seconds on the first page (the
  modelling libraries load in the background meanwhile, as they do while a user reads it); medians
  of ``--repeats`` fresh processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).with_name("cdasi-outcomes"))
COHORTS = Path(tempfile.gettempdir()) / "cdasi-bench-cohorts"
PAGES = ["cohort", "trajectories", "time_to_response", "mixed_model", "timeline", "scheme", "quality", "analyses", "summary",
         "report"]

# (what, patients) -> (baseline, target, unit); the baselines are issue 13's table, measured before
# the work on this 2-core machine (None: not measured then).
BASELINES = {
    ("cli --help / import pandas", None): (4.0, 1.5, "x"),
    ("report, wall", 400): (16.4, None, "s"),
    ("report, size", 400): (69, None, "MB"),
    ("report, wall", 10_000): (44.0, None, "s"),
    ("report, size", 10_000): (93, 25, "MB"),
    ("report 10,000 / 400", None): (44.0 / 16.4, 1.5, "x"),
    ("analyze, wall", 10_000): (6.6, 3.0, "s"),
    ("analyze, wall", 100_000): (53.0, 20.0, "s"),
    ("analyze, peak memory", 100_000): (1000, 1000, "MB"),
    ("dashboard, app open", 10_000): (7.3, 3.0, "s"),
    ("dashboard, first visit trajectories", 10_000): (8.9, 2.0, "s"),
    ("dashboard, first visit time_to_response", 10_000): (1.6, 2.0, "s"),
}


def cohort(n: int) -> dict[str, Path]:
    """The synthetic cohort of ``n`` patients (seed 7), made once."""
    folder = COHORTS / f"p{n}-s7"
    if not (folder / "therapies.csv").exists():
        subprocess.run([EXE, "sample", "--patients", str(n), "--seed", "7", "--out", str(folder)], check=True,
                       stdout=subprocess.DEVNULL)
    return {"visits": folder / "visits.csv", "therapies": folder / "therapies.csv"}


def _tree_pss_kb(pid: int) -> int:
    """Proportional resident memory (kB) of ``pid`` and all its descendants, summed (Linux /proc
    smaps_rollup): a page that a forked worker shares with its parent counts once, split
    between them, so the sum is what the process tree takes from the machine."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    children.setdefault(int(fh.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                total += next((int(line.split()[1]) for line in fh if line.startswith("Pss:")), 0)
        except OSError:
            pass
    return total


def timed(cmd: list[str], env: dict | None = None, tree: bool = True) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one command in a fresh process. The peak is the larger
    of the process's own (os.wait4) and, with ``tree``, the proportional sum over it and its child
    processes (``--jobs`` workers, the helper; the pack's Chromium), sampled every 50 ms.

    The sampling slows the command: reading a process's smaps holds its memory-map lock, which
    stalls its page faults, and takes a core of two. ``analyze`` at 10,000 patients measured 6.5 s
    sampled and 4.2 s not. So wall times of ``analyze`` come from runs with ``tree=False``, and
    its memory from a separate sampled run."""
    peak = [0]
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child never blocks on it
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        done = threading.Event()

        def sample():
            while tree and not done.wait(0.05):
                peak[0] = max(peak[0], _tree_pss_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.read().decode()[-2000:]}")
    return wall, max(usage.ru_maxrss, peak[0]) / 1024


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def bench_cli(repeats: int) -> dict:
    pandas = statistics.median(timed([sys.executable, "-c", "import pandas"])[0] for _ in range(repeats))
    help_ = statistics.median(timed([EXE, "--help"])[0] for _ in range(repeats))
    return {("cli --help, wall", None): help_, ("python -c 'import pandas', wall", None): pandas,
            ("cli --help / import pandas", None): help_ / pandas}


def bench_report(n: int, tmp: Path) -> dict:
    c = cohort(n)
    out = tmp / f"pack{n}"
    wall, peak = timed([EXE, "report", str(c["visits"]), "--therapies", str(c["therapies"]), "--out", str(out)])
    stages = json.loads((out / "manifest.json").read_text())["timings_s"]
    res = {("report, wall", n): wall, ("report, size", n): folder_mb(out), ("report, peak memory", n): peak}
    res.update({(f"report, {k}", n): v for k, v in stages.items()})
    return res


def bench_analyze(n: int, tmp: Path, repeats: int) -> dict:
    c = cohort(n)
    cmd = [EXE, "analyze", str(c["visits"]), "--therapies", str(c["therapies"]), "--out", str(tmp / f"a{n}")]
    runs = [timed(cmd, tree=False)[0] for _ in range(repeats)]  # wall, unsampled
    stages = json.loads((tmp / f"a{n}" / "results.json").read_text())["timings_s"]
    res = {("analyze, wall", n): statistics.median(runs),
           ("analyze, wall, fastest", n): min(runs), ("analyze, wall, slowest", n): max(runs),
           ("analyze, peak memory", n): timed(cmd)[1]}  # every process of the command
    res.update({(f"analyze, {k} (in-process)", n): v for k, v in stages.items()})
    return res


DASHBOARD_CHILD = """
import json, logging, os, sys, time
logging.getLogger("streamlit").setLevel(logging.ERROR)
from streamlit.testing.v1 import AppTest
from dashboard.serve import preload
preload()  # what the server process imports while it starts, before any browser opens a session
out = {}
at = AppTest.from_file(sys.argv[1], default_timeout=600)
t0 = time.perf_counter(); at.run(); out["app open"] = time.perf_counter() - t0
assert not at.exception, [e.value for e in at.exception]
time.sleep(float(sys.argv[3]))  # a user reading the first page before the first click
for page in sys.argv[2].split(","):
    at.switch_page(f"views/{page}.py")
    t0 = time.perf_counter(); at.run(); out[f"first visit {page}"] = time.perf_counter() - t0
    assert not at.exception, (page, [e.value for e in at.exception])
print(json.dumps(out))
"""


def bench_dashboard(n: int, think: float = 0.0, repeats: int = 1) -> dict:
    """The app's first run and each page's first visit (medians of ``repeats`` fresh servers)."""
    c = cohort(n)
    env = dict(os.environ, CDASI_VISITS=str(c["visits"]), CDASI_THERAPIES=str(c["therapies"]))
    env.pop("CDASI_MAPPING", None)
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env["CDASI_DB"] = os.environ.get("CDASI_DB") or f"sqlite:///{tmp}/library.sqlite"
            got = subprocess.run([sys.executable, "-c", DASHBOARD_CHILD, str(ROOT / "dashboard" / "app.py"),
                                  ",".join(PAGES), str(think)], capture_output=True, text=True, env=env, cwd=ROOT)
        if got.returncode:
            raise RuntimeError(got.stderr[-3000:])
        runs.append(json.loads(got.stdout.strip().splitlines()[-1]))
    after = f" (after {think:g} s on the first page)" if think else ""
    return {(f"dashboard, {k}{after}", n): statistics.median(r[k] for r in runs) for k in runs[0]
            if not (think and k == "app open")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[400, 10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the short runs (medians)")
    ap.add_argument("--skip", nargs="*", default=[], choices=("cli", "report", "analyze", "dashboard"))
    ap.add_argument("--think", type=float, default=3.0,
                    help="the dashboard is also measured after this many seconds on the first page (0: not)")
    args = ap.parse_args()
    print(machine())
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "cli" not in args.skip:
            res.update(bench_cli(max(5, args.repeats)))
        for n in args.patients:
            print(f"... {n:,} patients", file=sys.stderr, flush=True)
            if "analyze" not in args.skip:
                res.update(bench_analyze(n, Path(tmp), args.repeats))
            if "report" not in args.skip:
                res.update(bench_report(n, Path(tmp)))
            if "dashboard" not in args.skip:
                res.update(bench_dashboard(n, repeats=args.repeats))
                if args.think:
                    res.update(bench_dashboard(n, args.think, repeats=args.repeats))
    if ("report, wall", 400) in res and ("report, wall", 10_000) in res:
        res[("report 10,000 / 400", None)] = res[("report, wall", 10_000)] / res[("report, wall", 400)]
    print(f"| what | patients | now | baseline | now / baseline | target | met |")
    print("|---|---|---|---|---|---|---|")
    for (what, n), value in res.items():
        base, target, unit = BASELINES.get((what, n), (None, None, "MB" if "memory" in what or "size" in what
                                                       else "s"))
        if (what, n) == ("cli --help / import pandas", None) or "/" in what:
            unit = "x"
        met = "" if target is None else ("yes" if value <= target else "**no**")
        print(f"| {what} | {'' if n is None else f'{n:,}'} | {_fmt(value, unit)} | {_fmt(base, unit)} | "
              f"{'' if base is None else f'{value / base:.2f}'} | {_fmt(target, unit)} | {met} |")
    print("\nTimes are wall clock in a fresh process (medians where repeated); memory is the peak resident set.")


def machine() -> str:
    """One line naming the machine: the same code's times differ by a fifth from one machine (or
    one hour) to the next, so a table is only comparable with tables from the same line."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return (f"Machine: {model}, {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}, "
            f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M %Z')}")


def _fmt(v, unit: str) -> str:
    if v is None:
        return ""
    if unit == "MB":
        return f"{v:,.0f} MB" if v >= 100 else f"{v:.1f} MB"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v:.2f} s"


if __name__ == "__main__":
    main()
