#!/usr/bin/env python3
"""The serving page in a real browser: headless Chromium (Debian's package) driven by Playwright
opens `catdog serve`'s page, uploads photos through its file picker, and checks that each photo
shows the class `catdog predict` gives it; saves a screenshot.

    python3 tests/browser/page_check.py CATDOG_BIN MODEL_DIR SCREENSHOT.png PHOTO...
"""
import json
import shutil
import subprocess
import sys


def main():
    catdog, model, shot, photos = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    from playwright.sync_api import sync_playwright

    expected = {
        p["path"].rsplit("/", 1)[-1]: p["predicted"]
        for p in json.loads(subprocess.run(
            [catdog, "predict", "--model", model, "--json", *photos],
            check=True, capture_output=True, text=True).stdout)
    }
    server = subprocess.Popen([catdog, "serve", "--model", model, "--port", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        url = line.split("http://", 1)[1].split()[0]
        url = "http://" + url
        browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True,
                                        args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1180, "height": 760})
            page.goto(url)
            page.wait_for_function("document.querySelector('#card b') !== null", timeout=20000)
            page.set_input_files("#pick", photos)
            page.wait_for_function(
                f"document.querySelectorAll('.verdict[data-class]').length === {len(photos)}",
                timeout=60000)
            shown = page.eval_on_selector_all(
                ".result", "rs => rs.map(r => [r.querySelector('.name').textContent, "
                "r.querySelector('.verdict').dataset.class])")
            page.screenshot(path=shot, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    shown = dict(shown)
    bad = {n: (shown.get(n), c) for n, c in expected.items() if shown.get(n) != c}
    print(f"page showed {shown}; catdog predict: {expected}; screenshot {shot}")
    if bad:
        print(f"mismatch (page, predict): {bad}")
        sys.exit(1)


if __name__ == "__main__":
    main()
