"""cdasi-outcomes analytics: pure Python, no Streamlit. The same API serves the CLI, the
dashboard and a researcher's notebook.

The package is lazy (PEP 562): ``import analytics`` loads no modelling or plotting library;
each name below is imported from its module on first use.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cdasi-outcomes")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# name -> module that defines it
_EXPORTS = {
    "Derivation": "derive", "derive": "derive",
    "CdasiError": "errors", "InputError": "errors", "InvalidDataError": "errors", "MappingError": "errors",
    "OptionError": "errors",
    "ColumnMapping": "io", "load_mapping": "io", "read_bytes": "io", "read_table": "io",
    "DeriveOptions": "options", "ResponseRule": "options",
    "Analysis": "pipeline", "analyze": "pipeline", "load": "pipeline", "write_outputs": "pipeline",
    "Finding": "validation_report", "ValidationReport": "validation_report",
    "Prepared": "validate", "prepare": "validate",
    "ModelOptions": "models", "fit_models": "models",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analytics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
