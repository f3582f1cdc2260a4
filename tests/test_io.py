"""Reading: delimiters, BOM, XLSX, Parquet, header matching, the mapping file, unreadable files."""

from __future__ import annotations

import pandas as pd
import pytest

from analytics import InputError, MappingError, load_mapping, prepare, read_bytes, read_table
from analytics.ingest.io import mapping_from_dict

ROWS = [["007", "2021-03-01", "20", "MMF"], ["007", "2021-04-01", "14", "MMF"]]
HEAD = ["Patient ID", "Visit Date", "CDASI Activity", "Systemic therapy"]


def _csv(sep: str, bom: bool = False) -> bytes:
    text = "\n".join(sep.join(r) for r in [HEAD, *ROWS]) + "\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


@pytest.mark.parametrize("sep", [",", ";", "\t"])
@pytest.mark.parametrize("bom", [False, True])
def test_csv_delimiters_and_bom(sep, bom):
    raw = read_bytes(_csv(sep, bom))
    assert list(raw.data.columns) == ["patient_id", "visit_date", "cdasi_activity", "systemic_therapy"]
    assert raw.data["patient_id"].tolist() == ["007", "007"]  # leading zeros kept
    assert raw.headers["patient_id"] == "Patient ID"


def test_windows_line_endings_and_blank_lines():
    raw = read_bytes(b"patient_id,visit_day,cdasi_activity\r\nP1,0,20\r\n\r\nP1,30,10\r\n")
    assert raw.n_rows == 2 and raw.data["cdasi_activity"].tolist() == ["20", "10"]


def test_xlsx_round_trip(tmp_path):
    df = pd.DataFrame(ROWS, columns=HEAD)
    df["Visit Date"] = pd.to_datetime(df["Visit Date"])
    df["CDASI Activity"] = df["CDASI Activity"].astype(int)
    path = tmp_path / "export.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        pd.DataFrame({"x": [1]}).to_excel(xw, sheet_name="About", index=False)
        df.to_excel(xw, sheet_name="Visits", index=False)
    raw = read_table(path)
    assert raw.fmt == "xlsx" and raw.sheet == "Visits"
    assert raw.data["visit_date"].tolist() == ["2021-03-01", "2021-04-01"]
    assert raw.data["cdasi_activity"].tolist() == ["20", "14"]
    p = prepare(raw)
    assert p.report.ok and p.visits["day"].tolist() == [0, 31]


def test_parquet(tmp_path):
    df = pd.DataFrame({"patient_id": ["A", "A"], "visit_day": [0, 28], "cdasi_activity": [20.0, None]})
    path = tmp_path / "v.parquet"
    df.to_parquet(path)
    raw = read_table(path)
    assert raw.fmt == "parquet" and raw.data["cdasi_activity"].tolist() == ["20", ""]
    assert prepare(raw).report.ok


@pytest.mark.parametrize("header,target", [
    ("PATIENT_ID", "patient_id"), ("patient-id", "patient_id"), ("Record ID", "patient_id"),
    ("Subject", "patient_id"), ("CDASI-A", "cdasi_activity"), ("Date of visit", "visit_date"),
    ("Study Day", "visit_day"), ("Anti-bodies", "antibody"), ("Prednisone (mg/day)", "prednisone_mg_day"),
])
def test_header_matching_and_aliases(header, target):
    raw = read_bytes(f"{header},x\n1,2\n".encode())
    assert target in raw.data.columns


def test_mapping_renames_and_redcap_example(tmp_path):
    path = tmp_path / "redcap.toml"
    path.write_text('[columns]\n"cdasi_act_tot" = "cdasi_activity"\n"redcap_event_date" = "visit_date"\n'
                    '[drugs]\n"mycophenolate (cellcept) 1g bid" = "mycophenolate"\n')
    m = load_mapping(path)
    raw = read_bytes(b"record_id,redcap_event_date,cdasi_act_tot\n1,2020-01-01,20\n", mapping=m)
    assert list(raw.data.columns) == ["patient_id", "visit_date", "cdasi_activity"]


