"""The department library (contract section 5) on an SQLite file and on a real PostgreSQL: the
CLI as the contract has it, identical content stored once, an invalid export storing nothing,
delete keeping the audit records, an audit log that refuses updates and deletes at the
database, and a killed import leaving the library as it was."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics.cli import main
from analytics.library import Library

from .conftest import ROOT
from .pg import new_database, pg_bin, running_postgres

BAD = "patient_id,visit_day,cdasi_activity\nP1,0,250\n"


@pytest.fixture(scope="session")
def pg_server():
    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have PostgreSQL (make test installs Debian's postgresql)")
        pytest.skip("no PostgreSQL on this machine: apt-get install postgresql")
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A new, empty library URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'library.sqlite'}"
    return new_database(request.getfixturevalue("pg_server"), f"lib_{uuid.uuid4().hex[:12]}")


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_as_the_contract_has_it(db, sample_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CDASI_USER", "alice")
    visits, therapies = sample_dir / "visits.csv", sample_dir / "therapies.csv"
    code, out, _ = _cli(capsys, "import", visits, "--therapies", therapies, "--label", "2025 Q4", "--db", db)
    assert code == 0 and "Imported dataset 1: 2025 Q4 (400 patients" in out

    code, out, _ = _cli(capsys, "datasets", "--db", db, "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 1
    assert set(rows[0]) == {"id", "label", "sha256", "imported_at", "imported_by", "patients", "visits"}
    import hashlib

    assert rows[0]["sha256"] == hashlib.sha256(visits.read_bytes()).hexdigest()
    assert (rows[0]["id"], rows[0]["label"], rows[0]["imported_by"], rows[0]["patients"]) == (1, "2025 Q4", "alice", 400)

    # identical content: nothing new, and it says which dataset it already is
    monkeypatch.setenv("CDASI_USER", "bob")
    code, out, _ = _cli(capsys, "import", visits, "--therapies", therapies, "--label", "again", "--db", db)
    assert code == 0 and "already dataset 1 (2025 Q4" in out
    assert len(json.loads(_cli(capsys, "datasets", "--db", db, "--json")[1])) == 1

    # invalid: exit 1 as validate, nothing stored
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    code, _, err = _cli(capsys, "import", bad, "--label", "bad", "--db", db)
    assert code == 1 and "INVALID - nothing was stored" in err and "out_of_range" in err
    assert len(json.loads(_cli(capsys, "datasets", "--db", db, "--json")[1])) == 1

    # analyze and report from the library equal those from the files
    code, _, _ = _cli(capsys, "analyze", "--dataset", 1, "--db", db, "--out", tmp_path / "a_lib")
    assert code == 0
    code, _, _ = _cli(capsys, "analyze", visits, "--therapies", therapies, "--out", tmp_path / "a_files")
    assert code == 0
    lib_res = json.loads((tmp_path / "a_lib" / "results.json").read_text())
    file_res = json.loads((tmp_path / "a_files" / "results.json").read_text())
    assert lib_res["spec"] == file_res["spec"] and lib_res["lines"] == file_res["lines"]
    assert (tmp_path / "a_lib" / "lines.csv").read_bytes() == (tmp_path / "a_files" / "lines.csv").read_bytes()
    code, _, _ = _cli(capsys, "report", "--dataset", 1, "--db", db, "--min-cell", 11, "--out", tmp_path / "pack")
    assert code == 0 and json.loads((tmp_path / "pack" / "manifest.json").read_text())["input"]["sha256"] == rows[0]["sha256"]

    code, _, err = _cli(capsys, "analyze", "--dataset", 9, "--db", db, "--out", tmp_path / "x")
    assert code == 2 and "no dataset 9" in err and "stored: 1" in err
    code, _, err = _cli(capsys, "analyze", visits, "--dataset", 1, "--db", db, "--out", tmp_path / "x")
    assert code == 2 and "either VISITS or --dataset ID" in err

    # delete: the data goes, the audit records stay and the deletion is one
    monkeypatch.setenv("CDASI_USER", "carol")
    code, out, _ = _cli(capsys, "delete", 1, "--db", db)
    assert code == 0 and "audit records stay" in out
    assert json.loads(_cli(capsys, "datasets", "--db", db, "--json")[1]) == []
    code, out, _ = _cli(capsys, "audit", "--db", db, "--json")
    log = json.loads(out)
    assert all(set(r) == {"time", "user", "action", "dataset_id", "detail"} for r in log)
    assert [(r["user"], r["action"], r["dataset_id"]) for r in log] == [
        ("alice", "import", 1), ("bob", "import", 1), ("bob", "refused import", None), ("bob", "analyze", 1),
        ("bob", "pack", 1), ("carol", "delete", 1)]
    assert "identical content" in log[1]["detail"] and "bad.csv" in log[2]["detail"]
    with Library(db).engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dataset_files")).scalar() == 0  # the data is gone


def test_the_audit_log_refuses_updates_and_deletes_at_the_database(db):
    lib = Library(db)
    lib.audit("alice", "login", None, "test")
    for statement in ('UPDATE audit SET "user" = \'mallory\'', "DELETE FROM audit"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with lib.engine.begin() as conn:
                conn.execute(sa.text(statement))
    if lib.engine.dialect.name == "postgresql":
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with lib.engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE audit"))
    assert [(r.user, r.action) for r in lib.audit_log()] == [("alice", "login")]


def test_no_code_path_updates_or_deletes_an_audit_row():
    """Besides the database's refusal: the library's code never issues one."""
    import ast

    for path in (ROOT / "analytics").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("update", "delete"):
                target = ast.unparse(node.value)
                assert "audit" not in target, f"{path}: {ast.unparse(node)}"


def test_the_schema_is_migrated_by_alembic_and_reopening_keeps_the_data(db, sample_dir):
    lib = Library(db)
    assert lib.revision() == "0001"
    lib.import_files(sample_dir / "visits.csv", label="first", user="alice")
    again = Library(db)  # opening again runs the migrations again: nothing to do, nothing lost
    assert again.revision() == "0001" and [d.label for d in again.datasets()] == ["first"]
    files = again.files(1)
    assert set(files) == {"visits"} and files["visits"][1] == (sample_dir / "visits.csv").read_bytes()


_KILLED_IMPORT = """
import os, sys, time
from analytics.library import Library

