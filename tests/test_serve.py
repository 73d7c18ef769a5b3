"""`nmt serve`: the JSON API, its limits and errors, dynamic batching, and that the
server translates every sentence exactly as file translation does."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.artifacts.ctranslate2 import export_ctranslate2
from nmt.cli.app import app as cli_app
from nmt.inference.load import TranslateOptions, make_translator
from nmt.models import build_model
from nmt.serve.app import ServeLimits, create_app
from nmt.serve.batcher import Batcher, QueueFull
from nmt.serve.server import ServeOptions, load_service, serve_in_thread
from nmt.textio import read_lines
from tests import trained_tiny
from tests.conftest import FIXTURES, tiny_config

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The trained tiny Transformer as a checkpoint and as an exported directory."""
    root = tmp_path_factory.mktemp("serve")
    ckpt = trained_tiny.trained_checkpoint(root)
    return {"pytorch": ckpt, "ctranslate2": export_ctranslate2(ckpt, root / "ct2")}


@pytest.fixture(scope="module")
def client(models) -> TestClient:
    service = load_service(models["ctranslate2"], ServeOptions(beam=1))
    with TestClient(create_app(service, ServeLimits(max_sentences=8, max_chars=200))) as c:
        yield c


def _lines() -> list[str]:
    unseen = (FIXTURES / "test.de").read_text(encoding="utf-8").splitlines()[:20]
    return trained_tiny.sources() + unseen + [""]


@pytest.mark.parametrize("engine", ["ctranslate2", "pytorch"])
def test_concurrent_requests_equal_file_translation(engine: str, models, tmp_path) -> None:
    lines = _lines()
    src = tmp_path / "in.de"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = make_translator(models[engine], TranslateOptions(beam=1)).translate_lines(
        read_lines(src)
    )
    service = load_service(models[engine], ServeOptions(beam=1))
    app = create_app(service, ServeLimits(max_wait_ms=20))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http:

        def one(line: str) -> str:
            response = http.post("/translate", json={"text": [line]})
            assert response.status_code == 200, response.text
            return response.json()["translations"][0]

        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(one, lines))
        health = http.get("/health").json()
    assert got == expected
    assert health["engine"] == engine and health["sentences"] == len(lines)
    assert health["batches"] < len(lines)  # concurrent requests shared searches


def test_a_request_with_many_sentences_keeps_their_order(client) -> None:
    lines = ["", *trained_tiny.sources()[:6], "  "]
    response = client.post("/translate", json={"text": lines, "beam": 2})
    assert response.status_code == 200
    got = response.json()["translations"]
    assert got[1:7] == trained_tiny.references()[:6] and got[0] == got[-1] == ""
    assert client.post("/translate", json={"text": []}).json() == {"translations": []}


@pytest.mark.parametrize(
    "body,status,message",
    [
        (b"", 400, "empty body"),
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
        (b'["Hallo"]', 422, "JSON object"),
        (b"{}", 422, "text"),
        (b'{"text": "Hallo"}', 422, "text"),
        (b'{"text": [1, 2]}', 422, "text.0"),
        (b'{"text": ["a"], "beam": "5"}', 422, "beam"),
        (b'{"text": ["a"], "beam": 0}', 422, "beam"),
        (b'{"text": ["a"], "beam": 1000}', 422, "beam: at most"),
        (b'{"text": ["a"], "length_penalty": -1}', 422, "length_penalty"),
        (b'{"text": ["a"], "colour": "red"}', 422, "colour"),
        (b'{"text": ["a", "b"], "attention": true}', 422, "exactly one sentence"),
        (b'{"text": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]}', 413, "at most 8"),
        (b'{"text": ["' + b"x" * 201 + b'"]}', 413, "text.0 has 201 characters"),
        (b'{"text": ["ok", "\\ud800"]}', 422, "text.1 holds a lone surrogate"),
        (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "not valid JSON"),
    ],
)
def test_bad_requests_get_a_json_4xx(client, body: bytes, status: int, message: str) -> None:
    response = client.post("/translate", content=body, headers=JSON)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert client.post("/translate", json={"text": ["Hallo"]}).status_code == 200  # still up


