"""Login and roles in a real browser, against a real OpenID Connect provider run locally
(oidc-provider-mock): the dashboard served with `--secrets` ([auth]) and `--roles`, a viewer and
an analyst each logging in through the provider's form in headless Chromium.

- Nobody sees anything before logging in.
- A viewer's pages (and every page a viewer types the address of) show no patient id anywhere in
  the page, the figures' SVG included; the Report offers shared packs only.
- An analyst sees patient ids (the Patient timeline).
- Both logins, and the analyst's view of patient-level data, are in the library's audit log."""

from __future__ import annotations

import os
import re

import pytest

from .browser import CHROMIUM_ARGS, chromium_path, free_port, need_chromium, running_dashboard, wait_until_idle

pytest.importorskip("playwright")
oidc_provider_mock = pytest.importorskip("oidc_provider_mock")

PATIENT_ID = re.compile(r"CADM-\d{4}")  # the sample cohort's de-identified patient ids
VIEWER, ANALYST = "viewer@derm.example.org", "analyst@derm.example.org"
VIEWER_PAGES = ["", "summary", "report"]
PATIENT_PAGES = ["timeline", "trajectories", "quality", "analyses", "cohort"]  # not in a viewer's navigation


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    need_chromium()
    tmp = tmp_path_factory.mktemp("login")
    with oidc_provider_mock.run_server_in_thread() as provider:
        port = free_port()
        secrets = tmp / "secrets.toml"
        secrets.write_text(
            "[auth]\n"
            f'redirect_uri = "http://localhost:{port}/oauth2callback"\n'
            'cookie_secret = "a-test-cookie-secret-of-more-than-32-bytes"\n'
            'client_id = "cdasi-outcomes"\nclient_secret = "test-secret"\n'
            f'server_metadata_url = "http://localhost:{provider.server_port}/.well-known/openid-configuration"\n')
        roles = tmp / "roles.toml"
        roles.write_text(f'default = "viewer"\nanalyst = ["{ANALYST}"]\n')
        db = f"sqlite:///{tmp / 'library.sqlite'}"
        with running_dashboard(port, tmp / "dashboard.log",
                               ("--secrets", str(secrets), "--roles", str(roles), "--db", db)):
            yield f"http://localhost:{port}", db


def _login(browser, base: str, email: str):
    """A new browser (no cookies), through the provider's form, back on the app."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(base, wait_until="domcontentloaded")
    wait_until_idle(page)
    before = page.content()
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector('input[name="sub"]', timeout=60_000)  # the provider's authorization form
    page.fill('input[name="sub"]', email)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(re.compile(re.escape(base) + r"/?($|\?)"), timeout=60_000)
    wait_until_idle(page)
    page.wait_for_selector("text=Logged in as", timeout=60_000)
    return page, before


def _visit(page, url: str, charts: bool = False) -> str:
    page.goto(url, wait_until="domcontentloaded")
    wait_until_idle(page)
    if charts:
        page.wait_for_selector(".js-plotly-plot", timeout=180_000)
        page.wait_for_timeout(1500)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.evaluate("t => document.body.dataset.h1 = t", page.locator("h1").first.inner_text())
    return page.content()  # the whole document: text, tables, the figures' SVG


@pytest.fixture(scope="module")
def seen(served):
    from playwright.sync_api import sync_playwright

    base, db = served
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page, before = _login(browser, base, VIEWER)
            out["before"] = before
            out["viewer"] = {path: _visit(page, f"{base}/{path}", charts=path == "summary")
                             for path in VIEWER_PAGES + PATIENT_PAGES}
            out["viewer_nav"] = _nav(page)
            page.screenshot(path=str(_shots() / "viewer.png"))
            page, _ = _login(browser, base, ANALYST)
            out["analyst"] = {"timeline": _visit(page, f"{base}/timeline", charts=True)}
            out["analyst_nav"] = _nav(page)
        finally:
            browser.close()
    return out, db


def _nav(page) -> list[str]:
    """The page titles of the sidebar's navigation (each link's last line: the icon's name comes first)."""
    return [t.strip().splitlines()[-1] for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def _shots():
    from .conftest import ROOT

    d = ROOT / "out" / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_nothing_is_served_before_the_login(seen):
    out, _ = seen
    assert "Log in with your hospital account" in out["before"]
    assert not PATIENT_ID.search(out["before"]) and "Sample cohort" not in out["before"]


def test_a_viewer_sees_no_patient_id_anywhere(seen):
    out, _ = seen
    assert out["viewer_nav"] == ["Data", "Shared summary", "Report"]
    for path, html in out["viewer"].items():
        found = PATIENT_ID.findall(html)
        assert not found, f"/{path} shows patient ids to a viewer: {sorted(set(found))[:5]}"
    text = re.sub(r"<[^>]+>", "", out["viewer"][""])
    assert f"Logged in as {VIEWER} (viewer)" in text
    for path in PATIENT_PAGES:  # typed by hand: not a viewer's page, so the Data page opens instead
        assert 'data-h1="Data"' in out["viewer"][path], path
    summary = out["viewer"]["summary"]
    assert "counts below 5 suppressed" in summary and "<svg" in summary
    assert "Internal (no suppression" not in out["viewer"]["report"]


def test_an_analyst_sees_patient_ids(seen):
    out, _ = seen
    assert "Patient timeline" in out["analyst_nav"] and "Audit log" not in out["analyst_nav"]
    assert PATIENT_ID.search(out["analyst"]["timeline"])


def test_both_logins_and_the_analysts_view_are_in_the_audit_log(seen):
    from analytics.library import Library

    out, db = seen
    log = Library(db).audit_log()
    logins = {(r.user, r.detail.split(" (")[0]) for r in log if r.action == "login"}
    assert {(VIEWER, "role viewer"), (ANALYST, "role analyst")} <= logins
    views = [r for r in log if r.action == "view"]
    assert any(r.user == ANALYST and "timeline of patient CADM-" in r.detail for r in views)
    assert not any(r.user == VIEWER for r in views)
