"""The web page of `nmt serve` in a real headless browser: type a sentence, see its
translation and the attention heatmap.

Drives Debian's chromium (``apt-get install chromium``) through Playwright; Playwright's
own browser download is not used. Skipped only when chromium is not installed.
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from nmt.artifacts.ctranslate2 import export_ctranslate2
from nmt.serve.app import create_app
from nmt.serve.server import ServeOptions, load_service, serve_in_thread
from tests import trained_tiny

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    exported = export_ctranslate2(trained_tiny.trained_checkpoint(root), root / "ct2")
    service = load_service(exported, ServeOptions(beam=1))
    with serve_in_thread(create_app(service)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def test_typing_a_sentence_shows_its_translation_and_attention(browser, page_url) -> None:
    source, reference = trained_tiny.sources()[1], trained_tiny.references()[1]
    page = browser.new_page()
    page.goto(page_url + "/")
    expect(page.locator("#model")).to_contain_text("ctranslate2")
    page.locator("#source").fill(source)
    page.locator("#translate").click()
    expect(page.locator("#output .translation")).to_have_text([reference], timeout=20_000)
    heatmap = page.locator("#attention table.heat")
    expect(heatmap).to_be_visible()
    pieces = heatmap.locator("tbody th").all_inner_texts()  # one row per output piece
    assert "".join(pieces).replace("▁", " ").strip() == reference
    columns = heatmap.locator("thead th").count() - 1  # one per source piece
    assert heatmap.locator("tbody tr").first.locator("td").count() == columns > 1
    assert page.locator("#error").inner_text() == ""


def test_several_lines_and_a_server_error_message(browser, page_url) -> None:
    lines = trained_tiny.sources()[:3]
    page = browser.new_page()
    page.goto(page_url + "/")
    page.locator("#source").fill("\n".join(lines))
    page.locator("#source").press("Control+Enter")
    expect(page.locator("#output .translation")).to_have_text(
        trained_tiny.references()[:3], timeout=20_000
    )
    expect(page.locator("#attention table")).to_have_count(0)  # only for one sentence
    page.locator("#source").fill("x" * 3000)  # over the server's per-sentence limit
    page.locator("#translate").click()
    expect(page.locator("#error")).to_contain_text("at most 2000", timeout=20_000)