def pause(role):
    if role == "visits":  # the visits file is stored, the transaction is open: the import is killed here
        print("STORED-VISITS", flush=True)
        time.sleep(120)

Library(sys.argv[1]).import_files(sys.argv[2], sys.argv[3], label="killed", user="alice", _pause=pause)
"""


def test_a_killed_import_leaves_the_library_as_it_was(db, sample_dir, tmp_path):
    lib = Library(db)
    lib.import_files(sample_dir / "visits.csv", label="kept", user="alice")
    before = ([d.to_dict() for d in lib.datasets()], [r.to_dict() for r in lib.audit_log()])
    with lib.engine.connect() as conn:
        files_before = conn.execute(sa.text("SELECT count(*) FROM dataset_files")).scalar()
    lib.engine.dispose()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_IMPORT, db, str(sample_dir / "visits.csv"),
                             str(sample_dir / "therapies.csv")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "STORED-VISITS" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the import never reached the pause"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    after = Library(db)
    assert ([d.to_dict() for d in after.datasets()], [r.to_dict() for r in after.audit_log()]) == before
    with after.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dataset_files")).scalar() == files_before
    # and the library still works: the same import, not killed, goes through
    assert after.import_files(sample_dir / "visits.csv", sample_dir / "therapies.csv", label="again").created


def test_several_processes_opening_a_new_library_at_once_all_succeed(db):
    """The first migration runs once: on PostgreSQL an advisory lock serialises it, on SQLite a
    lock file beside the database (pysqlite begins its transaction only at the first write)."""
    code = ("import sys; from analytics.library import Library; "
            "print(Library(sys.argv[1]).revision())")
    procs = [subprocess.Popen([sys.executable, "-c", code, db], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    assert [out.strip() for out, _ in results] == ["0001"] * 4


def test_a_plain_postgresql_url_uses_the_installed_driver(pg_server):
    plain = new_database(pg_server, f"lib_{uuid.uuid4().hex[:12]}").replace("postgresql+psycopg://", "postgresql://")
    lib = Library(plain)
    assert lib.engine.dialect.driver == "psycopg" and lib.datasets() == []


def test_an_unreachable_or_malformed_library_is_a_clear_error(capsys):
    code, _, err = _cli(capsys, "datasets", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert code == 2 and "cannot open the library at postgresql+psycopg://nobody@127.0.0.1:1/none" in err
    code, _, err = _cli(capsys, "datasets", "--db", "notadb://x")
    assert code == 2 and "is not usable" in err


def _later_export(sample_dir, path):
    """The sample, exported again later: one score corrected, one visit's date moved by 7 days,
    one visit gone, and a new patient (a copy of CADM-0002's visits)."""
    import pandas as pd

    v = pd.read_csv(sample_dir / "visits.csv")
    w = v.copy()
    w.loc[3, "cdasi_activity"] = w.loc[3, "cdasi_activity"] + 5
    w.loc[10, "visit_date"] = (pd.Timestamp(w.loc[10, "visit_date"]) + pd.Timedelta(days=7)).strftime("%Y-%m-%d")
    w = w.drop(index=20)
    extra = v[v["patient_id"] == "CADM-0002"].assign(patient_id="CADM-9999")
    pd.concat([w, extra]).to_csv(path, index=False)
    return v, extra


def test_compare_two_exports(db, sample_dir, tmp_path, capsys):
    import csv

    v, extra = _later_export(sample_dir, tmp_path / "later.csv")
    therapies = sample_dir / "therapies.csv"
    assert _cli(capsys, "import", sample_dir / "visits.csv", "--therapies", therapies, "--label", "Q3", "--db", db)[0] == 0
    assert _cli(capsys, "import", tmp_path / "later.csv", "--therapies", therapies, "--label", "Q4", "--db", db)[0] == 0
    code, out, _ = _cli(capsys, "compare", 1, 2, "--db", db, "--out", tmp_path / "cmp")
    assert code == 0 and "3 visit(s) changed retroactively" in out
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "compare.csv", encoding="utf-8")))
    by = {(r["section"], r["item"]): r for r in rows}
    assert by[("counts", "patients")]["a"] == "400" and by[("counts", "patients")]["b"] == "401"
    assert "added 1; missing from B 0" in by[("counts", "patients")]["note"]
    # visits: the new patient's, plus the moved visit at its new date; gone: the dropped one and the old date
    assert by[("counts", "visits")]["note"] == f"added {len(extra) + 1}; missing from B 2"
    retro = [r for r in rows if r["section"] == "retroactive"]
    first = v.iloc[3]
    assert [r["note"] for r in retro] == ["score changed: cdasi_activity", "date changed: visit_date",
                                          "visit missing from B: "]
    assert retro[0]["item"] == f"{first['patient_id']} {first['visit_date']}" and \
        (float(retro[0]["a"]), float(retro[0]["b"])) == (first["cdasi_activity"], first["cdasi_activity"] + 5)
    quality = [r for r in rows if r["section"] == "quality"]
    assert len(quality) == 11 and all("limits" in r["note"] for r in quality)
    page = (tmp_path / "cmp" / "compare.html").read_text(encoding="utf-8")
    assert "Values changed retroactively" in page and "CADM-9999" not in page  # only changed visits are listed
    assert not re.search(r"\b(nan|NaN|inf|None)\b", page)
    log = json.loads(_cli(capsys, "audit", "--db", db, "--json")[1])
    assert log[-1]["action"] == "compare" and log[-1]["dataset_id"] == 2


