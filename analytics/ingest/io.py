"""Reading a visit export (CSV, XLSX, Parquet) into a table of text, with headers matched to
the schema. Parsing values is the validator's job: nothing here guesses types, so nothing is
silently mangled (patient id ``007`` stays ``007``)."""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import math
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import InputError, MappingError
from .distinct import remember
from .schema import THERAPY_COLUMNS, VISIT_COLUMNS, Column, normalise_header

DATE_FORMATS = ("auto", "ymd", "dmy", "mdy")  # the mapping's date_format and --date-format

__all__ = ["ColumnMapping", "RawTable", "load_mapping", "mapping_from_bytes", "read_table", "read_bytes"]

_MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class ColumnMapping:
    """The user's TOML mapping file: extra header names and drug synonyms.

    ``columns`` maps a header in the export to a schema column; ``drugs`` maps a drug
    name to an agent (a generic name or any known synonym)."""

    columns: dict[str, str] = field(default_factory=dict)
    drugs: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    date_format: str = "auto"  # auto | ymd | dmy | mdy: the order of day and month in non-ISO dates
    # why patient ids that look like record numbers are pseudonyms: waives the guard's patient-id rule,
    # and the reason goes into results.json and manifest.json
    patient_id_override: str | None = None


def load_mapping(path: str | Path | None) -> ColumnMapping:
    if path is None:
        return ColumnMapping()
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise MappingError(f"mapping file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"cannot read mapping file {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"mapping file {p} is not valid TOML: {exc}") from None
    return mapping_from_dict(raw, source=str(p))


def mapping_from_bytes(data: bytes, name: str = "mapping.toml") -> ColumnMapping:
    """A mapping file from bytes (an upload)."""
    try:
        raw = tomllib.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise MappingError(f"mapping file {name} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"mapping file {name} is not valid TOML: {exc}") from None
    return mapping_from_dict(raw, source=name)


def mapping_from_dict(raw: dict, source: str | None = None) -> ColumnMapping:
    where = source or "mapping"
    unknown_tables = set(raw) - {"columns", "drugs", "date_format", "patient_id_override"}
    if unknown_tables:
        raise MappingError(f"{where}: unknown table(s) {sorted(unknown_tables)}; use [columns], [drugs], "
                           "date_format and patient_id_override")
    override = raw.get("patient_id_override")
    if override is not None:
        if not isinstance(override, str) or len(override.strip()) < 12:
            raise MappingError(f"{where}: patient_id_override = {override!r}; give the reason in words, e.g. "
                               'patient_id_override = "study numbers issued by the trial office, not record numbers"')
        override = override.strip()
    date_format = raw.get("date_format", "auto")
    if date_format not in DATE_FORMATS:
        raise MappingError(f"{where}: date_format = {date_format!r}; use one of {', '.join(DATE_FORMATS)} "
                           '("dmy": day first, dd.mm.yyyy)')
    columns = raw.get("columns", {})
    drugs = raw.get("drugs", {})
    if not isinstance(columns, dict) or not isinstance(drugs, dict):
        raise MappingError(f"{where}: [columns] and [drugs] must be tables of \"name\" = \"target\"")
    valid = {c.name for c in (*VISIT_COLUMNS, *THERAPY_COLUMNS)}
    for k, v in {**columns, **drugs}.items():
        if not isinstance(v, str):
            raise MappingError(f"{where}: the value for {k!r} must be a string, not {v!r}")
    bad = {k: v for k, v in columns.items() if v not in valid}
    if bad:
        k, v = next(iter(bad.items()))
        raise MappingError(f"{where}: [columns] maps {k!r} to {v!r}, which is not a known column; "
                           f"known columns: {', '.join(sorted(valid))}")
    return ColumnMapping(dict(columns), dict(drugs), source, date_format, override)


@dataclass
class RawTable:
    """A table of text cells ("" for blank) with headers renamed to schema names where they match.

    ``rows`` are spreadsheet row numbers (the header is row 1)."""

    data: pd.DataFrame
    kind: str  # visits | therapies
    name: str
    sha256: str
    fmt: str
    headers: dict[str, str]  # schema name -> header as written in the file
    unmatched: list[str]  # headers that matched no schema column (kept as they are)
    duplicate_headers: dict[str, list[str]]  # schema name -> the several headers that matched it
    sheet: str | None = None

    @property
    def n_rows(self) -> int:
        return len(self.data)

    def rows(self, mask_or_index: Iterable) -> list[int]:
        idx = self.data.index[mask_or_index] if not isinstance(mask_or_index, pd.Index) else mask_or_index
        return [int(i) + 2 for i in idx]


def _schema_for(kind: str) -> tuple[Column, ...]:
    if kind == "visits":
        return VISIT_COLUMNS
    if kind == "therapies":
        return THERAPY_COLUMNS
    raise ValueError(f"kind must be 'visits' or 'therapies', not {kind!r}")


def _header_lookup(kind: str, mapping: ColumnMapping) -> dict[str, str]:
    lookup: dict[str, str] = {}
    schema = _schema_for(kind)
    names = {c.name for c in schema}
    for c in schema:
        for alias in c.aliases:
            lookup.setdefault(normalise_header(alias), c.name)
    for c in schema:  # exact names win over aliases
        lookup[normalise_header(c.name)] = c.name
    for header, target in mapping.columns.items():
        if target in names:
            lookup[normalise_header(header)] = target
    return lookup


def _sniff_delimiter(text: str) -> str:
    head = text[:65536]  # the first lines decide; splitting a 150 MB export would cost seconds
    first = next((line for line in head.splitlines() if line.strip()), "")
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        return ","
    try:  # a header with quoted commas: let csv's sniffer decide between the candidates
        return csv.Sniffer().sniff(text[:20000], delimiters=",;\t|").delimiter
    except csv.Error:
        return best


# What Python's str.strip() removes: every character with str.isspace(), so that the Arrow path
# trims exactly what the pandas path does.
_WHITESPACE = "".join(chr(c) for c in range(0x3000 + 1) if chr(c).isspace())


def _read_csv_arrow(data: bytes, sep: str) -> pd.DataFrame | None:
    """The export through Arrow's CSV reader, as :func:`_read_csv` returns it (the first line is the
    header). Parsing, trimming and finding each column's distinct values run in C (one thread:
    buffers that Arrow's worker threads allocate are hard to give back); each distinct string is
    one Python object shared by its cells, which matters for memory at a million visits. None when
    Arrow refuses the file (ragged rows, for instance) or when a column would not stay text: the
    pandas reader then decides, with its messages."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        first = next(csv.reader(io.StringIO(data[:65536].decode("utf-8", "ignore"), newline=""), delimiter=sep), [])
    except csv.Error:
        return None
    names = [f"c{i}" for i in range(max(len(first), 1))]
    pool = pa.default_memory_pool()
    try:
        table = pcsv.read_csv(
            pa.py_buffer(data),
            read_options=pcsv.ReadOptions(column_names=names, block_size=1 << 24, use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter=sep, newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                strings_can_be_null=False, quoted_strings_can_be_null=False),
            memory_pool=pool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_columns != len(names) or any(not pa.types.is_string(t) for t in table.schema.types):
        return None
    if table.num_rows == 0:
        return pd.DataFrame()
    header, columns = [], {}
    for i, n in enumerate(names):  # a column at a time, each Arrow column let go once converted: a bounded peak
        cells = table.column(n)
        header.append(pc.utf8_trim(cells.slice(0, 1), characters=_WHITESPACE).to_pylist()[0])
        # The rows below the header through their distinct values (in order of appearance, as
        # pandas.factorize finds them): each distinct string is one Python object, shared by its
        # cells, and validation reuses the codes. Each column is its own block (nothing copied).
        encoded = cells.slice(1).combine_chunks(memory_pool=pool).dictionary_encode()
        del cells
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        # Trimmed once per distinct value, not per cell. Values that differ only in their spaces
        # become one: numbered by first appearance (the smallest of their codes, since Arrow numbers
        # the distinct values in order of appearance too), as pandas.factorize would number them.
        trimmed = pc.utf8_trim(encoded.dictionary, characters=_WHITESPACE, memory_pool=pool)
        del encoded
        merged, uniques = pd.factorize(trimmed.to_numpy(zero_copy_only=False))
        del trimmed
        if len(uniques) < len(merged):
            codes = merged[codes]
        columns[i] = values = uniques.take(codes)
        remember(values, codes, uniques)
        table = table.drop_columns([n]) if hasattr(table, "drop_columns") else table.drop([n])
    del table
    pool.release_unused()  # give the Arrow buffers back to the system: a million visits is a gigabyte
    body = pd.DataFrame(columns, copy=False)
    body.columns = header  # names may repeat: validation reports that
    return body


def _cell_text(v) -> str:
    if v is None or v is pd.NaT:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (pd.Timestamp, _dt.datetime)):
        if pd.isna(v):
            return ""
        return v.date().isoformat() if (v.hour, v.minute, v.second) == (0, 0, 0) else v.isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, (np.floating,)):
        return _cell_text(float(v))
    return str(v).strip()


def _objects_to_text(df: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for i, col in enumerate(df.columns):
        s = df.iloc[:, i]
        if pd.api.types.is_datetime64_any_dtype(s):
            text = s.dt.strftime("%Y-%m-%d").where(s.notna(), "")
        else:
            text = s.map(_cell_text)
        out[i] = text.astype(str)
    frame = pd.DataFrame(out)
    frame.columns = [_cell_text(c) if not isinstance(c, str) else c for c in df.columns]
    return frame


def _read_csv(data: bytes, name: str) -> pd.DataFrame:
    if b"\x00" in data[:65536]:
        raise InputError(f"{name} looks like a binary file, not CSV, XLSX or Parquet "
                         "(it contains NUL bytes); export the visits as CSV (UTF-8), XLSX or Parquet")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                         "re-save it as 'CSV UTF-8' (Excel) or export it as XLSX") from None
    if not text or text.isspace():  # not strip(): a copy of the whole text (0.5 s at a million visits)
        return pd.DataFrame()
    sep = _sniff_delimiter(text)
    del text  # the decoded copy is as large as the file: not kept while Arrow reads
    frame = _read_csv_arrow(data, sep)
    if frame is None:
        return _read_csv_pandas(data.decode("utf-8-sig"), name, sep)
    return frame


def _read_csv_pandas(text: str, name: str, sep: str) -> pd.DataFrame:
    """The reader for what Arrow refuses; its errors are the ones users see."""
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, header=None, dtype=str, keep_default_na=False,
                            na_filter=False, skip_blank_lines=True, engine="c")
    except pd.errors.ParserError as exc:
        raise InputError(f"{name} is not a well-formed table (delimiter {sep!r}): {exc}. "
                         "Check for stray delimiters or unbalanced quotes in that line") from None
    except (ValueError, csv.Error, MemoryError) as exc:
        raise InputError(f"cannot read {name} as CSV: {exc}") from None
    if frame.empty:
        return pd.DataFrame()
    header = [str(h).strip() for h in frame.iloc[0].tolist()]
    body = frame.iloc[1:].reset_index(drop=True)
    body.columns = header
    for col in range(body.shape[1]):  # strip each distinct value once
        codes, uniques = pd.factorize(body.iloc[:, col], use_na_sentinel=False)
        body.isetitem(col, pd.Series(uniques, dtype=object).str.strip().to_numpy()[codes])
    return body


def _read_excel(data: bytes, name: str, kind: str) -> tuple[pd.DataFrame, str]:
    try:
        book = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")
        sheets = book.sheet_names
        wanted = next((s for s in sheets if normalise_header(s) == kind), sheets[0] if sheets else None)
        if wanted is None:
            return pd.DataFrame(), ""
        frame = book.parse(wanted, header=None, dtype=object)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError, IndexError, EOFError) as exc:
        raise InputError(f"cannot read {name} as an XLSX workbook: {exc}") from None
    frame = frame.dropna(how="all")
    if frame.empty:
        return pd.DataFrame(), wanted
    header = [_cell_text(h) for h in frame.iloc[0].tolist()]
    body = frame.iloc[1:].reset_index(drop=True)
    body.columns = range(body.shape[1])
    body = _objects_to_text(body)
    body.columns = header
    return body, wanted


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise InputError(f"cannot read {name} as Parquet: {exc}") from None
    return _objects_to_text(frame.reset_index(drop=True))


def _detect_format(data: bytes, name: str) -> str:
    suffix = Path(name).suffix.lower()
    if data[:4] == b"PAR1" or suffix in (".parquet", ".pq"):
        return "parquet"
    if data[:4] == b"PK\x03\x04" or suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    if suffix == ".xls":
        raise InputError(f"{name} is an old binary .xls workbook; save it as .xlsx or CSV (UTF-8)")
    return "csv"


def read_bytes(data: bytes, name: str = "visits.csv", kind: str = "visits",
               mapping: ColumnMapping | None = None) -> RawTable:
    """Read an export from bytes (an upload). See :func:`read_table`."""
    mapping = mapping or ColumnMapping()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("read_bytes needs bytes; use read_table for a path")
    data = bytes(data)
    fmt = _detect_format(data, name)
    sheet = None
    if fmt == "csv":
        frame = _read_csv(data, name)
    elif fmt == "xlsx":
        frame, sheet = _read_excel(data, name, kind)
    else:
        frame = _read_parquet(data, name)

    lookup = _header_lookup(kind, mapping)
    headers: dict[str, str] = {}
    duplicates: dict[str, list[str]] = {}
    unmatched: list[str] = []
    new_names: list[str] = []
    for i, original in enumerate(frame.columns):
        original = str(original)
        target = lookup.get(normalise_header(original))
        if target is None or target in headers:
            label = original or f"column_{i + 1}"
            if target is not None:
                duplicates.setdefault(target, [headers[target]]).append(original)
                label = f"{label} (duplicate of {target})"
            else:
                unmatched.append(label)
            while label in new_names or label in lookup.values():
                label += "_"
            if target is None:
                unmatched[-1] = label
            new_names.append(label)
        else:
            headers[target] = original
            new_names.append(target)
    frame.columns = new_names
    return RawTable(frame, kind, name, hashlib.sha256(data).hexdigest(), fmt, headers, unmatched,
                    duplicates, sheet)


def read_table(path: str | Path, kind: str = "visits", mapping: ColumnMapping | None = None) -> RawTable:
    """Read a CSV (comma, semicolon, tab; UTF-8 with or without BOM), XLSX or Parquet export.

    Raises :class:`InputError` when the file cannot be read at all; everything else is left
    to :func:`analytics.ingest.validate.prepare`."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(f"{p} is a folder; give the visits file itself")
        size = p.stat().st_size
        if size > _MAX_BYTES:
            raise InputError(f"{p} is {size / 1e9:.1f} GB; the limit is {_MAX_BYTES / 1e9:.0f} GB")
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p} does not exist") from None
    except PermissionError:
        raise InputError(f"{p} cannot be read (permission denied)") from None
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None
    return read_bytes(data, p.name, kind, mapping)
