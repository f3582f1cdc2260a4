"""The dashboard's server process: Streamlit's own command line (``python -m dashboard.serve run
app.py ...`` takes exactly the arguments of ``streamlit run``), in a process that starts importing
what the first page needs while the server starts.

Streamlit runs the app's script only when a browser opens a session, so without this the first
visitor waits for pandas, Arrow, SQLAlchemy and the analytics package to import (0.8 s or more on a
2-core machine) on top of reading the export. The imports run in a daemon thread; a script that
needs a module still importing waits for it (Python's import lock) and never imports it twice.
No data is read here: the export is read by the first session, as before.

numpy and pandas are imported *before* the thread starts, in the main thread: plotly (which
Streamlit imports at once) asks ``sys.modules`` whether pandas is there without importing it, and
a pandas half-imported by the thread made it fail ("partially initialized module 'pandas' has no
attribute 'Series'") and the server not start, once in a few starts on a 2-core machine.
"""

from __future__ import annotations

import importlib
import sys
import threading

# Imported before the server starts: modules that the server's own imports look up in sys.modules
# without importing them (plotly's optional pandas and numpy), which must never be seen half-imported.
FIRST = ("numpy", "pandas")
# What the first page (Data) imports next, in the order it needs them, while the server starts.
PRELOAD = ("pyarrow.csv", "pyarrow.compute", "analytics.pipeline", "analytics.spec",
           "analytics.lines.cohort", "sqlalchemy", "alembic.command", "analytics.library")


def _import(names: tuple[str, ...]) -> None:
    """Import ``names`` in order; stop quietly at the first failure (the page that needs the module
    imports it again and shows the error there)."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            return


def preload() -> None:
    """Import :data:`PRELOAD` (in the preload thread)."""
    _import(PRELOAD)


def main() -> None:
    _import(FIRST)
    threading.Thread(target=preload, name="cdasi-preload", daemon=True).start()
    from streamlit.web.cli import main as streamlit_main

    sys.argv[0] = "streamlit"
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
