"""The dashboard's server process: Streamlit's own command line (``python -m dashboard.serve run
app.py ...`` takes exactly the arguments of ``streamlit run``), in a process that starts importing
what the first page needs while the server starts.

Streamlit runs the app's script only when a browser opens a session, so without this the first
visitor waits for pandas, Arrow, SQLAlchemy and the analytics package to import (0.8 s or more on a
2-core machine) on top of reading the export. The imports run in a daemon thread; a script that
needs a module still importing waits for it (Python's import lock) and never imports it twice.
No data is read here: the export is read by the first session, as before.
"""

from __future__ import annotations

import importlib
import sys
import threading

# What the first page (Data) imports, in the order it needs them.
PRELOAD = ("numpy", "pandas", "pyarrow.csv", "pyarrow.compute", "analytics.pipeline", "analytics.spec",
           "analytics.lines.cohort", "sqlalchemy", "alembic.command", "analytics.library")


def preload() -> None:
    """Import :data:`PRELOAD`; stop quietly at the first failure (the page that needs the module
    imports it again and shows the error there)."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            return


def main() -> None:
    threading.Thread(target=preload, name="cdasi-preload", daemon=True).start()
    from streamlit.web.cli import main as streamlit_main

    sys.argv[0] = "streamlit"
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
