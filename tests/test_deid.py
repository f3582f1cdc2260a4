"""The de-identification guard and formula neutralisation."""

from __future__ import annotations

import csv

import pytest

from analytics import DeriveOptions, analyze, write_outputs
from analytics.display.export import neutralise

from .conftest import prep

V = "patient_id,visit_day,cdasi_activity"


@pytest.mark.parametrize("header,what", [
    ("Patient Name", "names"), ("first_name", "names"), ("LastName", "names"), ("Surname", "names"),
    ("MRN", "medical record"), ("Medical Record Number", "medical record"), ("hospital_number", "medical record"),
    ("DOB", "dates of birth"), ("Date of Birth", "dates of birth"), ("birth_date", "dates of birth"),
    ("Address", "addresses"), ("Street", "addresses"), ("ZIP code", "addresses"), ("postcode", "addresses"),
    ("Phone", "phone"), ("telephone_number", "phone"), ("Mobile", "phone"),
    ("Email", "email"), ("e-mail address", "email"),
    ("SSN", "social security"), ("Social Security Number", "social security"),
])
def test_identifier_columns_are_refused(header, what):
    p = prep(f"{V},{header}\nP1,0,20,x\n")
    f = next(f for f in p.report.findings if f.rule == "identifier_column")
    assert f.severity == "error" and f.column == header and what in f.message
    assert "delete this column" in f.fix
    assert not p.report.ok


@pytest.mark.parametrize("header", ["notes", "site", "visit_type", "comment", "drug_dose", "investigator_code"])
def test_harmless_extra_columns_pass(header):
    p = prep(f"{V},{header}\nP1,0,20,abc\n")
    assert p.report.ok, p.report.to_text()


@pytest.mark.parametrize("value,what", [
    ("jane.doe@example.org", "email"), ("(555) 123-4567", "phone"), ("+44 20 7946 0958", "phone"),
    ("555.123.4567", "phone"), ("123-45-6789", "social security"),
])
def test_identifier_values_in_free_text_are_refused(value, what):
    p = prep(f"{V},notes\nP1,0,20,seen; {value}\nP1,30,10,fine\n")
    f = next(f for f in p.report.findings if f.rule == "identifier_value")
    assert what in f.message and f.rows == (2,) and f.patient_ids == ("P1",)


def test_dates_and_numbers_in_free_text_are_not_phone_numbers():
    p = prep(f"{V},notes\nP1,0,20,seen 2021-03-04 dose 2 g/kg x 3 cycles; CDASI 20 -> 14\n")
    assert p.report.ok, p.report.to_text()


def test_email_as_patient_id_is_refused():
    p = prep(f"{V}\njane@example.org,0,20\n")
    assert "identifier_value" in p.report.rules()


def test_age_over_89_refused_and_90_plus_accepted():
    p = prep(f"{V},age_at_onset\nP1,0,20,93\nP2,0,20,90+\nP3,0,20,89\n")
    f = next(f for f in p.report.findings if f.rule == "age_over_89")
    assert f.rows == (2,) and '"90+"' in f.fix
    ok = prep(f"{V},age_at_onset\nP2,0,20,90+\nP3,0,20,89\n")
    assert ok.report.ok and ok.visits["age_at_onset"].tolist() == [90, 89]


def test_formula_like_patient_ids_are_accepted_and_neutralised_in_every_csv(tmp_path):
    ids = ["=HYPERLINK(1)", "+A12", "@SUM(1)", "-7"]
    rows = "".join(f"{i},0,20,MMF\n{i},30,10,MMF\n" for i in ids)
    p = prep(f"{V},systemic_therapy\n" + rows)
    assert p.report.ok, p.report.to_text()
    analysis = analyze(p, DeriveOptions())
    paths = write_outputs(analysis, tmp_path)
    for name in ("lines", "trajectories", "attrition"):
        with open(paths[name], newline="") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    assert not cell.startswith(("=", "+", "@", "-", "\t", "\r")), (name, cell)
    with open(paths["lines"], newline="") as fh:
        got = {r["patient_id"] for r in csv.DictReader(fh)}
    assert got == {"'" + i for i in ids}


def test_neutralise_leaves_numbers_and_plain_text():
    import pandas as pd

    df = pd.DataFrame({"a": ["=1+1", "ok", None], "b": [-1.0, 2.0, 3.0], "=c": [1, 2, 3]})
    out = neutralise(df)
    assert out["a"].tolist()[:2] == ["'=1+1", "ok"] and out["b"].tolist() == [-1.0, 2.0, 3.0]
    assert list(out.columns) == ["a", "b", "'=c"]
    assert df["a"].tolist()[0] == "=1+1"  # the input is not modified
