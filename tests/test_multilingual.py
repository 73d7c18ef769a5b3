"""One model for several directions (issue 23): target-language tags, temperature sampling,
validation per direction, ``--tgt-lang`` everywhere, ``nmt compare`` per direction, and
the paper-comparable ``--tokenize moses-lc``.

One tiny multilingual run (de->en and de->fr on the fixtures, a few steps) is trained by
``nmt compare`` beside a tiny bilingual de->en run; the other tests use those two runs.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import load_checkpoint
from nmt.cli.app import app
from nmt.config import ConfigError, load_config, to_dict
from nmt.data.store.corpus import StoreCorpus
from nmt.data.store.mixture import Mixture, direction_weights, join_corpora
from nmt.data.store.training_data import load_training_data
from nmt.inference.alignment import align_words
from nmt.inference.load import TranslateOptions, make_translator
from nmt.serve.app import create_app
from nmt.serve.server import ServeOptions, load_service
from nmt.training.reporting import scalars
from tests.conftest import FIXTURES, REPO

runner = CliRunner()
TINY = REPO / "configs" / "tiny" / "transformer.yaml"
DIRECTIONS = ["de-en", "de-fr"]
N = 7  # lines translated in the tests


def nmt(*args: object, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def one_line_error(result, *words: str) -> str:
    """The command failed with exit status 2 and exactly one line, ``error: ...``."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``nmt compare`` of a tiny multilingual and a tiny bilingual config (trained here)."""
    out = tmp_path_factory.mktemp("multi")
    tiny = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    bilingual = {**tiny, "tokenizer": {**tiny["tokenizer"], "model": str(FIXTURES / "spm.tiny")}}
    multi = {
        **tiny,
        "data": {**tiny["data"], "directions": DIRECTIONS, "sampling_temperature": 5.0},
        "tokenizer": {"model": str(out / "spm.multi"), "vocab_size": 400},
    }
    for name, cfg in (("bilingual", bilingual), ("multilingual", multi)):
        (out / f"{name}.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    sets = [
        f"data.dir={FIXTURES}",
        f"data.store_dir={out / 'store'}",
        "train.max_steps=6",
        "train.valid_every=3",
        "train.valid_max_sentences=8",
    ]
    configs = [out / "bilingual.yaml", out / "multilingual.yaml"]
    args = [a for s in sets for a in ("--set", s)]
    result = nmt("compare", *configs, "--out", out / "cmp", "--test", "test", *args)
    assert result.exit_code == 0, result.output
    return out / "cmp"


@pytest.fixture(scope="module")
def multi_run(compared: Path) -> Path:
    return compared / "multilingual"


@pytest.fixture(scope="module")
def bi_run(compared: Path) -> Path:
    return compared / "bilingual"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "in.de"
    lines = (FIXTURES / "test.de").read_text(encoding="utf-8").splitlines()[:N]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- temperature sampling ------------------------------------------------------------------------
def test_temperature_one_samples_in_proportion_and_a_high_one_uniformly() -> None:
    sizes = [8000, 1000, 1000]
    assert np.allclose(direction_weights(sizes, 1.0), [0.8, 0.1, 0.1])
    assert np.allclose(direction_weights(sizes, 1e6), [1 / 3] * 3, atol=1e-5)
    # T = 5 (Arivazhagan et al. 2019) lies between: 8000^0.2 / (8000^0.2 + 2 * 1000^0.2)
    p = direction_weights(sizes, 5.0)
    assert math.isclose(p[0], 8**0.2 / (8**0.2 + 2), rel_tol=1e-9)
    assert 1 / 3 < p[0] < 0.8 and math.isclose(p.sum(), 1.0)
    assert direction_weights([5, 0], 2.0).tolist() == [1.0, 0.0]  # an empty direction: never
    with pytest.raises(ValueError):
        direction_weights(sizes, 0.0)


def test_an_epoch_draws_each_direction_by_its_weight() -> None:
    sizes = np.array([900, 100])
    mixture = Mixture(("a-b", "c-d"), np.array([0, 900]), sizes, direction_weights(sizes, 1e6))
    rows = mixture.epoch_rows(seed=1, epoch=0)
    small = rows[rows >= 900]
    assert len(rows) == 1000 and len(small) == 500  # 5 passes over the small direction
    assert np.array_equal(np.bincount(small - 900), np.full(100, 5))
    assert len(set(rows[rows < 900].tolist())) == 500  # a part of the large one, no repeats
    assert np.array_equal(rows, mixture.epoch_rows(seed=1, epoch=0))  # --resume: the same
    assert not np.array_equal(rows, mixture.epoch_rows(seed=1, epoch=1))


