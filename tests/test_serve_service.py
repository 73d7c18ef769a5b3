"""nmt.serve.service.TranslationService on its own: translate, attention, settings, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.errors import UsageError
from nmt.inference.load import TranslateOptions, make_translator, parse_sampling
from nmt.serve.service import ATTENTION, TRANSLATE, Settings, TranslationService
from nmt.tokenizer import Tokenizer
from tests import trained_tiny
from tests.conftest import FIXTURES, tiny_config, tiny_model


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a busy machine


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> TranslationService:
    ckpt = trained_tiny.trained_checkpoint(tmp_path_factory.mktemp("svc"))
    return TranslationService(make_translator(ckpt, TranslateOptions(beam=1)), "tiny")


@pytest.fixture(scope="module")
def lstm_service(tmp_path_factory: pytest.TempPathFactory) -> TranslationService:
    tok = Tokenizer.load(FIXTURES / "spm.tiny", joint=True)
    path = tmp_path_factory.mktemp("lstm") / "lstm.safetensors"
    save_checkpoint(path, tiny_model("lstm", tok), tok, tiny_config("lstm"))
    return TranslationService(make_translator(path, TranslateOptions(beam=1)), "lstm")


def test_service_describes_its_model(service: TranslationService) -> None:
    assert service.name == "tiny" and service.engine == "pytorch"
    assert service.has_attention
    assert service.default_settings() == Settings(
        beam=1, length_penalty=service.defaults.length_penalty
    )


def test_translate_returns_one_line_per_input_in_order(service: TranslationService) -> None:
    src, ref = trained_tiny.sources()[:4], trained_tiny.references()[:4]
    out = service.run((TRANSLATE, service.default_settings()), src)
    assert out == ref  # the model learned these pairs by heart
    backwards = service.run((TRANSLATE, service.default_settings()), src[::-1])
    assert backwards == ref[::-1]


def test_translate_keeps_empty_lines_in_place(service: TranslationService) -> None:
    src = trained_tiny.sources()[:2]
    out = service.run((TRANSLATE, service.default_settings()), [src[0], "", src[1]])
    assert len(out) == 3
    assert out[0] == trained_tiny.references()[0] and out[2] == trained_tiny.references()[1]
    assert out[1] == ""


def test_request_settings_apply_per_call_and_nbest_stays_one(
    service: TranslationService,
) -> None:
    src = trained_tiny.sources()[:3]
    beam = service.run((TRANSLATE, Settings(beam=4, length_penalty=0.6)), src)
    assert service.translator.search.beam == 4
    assert service.translator.search.length_penalty == 0.6
    assert service.translator.search.nbest == 1
    assert beam == trained_tiny.references()[:3]  # one string per line, no n-best lists
    service.run((TRANSLATE, service.default_settings()), src)
    assert service.translator.search.beam == 1
    assert service.defaults.beam == 1  # the defaults themselves never change


def test_attention_map_is_json_ready(service: TranslationService) -> None:
    line, ref = trained_tiny.sources()[1], trained_tiny.references()[1]
    (amap,) = service.run((ATTENTION, service.default_settings()), [line])
    assert set(amap) == {"source", "target", "weights", "translation"}
    assert amap["translation"] == ref
    assert amap["source"][-1] == "</s>" and amap["target"][-1] == "</s>"
    assert len(amap["weights"]) == len(amap["target"])
    for row in amap["weights"]:
        assert len(row) == len(amap["source"])
        assert all(isinstance(w, float) and 0.0 <= w <= 1.0 for w in row)
        assert all(round(w, 4) == w for w in row)  # rounded for the page
        assert sum(row) == pytest.approx(1.0, abs=0.01)  # a distribution over the source


def test_attention_of_blank_or_overlong_lines_is_none(service: TranslationService) -> None:
    assert service.attention("") is None
    assert service.attention("   ") is None
    limit = service.translator.max_src_len
    overlong = " ".join(["Hund"] * (limit + 5))
    assert service.attention(overlong) is None


def test_a_backbone_without_attention_says_so(lstm_service: TranslationService) -> None:
    assert not lstm_service.has_attention
    assert lstm_service.run((ATTENTION, lstm_service.default_settings()), ["ein Hund"]) == [None]
    (out,) = lstm_service.run((TRANSLATE, lstm_service.default_settings()), ["ein Hund"])
    assert isinstance(out, str) and "\n" not in out


def test_make_translator_refuses_sampling_with_beam() -> None:
    with pytest.raises(UsageError, match="does not combine with --beam"):
        make_translator(
            Path("unused"), TranslateOptions(beam=2, sampling=parse_sampling("topk:5", None))
        )
