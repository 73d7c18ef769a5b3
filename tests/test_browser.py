"""The web page of `nmt serve` in a real headless browser: type a sentence, see its
translation and the attention heatmap.

Drives Debian's chromium (``apt-get install chromium``) through Playwright; Playwright's
own browser download is not used. Skipped only when chromium is not installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

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
def torch_page_url(tmp_path_factory):
    """The page served from the PyTorch checkpoint itself, which applies glossaries."""
    root = tmp_path_factory.mktemp("browser-torch")
    service = load_service(trained_tiny.trained_checkpoint(root), ServeOptions(beam=2))
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


def _translate_requests(page) -> list[dict]:
    """The bodies of the page's POST /translate requests, as they are sent."""
    bodies: list[dict] = []
    page.on(
        "request",
        lambda r: bodies.append(r.post_data_json) if r.url.endswith("/translate") else None,
    )
    return bodies


def test_glossary_and_keep_markup_reach_the_api(browser, page_url) -> None:
    page = browser.new_page()
    bodies = _translate_requests(page)
    page.goto(page_url + "/")
    page.locator("#glossary-box summary").click()
    page.get_by_label("Glossary").fill("Hund\tdog\n\nKatze = cat\n")
    page.get_by_label("keep markup").check()
    page.locator("#source").fill(trained_tiny.sources()[0])
    page.locator("#translate").click()
    # This page's server runs a CTranslate2 export, which refuses glossaries (they need the
    # PyTorch model): the API's one-line answer shows that the fields arrived and were read.
    expect(page.locator("#error")).to_contain_text("glossary", timeout=20_000)
    assert bodies[-1]["glossary"] == [["Hund", "dog"], ["Katze", "cat"]]
    assert bodies[-1]["markup"] == "html"
    page.get_by_label("Glossary").fill("kein Trenner")
    page.locator("#translate").click()
    expect(page.locator("#error")).to_contain_text("glossary line 1")


def test_the_glossary_box_puts_its_terms_into_the_translation(browser, torch_page_url) -> None:
    source, reference = trained_tiny.sources()[2], trained_tiny.references()[2]
    assert "girl" in reference and "child" not in reference  # the model's own choice
    page = browser.new_page()
    page.goto(torch_page_url + "/")
    page.locator("#glossary-box summary").click()
    page.get_by_label("Glossary").fill("Mädchen\tchild\n")
    page.locator("#source").fill(source)
    page.locator("#translate").click()
    output = page.locator("#output .translation")
    expect(output).to_contain_text("child", timeout=20_000)
    assert page.locator("#error").inner_text() == ""
    page.get_by_label("Glossary").fill("")  # an empty box: the model's own translation
    page.locator("#translate").click()
    expect(output).to_have_text([reference], timeout=20_000)


def test_a_text_file_comes_back_translated_line_for_line(browser, page_url) -> None:
    sources, references = trained_tiny.sources(), trained_tiny.references()
    picks = [i % len(sources) for i in range(150)]
    lines = ["" if i % 7 == 6 else sources[k] for i, k in enumerate(picks)]
    page = browser.new_page()
    bodies = _translate_requests(page)
    page.goto(page_url + "/")
    expect(page.locator("#model")).to_contain_text("ctranslate2")
    text = ("\n".join(lines) + "\n").encode()
    page.get_by_label("Choose a file").set_input_files(
        files=[{"name": "doc.txt", "mimeType": "text/plain", "buffer": text}]
    )
    with page.expect_download(timeout=60_000) as download:
        page.locator("#download").click(timeout=60_000)
    assert download.value.suggested_filename == "doc.translated.txt"
    got = Path(download.value.path()).read_text(encoding="utf-8").split("\n")
    assert len(got) == len(lines) + 1 and got[-1] == ""  # same lines, same final newline
    for line, k, out in zip(lines, picks, got):
        assert out == (references[k] if line else "")
    sent = sum(len(b["text"]) for b in bodies)
    assert sent == sum(1 for line in lines if line) and len(bodies) >= 3  # batches of 64
    done = len([line for line in lines if line])
    expect(page.locator("#file-status")).to_have_text(f"{done} / {done} lines translated")


def test_an_html_file_keeps_its_tags_and_lines(browser, page_url) -> None:
    source = trained_tiny.sources()[2]
    html = [
        "<!doctype html>",
        "<html><head><style>p { color: red; }</style></head>",
        "<body>",
        f"  <p>{source}</p>",
        "<script>",
        "  const x = 1;",
        "</script>",
        "</body></html>",
    ]
    page = browser.new_page()
    bodies = _translate_requests(page)
    page.goto(page_url + "/")
    page.get_by_label("Choose a file").set_input_files(
        files=[{"name": "page.html", "mimeType": "text/html", "buffer": "\n".join(html).encode()}]
    )
    with page.expect_download(timeout=60_000) as download:
        page.locator("#download").click(timeout=60_000)
    got = Path(download.value.path()).read_text(encoding="utf-8").split("\n")
    assert len(got) == len(html)
    assert [g for i, g in enumerate(got) if i != 3] == [h for i, h in enumerate(html) if i != 3]
    assert got[3].startswith("  ")  # indentation kept
    assert [b["text"] for b in bodies] == [[f"<p>{source}</p>"]]
    assert bodies[0]["markup"] == "html"


def test_a_dropped_file_is_translated_too(browser, page_url) -> None:
    sources, references = trained_tiny.sources()[:3], trained_tiny.references()[:3]
    page = browser.new_page()
    page.goto(page_url + "/")
    expect(page.locator("#model")).to_contain_text("ctranslate2")
    page.evaluate(
        """(text) => {
          const data = new DataTransfer();
          data.items.add(new File([text], "dropped.txt", { type: "text/plain" }));
          const drop = document.getElementById("drop");
          drop.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
        }""",
        "\r\n".join(sources),
    )
    with page.expect_download(timeout=60_000) as download:
        page.locator("#download").click(timeout=60_000)
    got = Path(download.value.path()).read_bytes().decode()
    assert got == "\r\n".join(references)  # Windows line ends and no final newline kept
