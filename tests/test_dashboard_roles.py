"""Roles in the dashboard, headless (AppTest with a logged-in st.user and an [auth] secret):
what a viewer, an analyst and a stranger each get, and what the audit log records.
The same in a real browser, through a real OpenID provider: tests/test_login.py."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from .conftest import ROOT  # noqa: E402

APP = str(ROOT / "dashboard" / "app.py")
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 40, "client_id": "cdasi",
        "client_secret": "s", "server_metadata_url": "http://localhost:9400/.well-known/openid-configuration"}
PATIENT_ID = re.compile(r"CADM-\d{4}")


@pytest.fixture
def login(tmp_path, monkeypatch):
    """``login(email)``: the app as that user (None: nobody logged in yet), roles from a file."""
    roles = tmp_path / "roles.toml"
    roles.write_text('analyst = ["analyst@derm.org"]\nadmin = ["admin@derm.org"]\n')
    monkeypatch.setenv("CDASI_ROLES", str(roles))
    monkeypatch.setenv("CDASI_DB", f"sqlite:///{tmp_path / 'library.sqlite'}")

    def make(email: str | None, auth: dict | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=240)
        if not hasattr(at, "user"):
            pytest.skip("AppTest.user needs Streamlit >= 1.67; tests/test_login.py covers the login in a browser")
        at.secrets["auth"] = AUTH if auth is None else auth
        at.user = {"is_logged_in": False} if email is None else {"is_logged_in": True, "email": email}
        return at.run()

    return make


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "title", "header", "subheader", "info", "warning",
                                  "error", "success") for e in getattr(at, kind)]
    parts += [e.value.to_csv() for e in at.dataframe]
    parts += [str(o) for r in at.radio for o in r.options] + [str(o) for s in at.selectbox for o in s.options]
    return "\n".join(map(str, parts))


def test_a_stranger_gets_the_login_button_and_nothing_else(login):
    at = login(None)
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.dataframe and not at.sidebar.markdown and not PATIENT_ID.search(_texts(at))


def test_an_incomplete_login_serves_nothing(login):
    at = login("analyst@derm.org", {"redirect_uri": "http://localhost:8501/oauth2callback"})
    assert any("A login is configured but incomplete" in e.value for e in at.error)
    assert not at.dataframe and not at.button


def test_a_viewer_gets_aggregates_only(login):
    from analytics.library import Library
    import os

    at = login("someone@derm.org")  # not in the roles file: the default, viewer
    assert not at.exception
    assert "someone@derm.org (viewer)" in " ".join(m.value for m in at.sidebar.markdown)
    assert "Upload an export" not in at.radio(key="data.source").options
    assert not PATIENT_ID.search(_texts(at))
    for page in ("views/timeline.py", "views/trajectories.py", "views/analyses.py", "views/cohort.py",
                 "views/quality.py", "views/audit.py"):  # not in a viewer's navigation: no route to them
        with pytest.raises(ValueError, match="Known pages"):
            at.switch_page(page)
    at.switch_page("views/summary.py").run()
    assert not at.exception
    assert list(at.radio(key="summary.min_cell").options) == ["counts below 5 suppressed", "counts below 11 suppressed"]
    assert at.get("plotly_chart") and at.dataframe and not PATIENT_ID.search(_texts(at))
    at.switch_page("views/report.py").run()
    assert all("Internal" not in str(o) for o in at.radio(key="report.share").options)
    log = Library(os.environ["CDASI_DB"]).audit_log()
    assert [(r.user, r.action) for r in log] == [("someone@derm.org", "login")]


def test_an_analyst_sees_patients_and_the_view_is_recorded(login):
    from analytics.library import Library
    import os

    at = login("Analyst@Derm.org")
    at.switch_page("views/timeline.py").run()
    assert not at.exception and PATIENT_ID.search(_texts(at))
    at.switch_page("views/report.py").run()
    assert any("Internal" in str(o) for o in at.radio(key="report.share").options)
    log = Library(os.environ["CDASI_DB"]).audit_log()
    assert [r.action for r in log][:1] == ["login"] and log[0].detail.startswith("role analyst")
    assert any(r.action == "view" and r.detail.startswith("the timeline of patient CADM-") for r in log)
