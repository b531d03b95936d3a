"""Screenshot of a running dashboard into docs/img/dashboard.png (for the README).

.venv/bin/python scripts/dashboard_screenshot.py [URL] [OUT]
Rates two movies in the try-it panel first, so the picture shows a personal list.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.serving_support import CHROMIUM_ARGS, chromium_path  # noqa: E402


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "img" / "dashboard.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.goto(url)
        page.wait_for_function("Number(document.body.dataset.polls || 0) >= 3", timeout=30_000)
        for query, movie, stars in (("star wars", 260, 5), ("toy story", 1, 4)):
            page.fill("#search", query)
            page.locator(f"#search-results li[data-id='{movie}'] button[data-rate='{stars}']").click()
        page.wait_for_function("document.querySelector('#my-source').textContent.includes('anonymous')")
        page.wait_for_timeout(2500)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
