"""The serve page in a real browser: Playwright drives Debian's `chromium` package, types a
sentence with a mask, clicks Fill and reads the probability bars; a screenshot is saved.

Skipped, saying why, where chromium or Playwright is missing (`.ci/run` installs chromium with apt;
Playwright cannot download its own browsers here, so it launches the system one).
"""

import shutil
import socket
import threading
import time

import pytest

from bertforge.infer import fill_mask, load_run

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine: `apt-get install chromium` (as .ci/run does)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed: pip install playwright (in bertforge[dev])"),
]


@pytest.fixture(scope="module")
def server(tiny_run):
    """`bertforge serve`'s app on a free port of 127.0.0.1, in a thread of this process."""
    uvicorn = pytest.importorskip("uvicorn")
    from bertforge.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(tiny_run, "cpu"), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_typing_a_masked_sentence_shows_probability_bars(server, tiny_run, tmp_path):
    sentence = "The little <mask> was happy."
    expected = fill_mask(load_run(tiny_run, "cpu"), sentence, 5)[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"{r.url} failed"))
            page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.url}: HTTP {r.status}"))
            page.goto(server)
            page.wait_for_selector("#panel-fill-mask")
            assert page.locator("h2").all_inner_texts() == ["Fill in the mask", "Sentence similarity", "Embedding neighbours", "Model"]
            page.fill("#fill-mask-text", sentence)
            page.locator("#panel-fill-mask button").click()
            bars = page.locator("#panel-fill-mask .bar")
            bars.nth(4).wait_for(timeout=15000)
            labels = page.locator("#panel-fill-mask .bar-label").all_inner_texts()
            values = page.locator("#panel-fill-mask .bar-value").all_inner_texts()
            widths = [page.locator("#panel-fill-mask .bar-fill").nth(i).evaluate("e => e.style.width") for i in range(5)]
            page.locator("#panel-similarity button").click()
            page.wait_for_selector("#similarity-value")
            cosine = float(page.inner_text("#similarity-value"))
            page.wait_for_function("document.querySelector('img.curves') && document.querySelector('img.curves').naturalWidth > 0")
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert labels == [a["token"] for a in expected]
    assert values == [f"{100 * a['score']:.1f}%" for a in expected]
    assert widths == values  # each bar is as long as its probability
    assert -1 <= cosine <= 1
    assert not errors, errors
    assert (tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG"