def test_run_charts_draw_each_period_from_the_latest_export_where_it_is_complete():
    import pandas as pd

    from analytics.library.history import combine_periods

    def per(rows):
        return pd.DataFrame(rows, columns=["key", "period", "numerator", "denominator", "value", "complete"])

    older = per([("k", "2023", 8, 10, 80.0, True), ("k", "2024", 3, 10, 30.0, False)])  # 2024 partial then
    newer = per([("k", "2024", 9, 20, 45.0, True), ("k", "2025", 1, 2, 50.0, False)])
    got = combine_periods([(1, older), (2, newer)])
    assert got[["period", "value", "complete", "dataset_id"]].values.tolist() == [
        ["2023", 80.0, True, 1], ["2024", 45.0, True, 2], ["2025", 50.0, False, 2]]
    # a period complete only in the older export keeps the older value over a newer partial one
    got = combine_periods([(1, per([("k", "2024", 9, 20, 45.0, True)])), (2, per([("k", "2024", 1, 5, 20.0, False)]))])
    assert got[["value", "dataset_id"]].values.tolist() == [[45.0, 1]]


def test_quality_history_over_the_library(sample_dir, tmp_path):
    import pandas as pd

    from analytics.library.history import quality_history

    lib = Library(f"sqlite:///{tmp_path / 'lib.sqlite'}")
    v = pd.read_csv(sample_dir / "visits.csv")
    early = v[pd.to_datetime(v["visit_date"]) < "2022-01-01"]
    early.to_csv(tmp_path / "early.csv", index=False)
    lib.import_files(tmp_path / "early.csv", sample_dir / "therapies.csv", label="to 2021", user="alice")
    lib.import_files(sample_dir / "visits.csv", sample_dir / "therapies.csv", label="to 2025", user="alice")
    q = quality_history(lib, "year")
    per = q.by_period[q.by_period["key"] == "cdasi_documented"].set_index("period")
    assert per.loc["2021", "dataset_id"] == 2 and per.loc["2025", "dataset_id"] == 2  # complete in the later export
    assert q.figure("cdasi_documented").data  # the run chart draws from it
