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


def test_email_as_patient_id_is_refused_and_never_repeated():
    p = prep(f"{V}\njane@example.org,0,20\njane@example.org,30,200\n")  # 200: out of range too
    assert "identifier_value" in p.report.rules() and "out_of_range" in p.report.rules()
    assert "jane@example.org" not in p.report.to_text()


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


def test_neutralise_looks_at_every_cell_of_a_column_with_unhashable_cells():
    import pandas as pd

    out = neutralise(pd.DataFrame({"a": [[1], "=y", "ok"], "b": [[1], "ok", None]}))
    assert out["a"].tolist() == [[1], "'=y", "ok"] and out["b"].tolist() == [[1], "ok", None]


# The CSV writer formats a large table's repeated numbers once per distinct value; the file must be
# byte for byte what pandas writes cell by cell, neutralised as every CSV is.
from hypothesis import example, given, settings, strategies as st  # noqa: E402

_FLOATS = st.lists(st.one_of(st.floats(allow_infinity=False), st.sampled_from([0.0, -0.0, 0.1, 1e-7, 1e20, 12.0, -3.5])),
                   min_size=1, max_size=12)
_INTS = st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=12)
_TEXT = st.lists(st.one_of(st.none(), st.text(max_size=6),
                           st.sampled_from(["=1+1", "+A1", "-2", "@x", "\tx", "a,b", 'say "hi"', "line\nbreak"])),
                 min_size=1, max_size=8)


def _reference_csv(df) -> str:
    import numpy as np

    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(
                ("=", "+", "-", "@", "\t", "\r")) else v)
        elif out[col].dtype.kind == "f":
            out[col] = out[col].replace([np.inf, -np.inf], np.nan)
    return out.to_csv(index=False, lineterminator="\n")


@settings(max_examples=60, deadline=None)
@given(floats=_FLOATS, ints=_INTS, text=_TEXT, rows=st.integers(0, 2500), seed=st.integers(0, 2**32 - 1))
@example(floats=[0.0, -0.0, 1.5, float("nan")], ints=[1], text=["=a"], rows=1200, seed=1)  # one distinct 0, two texts
def test_csv_writer_is_pandas_cell_by_cell(tmp_path_factory, floats, ints, text, rows, seed):
    import numpy as np
    import pandas as pd

    from analytics.display.export import csv_bytes, write_csv

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.choice(np.array(floats, dtype=float), rows),   # repeated floats: formatted per distinct value
        "u": rng.random(rows) * 10.0 ** rng.integers(-8, 20),     # mostly distinct: left to pandas
        "n": rng.choice(np.array(ints, dtype=np.int64), rows),
        "b": rng.random(rows) < 0.3,
        "t": pd.Series([text[i] for i in rng.integers(0, len(text), rows)], dtype=object),
        "=h": rng.integers(0, 3, rows),
        "e": pd.array(np.where(rng.random(rows) < 0.2, None, rng.choice(np.array(ints, dtype=np.int64), rows)),
                      dtype="Int64"),  # nullable: an object or float array to numpy, depending on pandas
    })
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    expected = _reference_csv(df)
    assert write_csv(df, path).read_bytes().decode("utf-8") == expected.replace("=h", "'=h", 1)
    assert csv_bytes(df).decode("utf-8-sig") == expected.replace("=h", "'=h", 1)


_PLAIN_TEXT = st.lists(st.one_of(st.none(), st.just(float("nan")), st.text(alphabet=st.characters(
    blacklist_characters=',"\r\n', blacklist_categories=("Cs",)), max_size=6), st.sampled_from(["=1+1", "@x", "é ü"])),
    min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(floats=_FLOATS, ints=_INTS, text=_PLAIN_TEXT, rows=st.integers(0, 700), seed=st.integers(0, 2**32 - 1),
       chunk=st.sampled_from([1, 7, 100_000]))
@example(floats=[0.0, -0.0, 1.5, float("nan")], ints=[1], text=["=a", None], rows=300, seed=1, chunk=7)
def test_the_arrow_csv_writer_gives_pandas_bytes(floats, ints, text, rows, seed, chunk):
    """Where no cell needs quotes, the table is written by Arrow's string kernels (the fast path
    of the line tables), in chunks of rows: the bytes are pandas' own."""
    import io

    import numpy as np
    import pandas as pd

    import pytest

    import analytics.display.export as export

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.choice(np.array(floats, dtype=float), rows),
        "u": rng.random(rows) * 10.0 ** rng.integers(-8, 20),
        "n": rng.choice(np.array(ints, dtype=np.int64), rows),
        "b": rng.random(rows) < 0.3,
        "t": pd.Series([text[i] for i in rng.integers(0, len(text), rows)], dtype=object),
        "e": pd.array(np.where(rng.random(rows) < 0.2, None, rng.choice(np.array(ints, dtype=np.int64), rows)),
                      dtype="Int64"),
    })
    coded = {}  # the text columns' distinct values, as write_csv hands them from neutralising to writing
    df = export._neutralise(export._no_infinity(df), coded)
    assert export.neutralise(df).equals(df)
    expected = df.to_csv(index=False, lineterminator="\n")
    for given in (None, coded):  # each cell converted, or each distinct value once
        buf = io.BytesIO()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(export, "_CSV_CHUNK", chunk)
            assert export._arrow_csv(df, buf, given)
        assert buf.getvalue().decode("utf-8") == expected


def test_the_arrow_csv_writer_leaves_quoting_and_dates_to_pandas():
    import io

    import pandas as pd

    from analytics.display.export import _arrow_csv

    for df in (pd.DataFrame({"a": ["x,y", "z"], "b": [1, 2]}), pd.DataFrame({"a": ['say "hi"', "z"], "b": [1, 2]}),
               pd.DataFrame({"a": ["line\nbreak", "z"], "b": [1, 2]}), pd.DataFrame({"a": [1, 2]}),
               pd.DataFrame({"d": pd.to_datetime(["2024-01-01", "2024-01-02"]), "b": [1, 2]}),
               pd.DataFrame({"a": [1, "x"], "b": [1, 2]}), pd.DataFrame({"a": [b"x", b"y"], "b": [1, 2]}),
               pd.DataFrame({"a,b": [1], "c": [2]})):
        buf = io.BytesIO()
        assert not _arrow_csv(df, buf) and buf.getvalue() == b""