def test_docs_mapping_example_loads():
    from .conftest import ROOT

    m = load_mapping(ROOT / "docs" / "mapping-redcap.toml")
    assert m.columns and m.drugs


@pytest.mark.parametrize("text,match", [
    ("[columns]\nx = 'not_a_column'\n", "not a known column"),
    ("[colums]\n", "unknown table"),
    ("[columns]\nx = 3\n", "must be a string"),
    ("not toml = = =", "not valid TOML"),
])
def test_bad_mapping_files(tmp_path, text, match):
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(MappingError, match=match):
        load_mapping(path)


def test_missing_mapping_file():
    with pytest.raises(MappingError, match="does not exist"):
        load_mapping("/nonexistent/m.toml")


@pytest.mark.parametrize("data,match", [
    (b"\xff\xfe\x00p\x00a", "binary|UTF-8"),
    ("patient_id,visit_day\nP1,0\n".encode("utf-16"), "binary|UTF-8"),
    (b"a,b\n1,2\n3,4,5,6\n", "well-formed"),
    (b"PK\x03\x04garbage", "XLSX"),
    (b"PAR1garbage", "Parquet"),
    ("patient_id;visit_day\nJos\xe9;1\n".encode("latin-1"), "UTF-8"),
])
def test_unreadable_bytes_raise_input_error(data, match):
    with pytest.raises(InputError, match=match):
        read_bytes(data, "upload")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="folder"):
        read_table(tmp_path)


def test_old_xls_is_refused_with_advice():
    with pytest.raises(InputError, match="xlsx"):
        read_bytes(b"\xd0\xcf\x11\xe0", "old.xls")


def test_empty_and_header_only_files_give_a_report():
    assert "empty_file" in prepare(read_bytes(b"")).report.rules()
    assert "empty_file" in prepare(read_bytes(b"patient_id,visit_day,cdasi_activity\n")).report.rules()


def test_mapping_from_dict_is_the_toml_shape():
    assert mapping_from_dict({"columns": {"A": "patient_id"}}).columns == {"A": "patient_id"}


def test_sha256_is_of_the_file_bytes():
    import hashlib

    data = _csv(",")
    assert read_bytes(data).sha256 == hashlib.sha256(data).hexdigest()


def test_reader_does_not_read_types():
    # "1e3" and "0012" stay as written; the validator decides what they mean.
    raw = read_bytes(b"patient_id,visit_day,cdasi_activity\n0012,1e3,20\n")
    assert raw.data.iloc[0].tolist() == ["0012", "1e3", "20"]


# The CSV reader: Arrow first (fast, shares identical strings), pandas for what Arrow refuses.
# Both must give the same table for every file Arrow accepts.

import csv as _csv_mod  # noqa: E402
import io as _io  # noqa: E402

from hypothesis import assume, given, settings, strategies as st  # noqa: E402

from analytics.ingest import io as reader  # noqa: E402
from analytics.ingest.distinct import distinct  # noqa: E402

_CELL = st.text(alphabet=st.sampled_from(list("ab07 ,;\t\"'\n\r=+-\xa0\u2003\u3000é\u00a0x")), max_size=8)


def _both(data: bytes, sep: str):
    text = data.decode("utf-8-sig")
    arrow = reader._read_csv_arrow(data, sep)
    try:
        return arrow, reader._read_csv_pandas(text, "t.csv", sep)
    except InputError:  # pandas' C tokenizer refuses a quoted lone "\r" ("Buffer overflow caught")
        return arrow, None


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.lists(_CELL, min_size=3, max_size=3), min_size=2, max_size=6),
       sep=st.sampled_from([",", ";", "\t"]), crlf=st.booleans(), bom=st.booleans(),
       quoting=st.sampled_from([_csv_mod.QUOTE_ALL, _csv_mod.QUOTE_MINIMAL]))
