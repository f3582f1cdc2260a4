"""Writers. Every CSV or XLSX the project writes goes through here, so every cell that a
spreadsheet would run as a formula (starting with =, +, -, @, tab or carriage return) is
neutralised with a leading apostrophe (OWASP "CSV injection")."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["neutralise", "write_csv", "write_parquet", "write_json", "json_safe", "csv_bytes", "xlsx_bytes"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = "^[=+\\-@\t\r]"  # the same, for Arrow's regular expressions


def _neutral_cell(v):
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def _formula_among(uniques: np.ndarray) -> bool:
    """Whether a text cell among a column's distinct values (or, for unhashable cells, all of its
    cells) starts like a formula: by Arrow's string kernel where every value is text or missing (a
    line id column has as many values as lines), else value by value."""
    if len(uniques) > 1000:
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            text = pa.array(uniques, type=pa.string(), from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            pass  # not all text
        else:
            return bool(pc.any(pc.match_substring_regex(text, _FORMULA_PATTERN)).as_py())
    return any(isinstance(u, str) and u.startswith(_FORMULA_START) for u in uniques)


def neutralise(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells (and headers) cannot run as spreadsheet formulas."""
    return _neutralise(df)


def _neutralise(df: pd.DataFrame, coded: dict | None = None) -> pd.DataFrame:
    """:func:`neutralise`; ``coded``: filled with (codes, distinct values) of each object column
    left as it was, by position, found while looking for formulas, for the CSV writer to print
    each distinct value once (missing: code -1)."""
    out = df.copy(deep=False)  # columns that need no change are shared, not copied; changed ones are replaced
    for i in range(out.shape[1]):
        s = out.iloc[:, i]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            values = s.to_numpy(dtype=object)
            try:
                codes, uniques = pd.factorize(values)
            except TypeError:  # unhashable cells (lists): look at every cell
                formula = _formula_among(values)
            else:
                formula = _formula_among(uniques)
                if coded is not None and not formula:
                    coded[i] = (codes, uniques)
            if formula:
                out.isetitem(i, s.map(_neutral_cell))
    out.columns = [_neutral_cell(str(c)) for c in out.columns]
    return out


_PLAIN_NUMBERS = (np.dtype("float64"), np.dtype("int64"), np.dtype("bool"))


def _distinct_numbers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(codes, distinct values) of a number array, code -1 for missing, for printing each distinct
    value once; None when -0.0 and 0.0 both occur (one distinct value, printed differently)."""
    if values.dtype.kind == "f" and np.signbit(values[values == 0]).any():
        return None
    return pd.factorize(values, use_na_sentinel=True)


def _as_csv_text(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its plain number columns (float64, int64, bool) replaced by the exact text
    pandas' CSV writer gives them, formatted once per distinct value (missing: empty), where a
    column repeats its values. The CSV is byte for byte the same; writing it is faster, as the
    writer formats each number of a large table again otherwise."""
    out = None
    for i in range(df.shape[1]):
        column = df.iloc[:, i]
        if column.dtype not in _PLAIN_NUMBERS or len(column) < 1000:  # not nullable Int64: pandas writes NA empty
            continue
        values = column.to_numpy()
        distinct = _distinct_numbers(values)
        if distinct is None or len(distinct[1]) * 4 > len(values):
            continue
        codes, uniques = distinct
        text = np.append(uniques.astype(str).astype(object), "")  # code -1 (missing) is the last, empty
        out = df.copy(deep=False) if out is None else out
        out.isetitem(i, text[codes])
    return df if out is None else out


def _no_infinity(df: pd.DataFrame) -> pd.DataFrame:
    """Infinite values (a median not reached, a limit that cannot be estimated) as empty cells,
    as the contract has them (null), never "inf" in a CSV."""
    floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    if not floats or not np.isinf(df[floats].to_numpy(dtype=float)).any():
        return df
    out = df.copy()
    out[floats] = out[floats].replace([np.inf, -np.inf], np.nan)
    return out


_CSV_SPECIAL = '[",\r\n]'  # a cell with one of these is quoted by pandas' writer
_CSV_CHUNK = 50_000  # rows formatted at once by the Arrow writer (bounded memory)


