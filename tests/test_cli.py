"""The command line: exit codes, reports without tracebacks, the output files of the contract."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys

import pytest

from analytics.cli import main
from analytics.ingest.schema import LINES_COLUMNS, TRAJECTORY_COLUMNS

GOOD = "patient_id,visit_day,cdasi_activity,systemic_therapy\nP1,0,20,MMF\nP1,30,10,MMF\nP2,0,20,IVIG\nP2,30,19,IVIG\n"
BAD = "patient_id,visit_day,cdasi_activity,systemic_therapy\nP1,0,200,MMF\nP1,0,20,MMF\n,30,10,MMF\n"


def run(*args, capsys):
    code = main(list(map(str, args)))
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.csv"
    p.write_text(GOOD)
    return p


@pytest.fixture
def bad(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(BAD)
    return p


def test_validate_good_exits_0(good, capsys):
    code, out, _ = run("validate", good, capsys=capsys)
    assert code == 0 and "VALID" in out


def test_validate_bad_exits_1_and_prints_the_report(bad, capsys):
    code, out, _ = run("validate", bad, capsys=capsys)
    assert code == 1 and "INVALID" in out
    assert "[out_of_range]" in out and "cdasi_activity" in out and "rows (1): 2" in out
    assert "[missing_patient_id]" in out and "fix:" in out


def test_validate_json(bad, capsys):
    code, out, _ = run("validate", bad, "--format", "json", capsys=capsys)
    doc = json.loads(out)
    assert code == 1 and doc["valid"] is False and doc["errors"] >= 2


@pytest.mark.parametrize("content", [b"\x00\x01\x02binary", "na\xefve".encode("latin-1") + b"\xff,\n"])
def test_validate_unreadable_exits_2(tmp_path, content, capsys):
    p = tmp_path / "x.csv"
    p.write_bytes(content)
    code, _, err = run("validate", p, capsys=capsys)
    assert code == 2 and "error:" in err


def test_missing_file_and_bad_mapping_exit_2(good, tmp_path, capsys):
    assert run("validate", tmp_path / "nope.csv", capsys=capsys)[0] == 2
    m = tmp_path / "m.toml"
    m.write_text("[columns]\nx = 'nope'\n")
    code, _, err = run("validate", good, "--mapping", m, capsys=capsys)
    assert code == 2 and "not a known column" in err


def test_bad_options_exit_2(good, tmp_path, capsys):
    code, _, err = run("analyze", good, "--response", "points:x", "--out", tmp_path, capsys=capsys)
    assert code == 2 and "response rule" in err
    code, _, err = run("analyze", good, "--arms", "MMF,XYZ", "--out", tmp_path, capsys=capsys)
    assert code == 2 and "unknown arm" in err
    code, _, err = run("analyze", good, "--alpha", "0.7", "--out", tmp_path / "a", capsys=capsys)
    assert code == 2 and "alpha must be between 0 and 0.5" in err and not (tmp_path / "a").exists()


def test_analyze_alpha_gives_90pct_intervals_everywhere(tmp_path, sample_dir, capsys):
    from analytics.protocol import z_value

    code, out, _ = run("analyze", sample_dir / "visits.csv", "--therapies", sample_dir / "therapies.csv",
                       "--alpha", "0.1", "--out", tmp_path, capsys=capsys)
    assert code == 0 and "90% CI" in out and "95%" not in out
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["definitions"]["alpha"] == 0.1
    assert {a["alpha"] for a in doc["analyses"].values()} == {0.1}
    fe = doc["mixed_model"]["fixed_effects"]["weeks"]  # t on the Satterthwaite df (issue 16)
    from scipy import stats

    assert fe["ci"][1] - fe["estimate"] == pytest.approx(stats.t.ppf(0.95, fe["df"]) * fe["se"], rel=1e-9)
    assert stats.t.ppf(0.95, fe["df"]) > z_value(0.1)
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(good)])  # --out missing: argparse's usage error
    assert exc.value.code == 2


def test_analyze_invalid_exits_1_and_writes_nothing(bad, tmp_path, capsys):
    out = tmp_path / "o"
    code, _, err = run("analyze", bad, "--out", out, capsys=capsys)
    assert code == 1 and "INVALID" in err and not out.exists()


def test_analyze_writes_the_contract_files(good, tmp_path, capsys):
    out = tmp_path / "o"
    code, stdout, _ = run("analyze", good, "--response", "points:4", "--confirm", "--out", out, capsys=capsys)
    assert code == 0 and "lines derived" in stdout
    with open(out / "lines.csv", newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert list(lines[0])[:15] == list(LINES_COLUMNS)
    with open(out / "trajectories.csv", newline="") as fh:
        assert list(next(csv.DictReader(fh))) == list(TRAJECTORY_COLUMNS)
    res = json.loads((out / "results.json").read_text())
    assert res["tool"]["name"] == "cdasi-outcomes" and res["tool"]["version"]
    assert res["input"] == res["input"] | {"sha256": hashlib.sha256(good.read_bytes()).hexdigest(), "patients": 2,
                                           "visits": 4}
    assert res["definitions"]["response"] == "points:4" and res["definitions"]["arms"] == ["MMF", "IVIG", "JAKi"]
    assert res["definitions"]["confirm"] is True and res["definitions"]["baseline_window_days"] == [-60, 7]
    assert res["lines"]["derived"] == 2 and res["lines"]["included"] == 2
    assert res["lines"]["excluded"] == {"no baseline": 0, "no follow-up": 0}
    assert set(res["timings_s"]) >= {"load", "validate", "derive", "total"}
    assert res["quality"]["cdasi_documented_pct"] == 100.0
    assert isinstance(res["warnings"], list)


def test_sample_is_deterministic(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("sample", "--patients", 20, "--seed", 7, "--out", a, capsys=capsys)[0] == 0
    assert run("sample", "--patients", 20, "--seed", 7, "--out", b, capsys=capsys)[0] == 0
    for name in ("visits.csv", "therapies.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert run("sample", "--patients", 0, "--out", a, capsys=capsys)[0] == 1


def test_console_script_runs_without_traceback(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(BAD)
    proc = subprocess.run([sys.executable, "-m", "analytics.cli", "validate", str(p)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout


def test_internal_errors_are_reported_without_traceback(good, tmp_path, capsys, monkeypatch):
    import analytics.pipeline as pipeline

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(pipeline, "derive", boom)
    monkeypatch.delenv("CDASI_DEBUG", raising=False)
    code, _, err = run("analyze", good, "--out", tmp_path, capsys=capsys)
    assert code == 3 and "internal error" in err and "kaboom" in err


def test_dashboard_argument_errors_exit_2_without_starting(tmp_path, capsys):
    assert run("dashboard", tmp_path / "missing.csv", capsys=capsys)[0] == 2
    code, _, err = run("dashboard", "--port", "70000", capsys=capsys)
    assert code == 2 and "--port" in err
    bad = tmp_path / "m.toml"
    bad.write_text("[colums]\n")
    assert run("dashboard", "--mapping", bad, capsys=capsys)[0] == 2
