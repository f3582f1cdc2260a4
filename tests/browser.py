"""Drive the real dashboard in headless Chromium (Playwright with Debian's chromium).

Used by tests/test_browser.py and docs/make_screenshots.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PAGES = [("", "data", None), ("cohort", "cohort", None), ("trajectories", "trajectories", ".js-plotly-plot"),
         ("time_to_response", "time_to_response", ".js-plotly-plot"), ("mixed_model", "mixed_model", ".js-plotly-plot"),
         ("timeline", "timeline", ".js-plotly-plot"), ("scheme", "scheme", ".js-plotly-plot"),
         ("quality", "quality", ".js-plotly-plot"),
         ("report", "report", None)]
# Flags for a root, offline machine: no sandbox, and no background connections to the closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def need_chromium() -> None:
    """Skip a test without a Chromium; on CI, where `make test` installs one, fail instead."""
    import pytest

    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium: make test installs it with apt-get")
        pytest.skip("no chromium on this machine: apt-get install chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_dashboard(port: int, log: Path, args: tuple[str, ...] = (), pid_out: list | None = None):
    """Start `cdasi-outcomes dashboard --port N` and wait until it answers its health check
    (``pid_out``: a list that gets the started process's id)."""
    exe = Path(sys.executable).with_name("cdasi-outcomes")
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(exe), "dashboard", *args, "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        if pid_out is not None:
            pid_out.append(proc.pid)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start:\n{log.read_text()}")
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


def wait_until_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait for Streamlit to finish running the script (its status widget disappears)."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=timeout_ms)
    page.wait_for_selector("h1", timeout=timeout_ms)  # every page starts with its title
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout_ms)
    page.wait_for_timeout(800)


def download(page, button, attempts: int = 3, timeout_ms: int = 40_000) -> Path:
    """Click a Streamlit download button and return the downloaded file's path. A download whose
    click lands while the script is rerunning asks for a deferred file Streamlit has just dropped,
    and no download comes (a race seen in CI, not a defect of the page): the click is then
    repeated once the script is idle, up to ``attempts`` times, and the last timeout is raised."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        wait_until_idle(page)
        try:
            with page.expect_download(timeout=timeout_ms) as got:
                button.click()
            return Path(got.value.path())
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def visit_all(base_url: str, out_dir: Path, width: int = 1400, height: int = 1000) -> dict[str, dict]:
    """Visit every page; return per page the number of charts, of exceptions, and the screenshot path."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    found = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            for path, name, selector in PAGES:
                page.goto(f"{base_url}/{path}", wait_until="domcontentloaded")
                wait_until_idle(page)
                if selector:
                    page.wait_for_selector(selector, timeout=120_000)
                    page.wait_for_timeout(1500)  # let plotly finish drawing
                shot = out_dir / f"{name}.png"
                page.screenshot(path=str(shot), full_page=False)
                found[name] = {"charts": page.locator(".js-plotly-plot").count(),
                               "exceptions": page.locator('[data-testid="stException"]').count(),
                               "errors": page.locator('[data-testid="stAlertContentError"]').all_inner_texts(),
                               "title": page.locator("h1").first.inner_text() if page.locator("h1").count() else "",
                               "screenshot": shot, "page_errors": list(errors)}
        finally:
            browser.close()
    return found