def _arrow_text(column: pd.Series, coded: tuple | None = None):
    """The cells of ``column`` as Arrow strings, exactly as pandas' CSV writer prints them
    (missing: null), or None for a column this does not cover. Floats are printed by numpy's
    ``astype(str)`` (what pandas itself calls), once per distinct value; integers by Arrow's cast
    (plain decimal, as ``str``); booleans as True/False; text as is. ``coded``: an object column's
    (codes, Arrow strings of its distinct values), from :func:`_coded_text`: taken, not converted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if coded is not None:
        codes, text = coded
        return pc.take(text, pa.array(codes, mask=codes < 0, type=pa.int64()))
    values = column.to_numpy() if column.dtype != object else column.to_numpy(dtype=object)
    kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else None
    if kind == "f" and column.dtype == np.float64:
        distinct = _distinct_numbers(values)
        codes, uniques = distinct if distinct is not None else (
            np.where(np.isnan(values), -1, np.arange(len(values))), values)  # every cell printed
        text = pa.array(np.asarray(uniques).astype(str), type=pa.string())
        return pc.take(text, pa.array(codes, mask=codes < 0, type=pa.int64()))
    if kind in ("i", "u") or isinstance(column.dtype, pd.Int64Dtype):
        return pc.cast(pa.array(column, from_pandas=True), pa.string())
    if kind == "b":
        return pc.take(pa.array(["False", "True"]), pa.array(values.astype(np.int8)))
    if column.dtype == object:
        if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
            return None  # bytes, numbers or mixed cells: pandas prints each with str()
        try:
            return pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            return None
    return None


def _coded_text(coded: dict) -> dict:
    """Object columns' (codes, distinct values) as (codes, Arrow strings), for those whose
    distinct values are all text; the others are converted chunk by chunk (or refused)."""
    import pyarrow as pa

    out = {}
    for i, (codes, uniques) in coded.items():
        if pd.api.types.infer_dtype(uniques, skipna=True) not in ("string", "empty"):
            continue
        try:
            out[i] = (codes, pa.array(uniques, type=pa.string(), from_pandas=True))
        except (pa.ArrowException, TypeError, ValueError):
            continue
    return out


def _arrow_csv(df: pd.DataFrame, fh, coded: dict | None = None) -> bool:
    """Write ``df`` as pandas' ``to_csv(index=False, lineterminator="\\n")`` would, byte for byte,
    with Arrow's string kernels joining the cells (pandas' writer builds a Python list per row: 3 s
    of the 5 s that the line tables of 100,000 patients took). False, with nothing written, when a
    column is of a kind this does not cover (dates, categories, mixed objects) or a cell or header
    would be quoted; the caller then uses pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    header = [str(c) for c in df.columns]
    if df.shape[1] < 2 or any(re.search(_CSV_SPECIAL, h) for h in header):
        return False
    fh.write((",".join(header) + "\n").encode("utf-8"))
    comma, newline, empty = pa.scalar(","), pa.scalar("\n"), pa.scalar("")
    text = _coded_text(coded or {})
    for start in range(0, len(df), _CSV_CHUNK):
        chunk = df.iloc[start:start + _CSV_CHUNK]
        cells = [_arrow_text(chunk.iloc[:, i], (text[i][0][start:start + _CSV_CHUNK], text[i][1]) if i in text else None)
                 for i in range(chunk.shape[1])]
        if any(c is None for c in cells):
            return _undo(fh)
        rows = pc.binary_join_element_wise(*cells, comma, null_handling="replace", null_replacement="")
        rows = pc.binary_join_element_wise(rows, empty, newline)  # each row followed by a newline
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset:rows.offset + len(rows) + 1]
        body = np.frombuffer(rows.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
        # pandas quotes a cell with a comma, a quote or a line break: then every row would not
        # have exactly its separators and its one newline
        if (np.count_nonzero(body == ord(",")) != len(chunk) * (chunk.shape[1] - 1)
                or np.count_nonzero(body == ord("\n")) != len(chunk)
                or np.count_nonzero(body == ord('"')) or np.count_nonzero(body == ord("\r"))):
            return _undo(fh)
        fh.write(memoryview(body))
    pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed blocks: give them back
    return True


def _undo(fh) -> bool:
    fh.seek(0)
    fh.truncate()
    return False


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """A neutralised CSV: machine-readable names, full precision, empty cells for missing or
    infinite values (a path ending in .gz is gzipped). The same bytes as pandas' writer gives
    (a test holds them equal), written by :func:`_arrow_csv` where it can."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    coded = {}  # each text column's distinct values, found once: for formulas, then to print them
    df = _neutralise(_no_infinity(df), coded)
    if path.suffix.lower() == ".csv":
        with open(path, "wb") as fh:
            if _arrow_csv(df, fh, coded):
                return path
    _as_csv_text(df).to_csv(path, index=False, lineterminator="\n")
    return path


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """A neutralised Parquet file (zstd): typed columns, empty cells for missing or infinite values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralise(_no_infinity(df)).to_parquet(path, index=False, compression="zstd")
    return path


def json_safe(obj):
    """Convert numpy/pandas scalars, NaN and NA into plain JSON values (NaN -> null)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj


def write_json(obj, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def csv_bytes(df: pd.DataFrame, stamp=None, table: str = "") -> bytes:
    """A neutralised CSV of ``df`` (UTF-8 with BOM, so spreadsheets read accents right), with
    machine-readable names, full precision and empty cells for missing or infinite values.

    ``stamp`` (a :class:`~analytics.display.provenance.Stamp`): ``#`` comment lines above the
    header name the table and the analysis behind it, then the data dictionary, one line per
    column (``pandas.read_csv(path, comment="#")``). ``table``: the table's name, for the
    dictionary's descriptions."""
    from .provenance import csv_comment

    head = csv_comment(stamp)
    if stamp is not None:
        from .tables import dictionary

        dd = dictionary({table: df})
        head += "# columns:\n" + "".join(
            f"#   {r.column}: {r.label}" + (f" ({r.unit})" if r.unit else "") + f", {r.type}"
            + (f"; {r.description}" if r.description else "") + "\n" for r in dd.itertuples())
    return (head + _as_csv_text(neutralise(_no_infinity(df))).to_csv(index=False, lineterminator="\n")
            ).encode("utf-8-sig")


def xlsx_bytes(sheets: dict[str, pd.DataFrame], stamp=None, people: bool = True) -> bytes:
    """One formatted workbook, a sheet per table (bold header, frozen first row, fitted widths),
    every text cell neutralised.

    ``people`` (the default): the sheets are tables for people (:func:`analytics.display.tables.for_sheet`:
    labelled columns with units, canonical names, numbers kept as numbers with number formats,
    p-values shown as "< 0.001", dates without times), and a sheet ``columns`` pairs each header
    with the CSV's column name and its description (the data dictionary).

    ``stamp`` (a :class:`~analytics.display.provenance.Stamp`): a last sheet ``about`` lists the
    analysis behind the tables (rule, arms, filters, data, the spec as TOML), and the workbook's
    document properties carry the title, the description and the spec."""
    import io

    from openpyxl.styles import Font

    from .tables import column, dictionary, for_sheet

    buf = io.BytesIO()
    used: set[str] = set()
    with pd.ExcelWriter(buf, engine="openpyxl") as xw:
        for name, df in sheets.items():
            sheet = _sheet_name(name, used)
            formats = {}
            if people:
                out, formats = for_sheet(df, str(name))
            else:
                out = df.reset_index(drop=True)
            out = neutralise(out)
            out.to_excel(xw, sheet_name=sheet, index=False)
            ws = xw.sheets[sheet]
            ws.freeze_panes = "A2"
            for cell in ws[1]:
                cell.font = Font(bold=True)
            for i, col in enumerate(out.columns, start=1):
                letter = ws.cell(1, i).column_letter
                fmt = formats.get(col) or formats.get(str(col).lstrip("'"))
                if fmt:
                    for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                        if isinstance(cell.value, (int, float)) or hasattr(cell.value, "isoformat"):
                            cell.number_format = fmt
                width = max([len(str(col))] + [len(str(v)) for v in out.iloc[:200, i - 1].tolist()])
                ws.column_dimensions[letter].width = min(60, width + 2)
        if people and sheets:
            dd = dictionary({str(k): v for k, v in sheets.items()})
            dd.insert(2, "header", [column(c, t).header for t, c in zip(dd["table"], dd["column"])])
            name = _sheet_name("columns", used)
            neutralise(dd).to_excel(xw, sheet_name=name, index=False)
            ws = xw.sheets[name]
            for cell in ws[1]:
                cell.font = Font(bold=True)
            for letter, width in zip("ABCDEFG", (22, 26, 40, 34, 12, 10, 90)):
                ws.column_dimensions[letter].width = width
        if stamp is not None:
            _about(xw, stamp, set(xw.sheets))
    return buf.getvalue()


def _sheet_name(name, used: set[str]) -> str:
    base = "".join(ch for ch in str(name) if ch not in '[]:*?/\\')[:31] or "Sheet"
    sheet, i = base, 2
    while sheet.lower() in {u.lower() for u in used}:
        sheet = f"{base[:28]}_{i}"
        i += 1
    used.add(sheet)
    return sheet


def _about(xw, stamp, taken: set[str]) -> None:
    from openpyxl.styles import Alignment, Font

    props = xw.book.properties
    props.title, props.subject = stamp.title or None, stamp.description or None
    props.description, props.creator = stamp.spec or None, stamp.software or None
    props.keywords = "cdasi-outcomes"
    name = next(n for n in ("about", "about_analysis", "_about") if n not in taken)
    rows = pd.DataFrame([(k, v) for k, v in stamp.as_rows()], columns=["item", "value"])
    neutralise(rows).to_excel(xw, sheet_name=name, index=False)
    ws = xw.sheets[name]
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.column_dimensions["A"].width = 24
    ws.column_dimensions["B"].width = 100
    for (cell,) in ws.iter_rows(min_row=2, min_col=2, max_col=2):
        cell.alignment = Alignment(wrap_text=True, vertical="top")
