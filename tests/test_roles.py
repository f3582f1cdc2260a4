"""Roles (analytics.library.roles) and the dashboard's refusal to serve the network without a
login: hand-checkable cases, edge by edge."""

from __future__ import annotations

import pytest

from analytics.cli import main
from analytics.library.roles import (PERMISSIONS, Roles, RolesError, allowed, load_roles, login_problems,
                                     parse_roles)

AUTH = """
[auth]
redirect_uri = "http://localhost:8501/oauth2callback"
cookie_secret = "a-long-random-string-of-at-least-32-bytes"
client_id = "cdasi"
client_secret = "secret"
server_metadata_url = "http://localhost:9400/.well-known/openid-configuration"
"""


def test_exact_addresses_patterns_and_the_default():
    r = parse_roles("""
        default = "viewer"
        admin = ["Lead@Derm.Example.org"]
        analyst = ["fellow@derm.example.org", "*@research.example.org"]
        viewer = ["*@example.org"]
    """.replace("\n        ", "\n"))
    assert r.role_of("lead@derm.example.org") == "admin"  # case does not matter
    assert r.role_of(" LEAD@derm.example.org ") == "admin"
    assert r.role_of("fellow@derm.example.org") == "analyst"
    assert r.role_of("x@research.example.org") == "analyst"
    assert r.role_of("x@example.org") == "viewer"
    assert r.role_of("stranger@elsewhere.org") == "viewer"
    assert r.role_of(None) == "viewer" and r.role_of("") == "viewer"


def test_an_exact_address_wins_over_a_pattern_and_the_least_privileged_pattern_wins():
    r = parse_roles('admin = ["*@derm.org"]\nviewer = ["*@derm.org"]\nanalyst = ["boss@derm.org"]')
    assert r.role_of("boss@derm.org") == "analyst"
    assert r.role_of("someone@derm.org") == "viewer"


def test_the_default_can_be_raised_and_no_file_means_everyone_is_a_viewer(monkeypatch):
    assert parse_roles('default = "analyst"').role_of("anyone@x.org") == "analyst"
    monkeypatch.delenv("CDASI_ROLES", raising=False)
    r = load_roles()
    assert r == Roles(source=r.source) and r.role_of("chief@hospital.org") == "viewer"


@pytest.mark.parametrize("text,names", [
    ('admin = "lead@x.org"', "admin must be a list"),
    ('superuser = ["a@x.org"]', "unknown key(s) 'superuser'"),
    ('default = "owner"', "default = 'owner' is not a role"),
    ('analyst = ["not an address"]', "'not an address' is not an e-mail address"),
    ('admin = ["a@x.org"]\nviewer = ["A@x.org"]', "'a@x.org' is listed as both viewer and admin"),
    ('analyst = ["*x"]', "'*x' is not an address pattern"),
    ("admin = [", "not valid TOML"),
])
def test_every_problem_of_a_roles_file_is_named(text, names):
    with pytest.raises(RolesError, match="roles file") as exc:
        parse_roles(text)
    assert names in str(exc.value)


def test_several_problems_are_reported_at_once():
    with pytest.raises(RolesError) as exc:
        parse_roles('owner = []\nadmin = ["x"]')
    assert "owner" in str(exc.value) and "'x' is not an e-mail address" in str(exc.value)


def test_rights_by_role():
    assert not PERMISSIONS["viewer"]
    assert allowed("analyst", "patient_level") and allowed("analyst", "upload")
    assert not allowed("analyst", "import") and not allowed("analyst", "delete") and not allowed("analyst", "audit")
    assert all(allowed("admin", a) for a in ("patient_level", "upload", "import", "delete", "audit"))
    assert PERMISSIONS["analyst"] <= PERMISSIONS["admin"]


def test_login_problems(tmp_path):
    f = tmp_path / "secrets.toml"
    assert login_problems([f]) is None  # no file: single-user mode
    f.write_text('[other]\nx = 1\n')
    assert login_problems([f]) is None
    f.write_text(AUTH)
    assert login_problems([f]) == []
    f.write_text(AUTH.replace('client_secret = "secret"\n', "").replace('cookie_secret', "cookie_secretx"))
    assert login_problems([f]) == ["[auth] has no cookie_secret", "[auth] has no client_secret"]
    f.write_text('[auth]\nredirect_uri = "x"\ncookie_secret = "y"\n[auth.google]\nclient_id = "c"\n')
    assert login_problems([f]) == ["[auth.google] has no client_secret, server_metadata_url"]
    f.write_text("[auth\n")
    assert "cannot be read as TOML" in login_problems([f])[0]


def _dashboard(capsys, *argv):
    code = main(["dashboard", *argv])
    return code, capsys.readouterr().err


def test_a_network_address_without_a_login_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./.streamlit/secrets.toml
    monkeypatch.setenv("HOME", str(tmp_path))
    code, err = _dashboard(capsys, "--host", "0.0.0.0", "--port", "9")
    assert code == 2
    assert "--host 0.0.0.0 would serve health data to other machines without a login" in err
    assert "--insecure-no-auth" in err and "Traceback" not in err


def test_an_incomplete_login_or_a_bad_roles_file_is_refused_before_the_server_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(AUTH.replace('client_id = "cdasi"\n', ""))
    code, err = _dashboard(capsys, "--secrets", str(secrets), "--host", "0.0.0.0")
    assert code == 2 and "the login is configured but incomplete ([auth] has no client_id)" in err
    secrets.write_text(AUTH)
    roles = tmp_path / "roles.toml"
    roles.write_text('admin = ["lead"]\n')
    code, err = _dashboard(capsys, "--secrets", str(secrets), "--roles", str(roles))
    assert code == 2 and "'lead' is not an e-mail address" in err
    code, err = _dashboard(capsys, "--roles", str(roles))
    assert code == 2 and "--roles needs a login" in err
    code, err = _dashboard(capsys, "--secrets", str(tmp_path / "missing.toml"))
    assert code == 2 and "does not exist" in err


def test_the_secrets_file_is_passed_to_streamlit(tmp_path):
    from analytics.cli import build_parser, dashboard_command

    secrets = tmp_path / "secrets.toml"
    cmd = dashboard_command(build_parser().parse_args(["dashboard", "--secrets", str(secrets)]))
    assert cmd[cmd.index("--secrets.files") + 1] == str(secrets.resolve())
    assert "--secrets.files" not in dashboard_command(build_parser().parse_args(["dashboard"]))
