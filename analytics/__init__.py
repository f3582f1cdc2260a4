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
    "CdasiError": "errors", "InputError": "errors", "InvalidDataError": "errors", "MappingError": "errors",
    "OptionError": "errors",
    "ColumnMapping": "ingest.io", "load_mapping": "ingest.io", "read_bytes": "ingest.io", "read_table": "ingest.io",
    "Finding": "ingest.validation_report", "ValidationReport": "ingest.validation_report",
    "Prepared": "ingest.validate", "prepare": "ingest.validate",
    "DeriveOptions": "lines.options", "ResponseRule": "lines.options", "MixedSpec": "lines.options",
    "Derivation": "lines.derive", "derive": "lines.derive",
    "CohortFilter": "lines.cohort", "apply_filter": "lines.cohort", "analysis_table": "lines.analysis_table",
    "fit_km": "stats.survival", "fit_cox": "stats.cox", "fit_competing": "stats.competing",
    "fit_interval": "stats.interval", "fit_mixed": "stats.mixed", "fit_adjusted": "stats.adjusted",
    "table1": "stats.table1", "compute_quality": "stats.quality",
    "Analysis": "pipeline", "analyze": "pipeline", "load": "pipeline", "write_outputs": "pipeline",
    "ModelOptions": "models", "fit_models": "models",
    "build_pack": "outputs.pack", "PackOptions": "outputs.pack",
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
