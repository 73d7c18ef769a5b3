"""`nmt serve`: glossary, prefix, scores and alignments in the JSON API."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.artifacts.ctranslate2 import export_ctranslate2
from nmt.inference.markup import parse
from nmt.serve.app import create_app
from nmt.serve.server import ServeOptions, load_service
from tests import trained_tiny
from tests.conftest import tiny_config, tiny_model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve_guided")
    ckpt = trained_tiny.trained_checkpoint(root)
    return {"pytorch": ckpt, "ctranslate2": export_ctranslate2(ckpt, root / "ct2")}


@pytest.fixture(scope="module")
def client(models) -> TestClient:
    with TestClient(create_app(load_service(models["pytorch"], ServeOptions(beam=2)))) as c:
        yield c


def test_plain_requests_keep_their_answer(client) -> None:
    lines = trained_tiny.sources()[:2]
    answer = client.post("/translate", json={"text": lines}).json()
    assert answer == {"translations": trained_tiny.references()[:2]}


def test_glossary_prefix_scores_and_alignments(client) -> None:
    lines = [*trained_tiny.sources()[:3], ""]
    body = {
        "text": lines,
        "glossary": [["Männer", "guys"], ["Holz", "timber"]],
        "prefix": ["", "Many", "", ""],
        "scores": True,
        "alignments": True,
    }
    response = client.post("/translate", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    got = answer["translations"]
    assert "guys" in got[0] and "guys" in got[1] and got[1].startswith("Many")
    assert "timber" in got[2] and got[3] == ""
    assert len(answer["scores"]) == len(answer["alignments"]) == 4
    for text, source, (total, mean), links in zip(
        got, lines, answer["scores"], answer["alignments"]
    ):
        assert total <= mean <= 0
        assert [j for _, j in links] == list(range(len(text.split())))
        assert all(0 <= i < len(source.split()) for i, _ in links)


def test_glossary_as_an_object_and_only_scores(client) -> None:
    line = trained_tiny.sources()[0]
    answer = client.post(
        "/translate", json={"text": [line], "glossary": {"Männer": "guys"}, "scores": False}
    ).json()
    assert set(answer) == {"translations"} and "guys" in answer["translations"][0]
    answer = client.post("/translate", json={"text": [line], "scores": True}).json()
    assert answer["translations"] == trained_tiny.references()[:1]
    assert len(answer["scores"]) == 1 and answer["scores"][0][0] < 0


@pytest.mark.parametrize(
    "body,message",
    [
        ({"text": ["a", "b"], "prefix": ["x"]}, "prefix: 1 prefixes for 2 sentences"),
        ({"text": ["a"], "glossary": [["a", "b", "c"]]}, "glossary.0: expected [source, target]"),
        ({"text": ["a"], "glossary": [["", "b"]]}, "glossary entry 1: the source term is empty"),
        ({"text": ["a"], "glossary": "a=b"}, "glossary"),
        ({"text": ["a"], "scores": "yes"}, "scores"),
    ],
)
def test_bad_guidance_is_a_422(client, body: dict, message: str) -> None:
    response = client.post("/translate", json=body)
    assert response.status_code == 422 and message in response.json()["error"]


def test_an_export_takes_prefixes_only(models) -> None:
    service = load_service(models["ctranslate2"], ServeOptions(beam=1))
    with TestClient(create_app(service)) as c:
        line = trained_tiny.sources()[0]
        answer = c.post("/translate", json={"text": [line], "prefix": ["Some"]}).json()
        assert answer["translations"][0].startswith("Some")
        response = c.post("/translate", json={"text": [line], "glossary": {"a": "b"}})
        assert response.status_code == 422 and "PyTorch" in response.json()["error"]


def test_alignments_need_attention(tok, tmp_path) -> None:
    save_checkpoint(tmp_path / "lstm.safetensors", tiny_model("lstm", tok), tok,
                    tiny_config("lstm"))  # fmt: skip
    service = load_service(tmp_path / "lstm.safetensors", ServeOptions(beam=1))
    with TestClient(create_app(service)) as c:
        response = c.post("/translate", json={"text": ["Ein Hund."], "alignments": True})
        assert response.status_code == 422 and "no attention" in response.json()["error"]


def test_markup_is_kept_by_the_api(client) -> None:
    """The page's "keep markup" switch: tags come back well-formed, the same multiset."""
    import xml.etree.ElementTree as ET

    source = trained_tiny.sources()[0].split()
    line = " ".join(
        [f"<b>{source[0]}</b>", *source[1:-1], f'<a href="x?a=1&amp;b=2">{source[-1]}</a>']
    )
    response = client.post("/translate", json={"text": [line, ""], "markup": "xml"})
    assert response.status_code == 200, response.text
    out, empty = response.json()["translations"]
    assert empty == ""
    root = ET.fromstring(f"<r>{out}</r>")  # well-formed
    assert sorted(e.tag for e in root.iter() if e.tag != "r") == ["a", "b"]
    assert root.find("a").get("href") == "x?a=1&b=2"


def test_glossary_prefix_scores_and_alignments_compose_with_markup(client) -> None:
    """Terms match the text without its tags and come back with the tags around them;
    alignments link the plain words of the source and of the translation."""
    import xml.etree.ElementTree as ET

    source = trained_tiny.sources()[0].split()  # Zwei junge weiße Männer ...
    line = " ".join([f"<b>{source[0]}</b>", *source[1:3], f"<i>{source[3]}</i>", *source[4:]])
    body = {
        "text": [line, "Ein <b>Holz</b> {x}", ""],
        "markup": "xml",
        "glossary": {"Männer": "guys", "Holz": "timber"},
        "prefix": ["", "Some", ""],
        "scores": True,
        "alignments": True,
    }
    response = client.post("/translate", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    first, second, empty = answer["translations"]
    assert empty == "" and answer["alignments"][2] == [] and answer["scores"][2] == [0, 0]
    root = ET.fromstring(f"<r>{first}</r>")  # well-formed, with the source's tags
    assert sorted(e.tag for e in root.iter() if e.tag != "r") == ["b", "i"]
    assert "guys" in parse(first, "xml").plain.split()
    plain = parse(second, "xml").plain.split()  # tags may wrap the prefix's words too
    assert plain[0] == "Some" and "timber" in plain and "{x}" in second
    for text, source_line, (total, mean), links in zip(
        answer["translations"][:2], body["text"][:2], answer["scores"], answer["alignments"]
    ):
        assert total <= mean <= 0
        assert [j for _, j in links] == list(range(len(parse(text, "xml").plain.split())))
        assert all(0 <= i < len(parse(source_line, "xml").plain.split()) for i, _ in links)
