"""cdasi-outcomes analytics: pure Python, no Streamlit. The same API serves the CLI, the
dashboard and a researcher's notebook."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cdasi-outcomes")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .derive import Derivation, derive  # noqa: E402
from .errors import CdasiError, InputError, InvalidDataError, MappingError, OptionError  # noqa: E402
from .io import ColumnMapping, load_mapping, read_bytes, read_table  # noqa: E402
from .options import DeriveOptions, ResponseRule  # noqa: E402
from .pipeline import Analysis, analyze, load, write_outputs  # noqa: E402
from .report import Finding, ValidationReport  # noqa: E402
from .validate import Prepared, prepare  # noqa: E402

__all__ = [
    "__version__", "Analysis", "CdasiError", "ColumnMapping", "Derivation", "DeriveOptions", "Finding",
    "InputError", "InvalidDataError", "MappingError", "OptionError", "Prepared", "ResponseRule",
    "ValidationReport", "analyze", "derive", "load", "load_mapping", "prepare", "read_bytes", "read_table",
    "write_outputs",
]
