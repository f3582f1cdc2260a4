"""The command line starts at once and the server stops when told (issue 13, points 4 and 5).

- `--help`, `validate` and `sample` import no modelling or plotting library (statsmodels,
  lifelines, plotly, kaleido, scipy, patsy, streamlit); the time they take lives in
  benchmarks/bench_targets.py, never in a test.
- `cdasi-outcomes dashboard` becomes the Streamlit server (exec, through dashboard.serve, which
  preloads what the first page imports): SIGTERM to the process that
  was started, as a service manager or `docker stop` sends it, stops the server and frees its port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .browser import free_port, running_dashboard
from .conftest import ROOT

HEAVY = ("statsmodels", "lifelines", "plotly", "kaleido", "scipy", "patsy", "streamlit", "matplotlib", "sklearn")


def _modules_after(argv: list[str], cwd: Path) -> list[str]:
    """The heavy top-level packages loaded once `cdasi-outcomes ARGV` has run, in a fresh interpreter."""
    code = ("import contextlib, io, json, sys\n"
            "from analytics.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try:\n"
            f"        rc = main({argv!r})\n"
            "    except SystemExit as exc:\n"
            "        rc = exc.code\n"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
            "print(json.dumps({'rc': rc, 'heavy': heavy}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rc"] in (0, None), (argv, got, out.stderr)
    return got["heavy"]


def test_help_imports_no_modelling_or_plotting_module():
    assert _modules_after(["--help"], ROOT) == []
    for command in ("analyze", "report", "dashboard", "validate"):
        assert _modules_after([command, "--help"], ROOT) == [], command


def test_validate_and_sample_import_no_modelling_or_plotting_module(tmp_path, sample_dir):
    assert _modules_after(["validate", str(sample_dir / "visits.csv"), "--therapies",
                           str(sample_dir / "therapies.csv")], tmp_path) == []
    assert _modules_after(["sample", "--patients", "30", "--seed", "3", "--out", str(tmp_path / "s")], tmp_path) == []
    assert (tmp_path / "s" / "visits.csv").stat().st_size > 0


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_dashboard_stops_on_a_signal_and_frees_its_port(tmp_path, sig):
    """The signal goes to the one process that was started (not to its group, as a test's teardown
    would send it): that process is the server, so the port closes and nothing is left behind."""
    port = free_port()
    with running_dashboard(port, tmp_path / "dashboard.log", pid_out=(started := [])):
        pid = started[0]
        assert _port_open(port)
        os.kill(pid, sig)
        deadline = time.monotonic() + 30
        while _port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _port_open(port), f"port {port} still answers after {sig.name}"
        waited = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        assert waited.strip() == "", f"children left behind: {waited}"


def test_the_dashboard_loads_the_modelling_libraries_after_its_first_page(tmp_path):
    """The first run draws the Data page, then starts one background import of the modelling and
    plotting modules (once per server), so the first page that fits a model does not wait 1.5 s
    or more for lifelines, scipy and statsmodels to load."""
    code = ("import logging, sys\n"
            "logging.getLogger('streamlit').setLevel(logging.ERROR)\n"
            "from streamlit.testing.v1 import AppTest\n"
            "from dashboard import state\n"
            "before = [m for m in state.WARM_UP if m in sys.modules]\n"
            f"at = AppTest.from_file({str(ROOT / 'dashboard' / 'app.py')!r}, default_timeout=300).run()\n"
            "assert not at.exception, [e.value for e in at.exception]\n"
            "thread = state.warm_up()  # the server's thread, started by that run (cached once per process)\n"
            "thread.join(120)\n"
            "at.run()\n"
            "missing = [m for m in state.WARM_UP if m not in sys.modules]\n"
            "print(thread.name, state.warm_up() is thread, len(before), missing)\n")
    env = dict(os.environ, CDASI_DB=f"sqlite:///{tmp_path / 'library.sqlite'}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=600, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-3000:]
    name, same, before, missing = out.stdout.strip().splitlines()[-1].split(" ", 3)
    assert name == "cdasi-warm-up" and same == "True" and missing == "[]", out.stdout
    assert before == "0"  # nothing of it was loaded before the app ran


def test_the_server_process_preloads_the_first_pages_modules_and_is_streamlits_command_line():
    """`dashboard` runs `python -m dashboard.serve run app.py ...`: Streamlit's own command line,
    in a process that imports what the Data page needs while the server starts (so the first
    visitor does not wait for it). The preload imports every module it names."""
    from analytics.cli import build_parser, dashboard_command

    cmd = dashboard_command(build_parser().parse_args(["dashboard"]))
    assert cmd[1:4] == ["-m", "dashboard.serve", "run"]
    # Five starts: the preload thread once raced plotly's look-up of a half-imported pandas, and one
    # start in a few failed ("partially initialized module 'pandas'"); pandas is now imported first.
    for _ in range(5):
        version = subprocess.run([sys.executable, "-m", "dashboard.serve", "version"], capture_output=True,
                                 text=True, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
        assert version.returncode == 0 and "Streamlit, version" in version.stdout, version.stderr[-2000:]
    code = ("import sys\nfrom dashboard.serve import FIRST, PRELOAD, preload\npreload()\n"
            "print([m for m in PRELOAD if m not in sys.modules] + [m for m in FIRST if m not in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr[-2000:])
