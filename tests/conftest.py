from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from analytics import DeriveOptions, ResponseRule, derive, prepare, read_bytes
from analytics.ingest.io import mapping_from_dict

ROOT = Path(__file__).resolve().parents[1]


def table(text: str, kind: str = "visits", name: str | None = None, mapping: dict | None = None):
    data = textwrap.dedent(text).strip().encode()
    return read_bytes(data, name or f"{kind}.csv", kind, mapping_from_dict(mapping or {}))


def prep(visits: str, therapies: str | None = None, mapping: dict | None = None):
    m = mapping_from_dict(mapping or {})
    v = table(visits, "visits", mapping=mapping)
    t = table(therapies, "therapies", mapping=mapping) if therapies is not None else None
    return prepare(v, t, m)


def lines_of(visits: str, therapies: str | None = None, rule: str = "points:4", confirm: bool = False,
             arms: tuple[str, ...] = ("MMF", "IVIG", "JAKi")):
    p = prep(visits, therapies)
    assert p.report.ok, p.report.to_text()
    d = derive(p, DeriveOptions(ResponseRule.parse(rule), confirm, arms))
    return d


def line(d, line_number: int, patient: str = "P1") -> pd.Series:
    rows = d.lines[(d.lines["patient_id"] == patient) & (d.lines["line_number"] == line_number)]
    assert len(rows) == 1, d.lines
    return rows.iloc[0]


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return ROOT / "sample_data"


@pytest.fixture(autouse=True, scope="session")
def _library_of_the_tests(tmp_path_factory):
    """The dashboard records views and downloads in the library's audit log: during the tests that
    is a throwaway SQLite file, never the user's own library (tests that need another set CDASI_DB)."""
    import os

    before = os.environ.get("CDASI_DB")
    if not before:
        os.environ["CDASI_DB"] = f"sqlite:///{tmp_path_factory.mktemp('library') / 'library.sqlite'}"
    yield
    if not before:
        os.environ.pop("CDASI_DB", None)