def test_joined_corpora_batch_as_their_parts() -> None:
    a = StoreCorpus.from_sequences([[5, 6, 3], [7, 3]], [[8], [9, 9]])
    b = StoreCorpus.from_sequences([[4, 4, 4, 3]], [[1, 2, 3]])
    joined = join_corpora([a, b], ["x-y", "x-z"], 1.0)
    assert len(joined) == 3 and joined.mixture.names == ("x-y", "x-z")
    src, lengths = joined.src.padded(np.array([2, 0, 1]), pad_id=0)
    assert src.tolist() == [[4, 4, 4, 3], [5, 6, 3, 0], [7, 3, 0, 0]]
    assert lengths.tolist() == [4, 3, 2]
    assert joined.tgt.row(2).tolist() == [1, 2, 3]


# --- config --------------------------------------------------------------------------------------
def test_directions_are_checked_and_name_the_key() -> None:
    cfg = load_config(TINY, ["data.directions=[de-en, en-fr]", "tokenizer.model="])
    assert cfg.data.directions == ("de-en", "en-fr")
    assert cfg.tokenizer_prefix().endswith("spm.de-en-fr.to-en-fr.bpe400.joint")
    for bad, message in [
        ("data.directions=[de-en, de-en]", "lists de-en twice"),
        ("data.directions=[en-en]", "into itself"),
        ("data.directions=[german-english]", "not a direction"),
        ("data.sampling_temperature=0", "data.sampling_temperature must be positive"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(TINY, [bad])
    with pytest.raises(ConfigError, match="tokenizer.joint"):
        load_config(TINY, ["data.directions=[de-en]", "tokenizer.joint=false"])


def test_a_tokenizer_without_the_tags_is_refused_before_any_work(tmp_path: Path) -> None:
    sets = [f"data.dir={FIXTURES}", f"tokenizer.model={FIXTURES / 'spm.tiny'}"]
    sets += [f"data.store_dir={tmp_path / 'store'}", "data.directions=[de-en, de-fr]"]
    args = [a for s in sets for a in ("--set", s)]
    result = nmt("-q", "train", TINY, "--out", tmp_path / "run", *args)
    one_line_error(result, "no language tag for en, fr")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("pair", ["en-fr", "fr-en", "en-cs", "cs-en"])
def test_bilingual_configs_follow_the_de_en_recipe(pair: str) -> None:
    cfg = to_dict(load_config(REPO / "configs" / "multi30k" / pair / "transformer.yaml"))
    de_en = to_dict(load_config(REPO / "configs" / "multi30k" / "de-en" / "transformer.yaml"))
    src, tgt = pair.split("-")
    assert (cfg["data"]["src_lang"], cfg["data"]["tgt_lang"]) == (src, tgt)
    de_en["data"].update(src_lang=src, tgt_lang=tgt)
    assert cfg == de_en  # only the languages differ


def test_the_multilingual_config_covers_the_four_languages() -> None:
    cfg = load_config(REPO / "configs" / "multi30k" / "multilingual" / "transformer.yaml")
    langs = {lang for d in cfg.data.directions for lang in d.split("-")}
    assert langs == {"de", "en", "fr", "cs"} and cfg.data.sampling_temperature > 1


@pytest.mark.parametrize("pair", ["en-cs", "de-en"])
def test_a_two_direction_config_is_the_bilingual_recipe_for_both(pair: str) -> None:
    """Compared with the pair's bilingual config, it may differ only in its data, budget and
    validation interval."""
    src, tgt = pair.split("-")
    configs = REPO / "configs" / "multi30k"
    cfg = to_dict(load_config(configs / "multilingual" / f"{pair}.yaml"))
    bilingual = to_dict(load_config(configs / pair / "transformer.yaml"))
    assert cfg["data"]["directions"] == [pair, f"{tgt}-{src}"]
    assert cfg["train"]["max_minutes"] == 2 * bilingual["train"]["max_minutes"]
    assert cfg["train"]["valid_every"] == 2 * bilingual["train"]["valid_every"]
    differ = {
        "data": {"directions", "src_lang", "tgt_lang"},
        "train": {"max_minutes", "valid_every"},
    }
    for section, keys in differ.items():
        for tree in (cfg, bilingual):
            tree[section] = {k: v for k, v in tree[section].items() if k not in keys}
    assert cfg == bilingual


# --- training ------------------------------------------------------------------------------------
def test_validation_reports_every_direction_and_selects_by_their_mean(multi_run: Path) -> None:
    records = [json.loads(x) for x in (multi_run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if "valid_bleu_directions" in r]
    assert [r["step"] for r in valid] == [3, 6]
    for r in valid:
        assert list(r["valid_bleu_directions"]) == DIRECTIONS
        mean = sum(r["valid_bleu_directions"].values()) / 2
        assert math.isclose(r["valid_bleu"], mean)
    tags = dict(scalars(valid[0]))
    assert set(tags) >= {"valid/bleu", "valid/bleu/de-en", "valid/bleu/de-fr"}
    log = (multi_run / "train.log").read_text(encoding="utf-8")
    assert "(mean of de-en" in log and "de-fr" in log


def test_each_source_starts_with_its_targets_tag(multi_run: Path) -> None:
    _, tok, cfg, _ = load_checkpoint(multi_run)
    assert tok.languages == ("en", "fr")
    en, fr = tok.tags["en"], tok.tags["fr"]
    assert en != fr and tok.src.id_to_piece(fr) == "<2fr>"
    assert tok.src.encode("x <2fr> y").count(fr) == 1  # a user-defined symbol: one piece
    data = load_training_data(cfg, tok)
    mixture = data.train.mixture
    assert mixture.names == tuple(DIRECTIONS)
    assert data.train.src.row(0)[0] == en  # the first pair of de-en
    assert data.train.src.row(int(mixture.starts[1]))[0] == fr  # the first pair of de-fr
    for lang in ("en", "fr"):
        translator = make_translator(multi_run, TranslateOptions(beam=1, tgt_lang=lang))
        assert translator.source_ids(["Ein Hund."])[0][0] == tok.tags[lang]
        assert "<2" not in translator.tok.decode_tgt([tok.tags[lang], tok.eos_id])


def test_word_alignments_skip_the_tag_column() -> None:
    """The tag is a source piece the attention may look at, but no source word."""
    pieces = ["<2en>", "\u2581Ein", "\u2581Hund", "</s>"]
    attention = [[0.5, 0.4, 0.1, 0.0], [0.6, 0.1, 0.3, 0.0]]  # (T, S): the tag column first
    links = align_words("Ein Hund", "A dog", pieces, ["\u2581A", "\u2581dog"], attention)
    assert links == [(0, 0), (1, 1)]


# --- translate, evaluate, score, serve -----------------------------------------------------------
def test_one_checkpoint_translates_into_both_languages(multi_run: Path, sources: Path) -> None:
    for lang in ("en", "fr"):
        out = sources.with_suffix(f".{lang}")
        result = nmt("-q", "translate", multi_run, "-i", sources, "-o", out, "--tgt-lang", lang)
        assert result.exit_code == 0, result.output
        assert len(out.read_text(encoding="utf-8").split("\n")) == N + 1  # N lines, newline
    ref = FIXTURES / "test.fr"
    (sources.parent / "ref.fr").write_text(
        "\n".join(ref.read_text(encoding="utf-8").splitlines()[:N]) + "\n", encoding="utf-8"
    )
    args = ["--src", sources, "--ref", sources.parent / "ref.fr", "--beam", "1", "--json"]
    result = nmt("-q", "evaluate", multi_run, *args, "--tgt-lang", "fr")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == N
    result = nmt("-q", "score", multi_run, "--src", sources, "--tgt", sources, "--tgt-lang", "fr")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == N


@pytest.mark.parametrize("command", ["translate", "evaluate", "score"])
def test_tgt_lang_errors_are_one_line(
    multi_run: Path, bi_run: Path, sources: Path, command: str
) -> None:
    args = {
        "translate": ["-i", sources],
        "evaluate": ["--src", sources, "--ref", sources],
        "score": ["--src", sources, "--tgt", sources],
    }[command]
    missing = nmt("-q", command, multi_run, *args)
    one_line_error(missing, "multilingual", "--tgt-lang", "en, fr")
    unknown = nmt("-q", command, multi_run, *args, "--tgt-lang", "cs")
    one_line_error(unknown, "--tgt-lang cs", "en, fr")
    mismatch = nmt("-q", command, bi_run, *args, "--tgt-lang", "fr")
    one_line_error(mismatch, "--tgt-lang fr", "bilingual", "en")
    own = nmt("-q", command, bi_run, *args, "--tgt-lang", "en")  # its own target: fine
    assert own.exit_code == 0, own.output


def test_serve_takes_tgt_lang_per_request(multi_run: Path) -> None:
    torch.set_num_threads(1)
    service = load_service(multi_run, ServeOptions(beam=1))
    with TestClient(create_app(service)) as client:
        health = client.get("/health").json()
        assert health["languages"] == ["en", "fr"]
        missing = client.post("/translate", json={"text": ["Ein Hund."]})
        assert missing.status_code == 422 and "en, fr" in missing.json()["error"]
        unknown = client.post("/translate", json={"text": ["Ein Hund."], "tgt_lang": "cs"})
        assert unknown.status_code == 422 and "tgt_lang cs" in unknown.json()["error"]
        for lang in ("en", "fr"):
            body = {"text": ["Ein Hund.", "", "Zwei Männer."], "tgt_lang": lang}
            answer = client.post("/translate", json=body)
            assert answer.status_code == 200 and len(answer.json()["translations"]) == 3
        assert 'id="tgt-lang"' in client.get("/").text  # the page's language menu
    default = load_service(multi_run, ServeOptions(beam=1, tgt_lang="fr"))
    with TestClient(create_app(default)) as client:
        assert client.post("/translate", json={"text": ["Ein Hund."]}).status_code == 200


# --- compare -------------------------------------------------------------------------------------
def test_compare_lists_every_direction_beside_the_bilingual_run(compared: Path) -> None:
    results = json.loads((compared / "results.json").read_text(encoding="utf-8"))
    runs = {r["name"]: r for r in results["runs"]}
    multi, bi = runs["multilingual"], runs["bilingual"]
    assert multi["languages"] == "de-en, de-fr" and bi["languages"] == "de-en"
    assert {k: t["direction"] for k, t in multi["test"].items()} == {
        "test.de-en": "de-en",
        "test.de-fr": "de-fr",
    }
    assert all(isinstance(t["bleu"], float) for t in multi["test"].values())
    assert bi["test"]["test"]["direction"] == "de-en"  # the shape bilingual runs had
    report = (compared / "RESULTS.md").read_text(encoding="utf-8")
    table = report[report.index("## By direction") :].split("\n\n")[2].splitlines()
    assert table[0] == "| direction | test set | bilingual | multilingual |"
    assert table[2].startswith("| de-en | test | ") and table[3].startswith("| de-fr | test | – |")


# --- paper-comparable BLEU -----------------------------------------------------------------------
def test_moses_lc_bleu_by_hand(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One sentence pair, scored as Multi30k papers score (hand-checked):

    hyp ``The dog's well-known toy.`` -> ``the dog 's well @-@ known toy .`` (8 tokens)
    ref ``the dog's well-known ball.`` -> ``the dog 's well @-@ known ball .`` (8 tokens)

    Moses splits ``'s`` and, with aggressive hyphen splitting, ``well @-@ known``;
    lowercasing makes ``The`` match ``the``. Matches: unigrams 7/8 (all but ``toy``),
    bigrams 5/7 (``known toy`` and ``toy .`` miss), trigrams 4/6, 4-grams 3/5; equal
    lengths, so no brevity penalty. BLEU = (7/8 * 5/7 * 4/6 * 3/5)^(1/4) = (1/4)^(1/4)
    = 1/sqrt(2) = 70.71. Detokenized cased sacreBLEU (13a keeps ``dog's`` and
    ``well-known`` whole) scores far lower.
    """
    hyp, ref = tmp_path / "hyp.en", tmp_path / "ref.en"
    # 100 copies score as one (every count scales alike) and reach the 100 lines ending in
    # " ." after which sacreBLEU warns of tokenized input, which moses-lc scores on purpose.
    hyp.write_text("The dog's well-known toy.\n" * 100, encoding="utf-8")
    ref.write_text("the dog's well-known ball.\n" * 100, encoding="utf-8")
    args = ["evaluate", "--hyp", hyp, "--ref", ref, "--json"]
    with caplog.at_level(logging.WARNING, logger="sacrebleu"):
        run = nmt(*args, "--tokenize", "moses-lc", "--tgt-lang", "en")
    assert not [r for r in caplog.records if "detokenize" in r.getMessage()]
    paper = json.loads(run.stdout)
    assert round(paper["bleu"], 2) == round(100 / math.sqrt(2), 2) == 70.71
    assert "87.5/71.4/66.7/60.0" in paper["bleu_detail"]
    signature = paper["bleu_signature"]
    assert "case:lc" in signature and "tok:none" in signature
    assert "+moses-lc-aggressive" in signature and "lang:en" in signature
    plain = json.loads(nmt(*args).stdout)
    assert plain["bleu"] < 50 and "tok:13a" in plain["bleu_signature"]
    one_line_error(nmt(*args[:-1], "--tokenize", "moses-lc"), "--tgt-lang")
    one_line_error(nmt(*args[:-1], "--tokenize", "moses"), "--tokenize")
