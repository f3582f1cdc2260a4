"""Take the README's dashboard screenshots from the real app in headless Chromium: every page as
it opens, then a few views a user reaches by clicking (the Cox tab with its tables for people,
a figure's Journal export, a quality target on the run chart).

    .venv/bin/python docs/make_screenshots.py      # needs chromium (make test installs it)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import (CHROMIUM_ARGS, chromium_path, free_port, running_dashboard, visit_all,  # noqa: E402
                           wait_until_idle)

OUT = ROOT / "docs" / "img" / "screens"


def clicked_views(url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            main = page.locator('[data-testid="stMain"]')

            page.goto(f"{url}/time_to_response", wait_until="domcontentloaded")
            wait_until_idle(page)
            main.get_by_role("tab", name="Cox model").click()
            page.wait_for_timeout(2500)
            main.locator('[data-testid="stDataFrame"]').nth(2).scroll_into_view_if_needed()
            page.wait_for_timeout(800)
            page.screenshot(path=str(OUT / "cox.png"))
            print("cox", OUT / "cox.png")

            main.get_by_role("tab", name="Kaplan-Meier").click()
            page.wait_for_timeout(1500)
            main.locator('[data-testid="stPopover"] button').filter(has_text="Journal").first.click()
            pop = page.locator('[data-testid="stPopoverBody"]').first
            pop.get_by_text("TIFF", exact=True).click()
            wait_until_idle(page)
            pop = page.locator('[data-testid="stPopoverBody"]').first
            pop.get_by_label("Title").fill("Figure 2. Time to response by arm")
            page.keyboard.press("Tab")
            wait_until_idle(page)
            page.screenshot(path=str(OUT / "journal.png"))
            print("journal", OUT / "journal.png")

            page.goto(f"{url}/quality", wait_until="domcontentloaded")
            wait_until_idle(page)
            target = main.locator('[data-testid="stNumberInput"]').filter(has_text="Target").locator("input")
            target.fill("95")
            target.press("Enter")
            wait_until_idle(page)
            page.wait_for_timeout(1500)
            main.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
            page.wait_for_timeout(800)
            page.screenshot(path=str(OUT / "quality_target.png"))
            print("quality_target", OUT / "quality_target.png")
        finally:
            browser.close()


with tempfile.TemporaryDirectory() as tmp, running_dashboard(free_port(), Path(tmp) / "log.txt") as url:
    for name, info in visit_all(url, OUT, width=1400, height=1000).items():
        print(name, info["charts"], "charts", info["screenshot"])
    clicked_views(url)