def test_oversized_body_is_refused_before_parsing(client) -> None:
    huge = b'{"text": ["' + b"a" * 300_000 + b'"]}'
    response = client.post("/translate", content=huge, headers=JSON)
    assert response.status_code == 413 and "exceeds" in response.json()["error"]
    chunks = (b"x" * 65_536 for _ in range(8))  # no Content-Length: counted while read
    response = client.post("/translate", content=chunks, headers=JSON)
    assert response.status_code == 413 and "exceeds" in response.json()["error"]


def test_unknown_routes_and_methods_answer_json(client) -> None:
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    assert client.get("/translate").status_code == 405
    assert "error" in client.get("/translate").json()


def test_health_and_page(client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["engine"] == "ctranslate2"
    assert health["attention"] is True and health["limits"]["max_sentences"] == 8
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="source"' in page.text and "http" not in page.text.replace("http-equiv", "")


def test_attention_comes_with_one_sentence(client) -> None:
    line = trained_tiny.sources()[2]
    answer = client.post("/translate", json={"text": [line], "attention": True}).json()
    att = answer["attention"]
    assert att["translation"] == answer["translations"][0] == trained_tiny.references()[2]
    assert len(att["weights"]) == len(att["target"])
    assert all(len(row) == len(att["source"]) for row in att["weights"])


def test_a_model_without_attention_says_so(tok, tmp_path) -> None:
    cfg = tiny_config("lstm")
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)
    save_checkpoint(tmp_path / "lstm.safetensors", model, tok, cfg)
    service = load_service(tmp_path / "lstm.safetensors", ServeOptions(beam=1))
    with TestClient(create_app(service)) as c:
        assert c.get("/health").json()["attention"] is False
        answer = c.post("/translate", json={"text": ["Ein Hund."], "attention": True}).json()
        assert answer["attention"] is None and len(answer["translations"]) == 1


def test_a_full_queue_answers_503(models) -> None:
    service = load_service(models["ctranslate2"], ServeOptions(beam=1))
    with TestClient(create_app(service, ServeLimits(max_queue=2))) as c:
        response = c.post("/translate", json={"text": ["a", "b", "c"]})
        assert response.status_code == 503 and "busy" in response.json()["error"]
        assert c.post("/translate", json={"text": ["a", "b"]}).status_code == 200


def test_a_failing_search_is_a_500_and_the_server_goes_on(models, monkeypatch) -> None:
    service = load_service(models["ctranslate2"], ServeOptions(beam=1))
    with TestClient(create_app(service), raise_server_exceptions=False) as c:
        monkeypatch.setattr(service.translator, "translate_lines", _fail)
        response = c.post("/translate", json={"text": ["Hallo"]})
        assert response.status_code == 500 and "error" in response.json()
        monkeypatch.undo()
        assert c.post("/translate", json={"text": ["Hallo"]}).status_code == 200


def _fail(lines: list[str]) -> list[str]:
    raise RuntimeError("search failed")


# --- the batcher on its own -----------------------------------------------------------------


def test_batcher_gathers_waiting_jobs_and_bounds_its_queue() -> None:
    entered, release, calls = threading.Event(), threading.Event(), []

    def run(key, lines: list[str]) -> list[str]:
        entered.set()
        release.wait(10)
        calls.append((key, list(lines)))
        return [line.upper() for line in lines]

    batcher = Batcher(run, max_batch=64, max_wait=0.0, max_queue=5)
    batcher.start()
    first = batcher.submit("k", ["a"])
    assert entered.wait(10)  # the worker took it alone and is blocked in run()
    waiting = [batcher.submit("k", ["b", "c"]), batcher.submit("j", ["d"])]
    with pytest.raises(QueueFull):
        batcher.submit("k", ["e", "f"])  # 1 + 2 + 1 + 2 > 5
    release.set()
    assert first.result(10) == ["A"]
    assert [f.result(10) for f in waiting] == [["B", "C"], ["D"]]
    batcher.stop()
    assert calls == [("k", ["a"]), ("k", ["b", "c"]), ("j", ["d"])]  # grouped by key
    assert batcher.waiting == 0


def test_serve_reports_a_busy_port_in_one_line(models) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        args = ["serve", str(models["ctranslate2"]), "--port", str(port)]
        result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 2 and result.output.startswith("error:")
    assert result.output.count("\n") == 1
