"""Reading the project's small TOML files (the analysis spec, the stepwise scheme): each
problem becomes an error that names the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import InputError, OptionError


def parse(text: str, source: str) -> dict:
    """The TOML document in ``text``; OptionError naming ``source`` when it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"{source} is not valid TOML: {exc}") from None


def read(path: str | Path, what: str) -> str:
    """The text of the file (UTF-8, a BOM allowed); InputError naming ``what`` and the path."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the {what} {p}: {exc}") from None