def test_arrow_and_pandas_readers_agree_on_every_quoted_table(rows, sep, crlf, bom, quoting):
    # Unquoted, csv.writer leaves a lone "\r" bare: a line break inside a row, a malformed file on
    # which the readers may differ (pandas 2.1 shifts the row's cells; Arrow and later pandas break it)
    assume(quoting == _csv_mod.QUOTE_ALL or not any("\r" in cell for row in rows for cell in row))
    buf = _io.StringIO()
    _csv_mod.writer(buf, delimiter=sep, lineterminator="\r\n" if crlf else "\n",
                    quoting=quoting).writerows([["Patient ID", "Visit day", "CDASI"], *rows])
    data = (b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode()
    arrow, pandas = _both(data, sep)
    if arrow is None or pandas is None:  # one reader refused it: nothing to compare
        assert arrow is not None  # every table csv.writer writes well-formed is read
        return
    got = arrow
    assert got.columns.tolist() == pandas.columns.tolist()
    assert got.to_numpy().tolist() == pandas.to_numpy().tolist()  # Python's strip, exactly
    for i in range(got.shape[1]):  # the distinct values Arrow found are pandas'
        codes, uniques = distinct(got.iloc[:, i])
        want_codes, want_uniques = pd.factorize(pandas.iloc[:, i].to_numpy(), use_na_sentinel=False)
        assert codes.tolist() == want_codes.tolist() and uniques.tolist() == want_uniques.tolist()


def test_the_reader_hands_its_distinct_values_to_validation_and_they_cannot_go_stale():
    import gc

    from analytics.ingest import distinct as d

    raw = read_bytes(b"patient_id,visit_day,cdasi_activity\nP1,0,20\nP2,0,20\nP1,7,15\n", "v.csv")
    column = raw.data["patient_id"]
    codes, uniques = d.distinct(column)
    assert codes.tolist() == [0, 1, 0] and uniques.tolist() == ["P1", "P2"]
    assert d._remembered(column.values) is not None  # found by the reader, not factorised again
    with pytest.raises(ValueError, match="read-only"):
        column.values[0] = "P9"  # the cells cannot change under their codes
    assert d._remembered(column.copy().values) is None  # a copy is a new column
    before = len(d._KNOWN)
    del raw, column
    gc.collect()
    assert len(d._KNOWN) <= before - 3  # the frame's columns are freed, and their codes with them


@pytest.mark.parametrize("data", [
    b"patient_id,visit_day\n P1 ,\xc2\xa00\xc2\xa0\n\nP2,  7\t\n",  # spaces, NBSP, blank line, tab
    b"patient_id,visit_day\r\nP1,0\r\n",
    b'patient_id,note\nP1,"a, ""quoted"" note\nover two lines"\n',
    b"\xef\xbb\xbfpatient_id;visit_day\nP1;0\n",
    b"patient_id,visit_day,,\nP1,0,,\n",  # empty trailing columns stay
])
def test_arrow_and_pandas_readers_agree_on_awkward_files(data):
    sep = reader._sniff_delimiter(data.decode("utf-8-sig"))
    arrow, pandas = _both(data, sep)
    assert arrow is not None
    got = arrow
    assert got.columns.tolist() == pandas.columns.tolist()
    assert got.to_numpy().tolist() == pandas.to_numpy().tolist()


def test_a_ragged_file_falls_back_to_pandas_and_its_message():
    data = b"patient_id,visit_day\nP1,0\nP2\nP3,1,2\n"
    assert reader._read_csv_arrow(data, ",") is None
    with pytest.raises(InputError, match="well-formed.*line 4"):
        read_bytes(data, "ragged.csv")
    short = read_bytes(b"patient_id,visit_day\nP1,0\nP2\n", "short.csv").data  # pandas pads a short row
    assert short["patient_id"].tolist() == ["P1", "P2"]
