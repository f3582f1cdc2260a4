"""Take the README's dashboard screenshots from the real app in headless Chromium.

    .venv/bin/python docs/make_screenshots.py      # needs chromium (make test installs it)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import free_port, running_dashboard, visit_all  # noqa: E402

with tempfile.TemporaryDirectory() as tmp, running_dashboard(free_port(), Path(tmp) / "log.txt") as url:
    for name, info in visit_all(url, ROOT / "docs" / "img" / "screens", width=1400, height=1000).items():
        print(name, info["charts"], "charts", info["screenshot"])
