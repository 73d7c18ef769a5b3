"""``nmt compare --merge``: finished comparisons in one report, by direction, measured
nothing again (:mod:`nmt.compare.merge`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt.cli.app import app
from nmt.compare.merge import merge_comparisons
from nmt.compare.report import bleu_bar_groups, render_markdown
from nmt.errors import UsageError
from tests.conftest import REPO
from tests.test_compare_parts import RESULTS, _run, _scores, _table

PNG = b"\x89PNG\r\n\x1a\nnot really an image"


def _bilingual(direction: str, bleu: float) -> dict:
    run = _run("transformer", "transformer", bleu, attention=True)
    run["languages"] = direction
    run["test"] = {"test_2016_flickr": _scores(bleu)}
    return run


def _multilingual(bleus: dict[str, float]) -> dict:
    run = _run("multilingual", "transformer", 0.0, attention=False)
    run["languages"] = ", ".join(bleus)
    run["test"] = {
        f"test_2016_flickr.{d}": {**_scores(b), "test_set": "test_2016_flickr", "direction": d}
        for d, b in bleus.items()
    }
    run["speed"] = {**run["speed"], "test_set": next(iter(run["test"]))}
    return run


def _comparison(folder: Path, *runs: dict, beam: int = 5, png: bool = False) -> Path:
    folder.mkdir(parents=True)
    results = {**RESULTS, "beam": beam, "runs": list(runs)}
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    if png:
        (folder / "attention_transformer.png").write_bytes(PNG)
    return folder


def _by_direction(text: str) -> dict[str, dict[str, str]]:
    return {row.pop("direction"): row for row in _table(text, "direction", "test set")}


def test_bilingual_runs_of_two_directions_share_a_column_beside_the_multilingual(
    tmp_path: Path,
) -> None:
    de_en = _comparison(tmp_path / "de-en", _bilingual("de-en", 40.0), png=True)
    en_de = _comparison(tmp_path / "en-de", _bilingual("en-de", 38.0))  # its plot file is gone
    multi = _comparison(tmp_path / "ml", _multilingual({"de-en": 41.5, "en-de": 37.25}))
    out = tmp_path / "merged"

    report = merge_comparisons([de_en, en_de, multi], out)

    text = report.read_text(encoding="utf-8")
    rows = _by_direction(text)
    assert [(d, r["transformer"], r["multilingual"]) for d, r in rows.items()] == [
        ("de-en", "40.00 / 60.00", "41.50 / 61.50"),
        ("en-de", "38.00 / 58.00", "37.25 / 57.25"),
    ]
    assert all(r["test set"] == "test_2016_flickr" and len(r) == 3 for r in rows.values())
    assert "- `multilingual`: one model for de-en, en-de" in text
    assert "one model per direction: `transformer de-en` (de-en), `transformer en-de` (en-de)" in (
        text
    )
    runs = [r["run"] for r in _table(text, "run", "backbone")]
    assert runs == ["transformer de-en", "transformer en-de", "multilingual"]
    for folder in (de_en, en_de, multi):
        assert f"- `{folder}`, generated {RESULTS['generated']}" in text
    # The one attention plot that exists is copied under the run's new name; the missing one
    # is dropped rather than linked broken.
    assert (out / "attention_transformer-de-en.png").read_bytes() == PNG
    assert "![Attention of transformer de-en](attention_transformer-de-en.png)" in text
    assert "Attention of transformer en-de" not in text
    # results.json alone renders the same report again (nmt compare --report-only).
    merged = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert render_markdown(merged) == text
    assert [s["folder"] for s in merged["merged_from"]] == [str(de_en), str(en_de), str(multi)]


def test_runs_of_one_direction_keep_a_column_each(tmp_path: Path) -> None:
    """Two de-en transformers from two comparisons are two systems, never one cell."""
    a = _comparison(tmp_path / "a", _bilingual("de-en", 40.0))
    b = _comparison(tmp_path / "b", _bilingual("de-en", 42.0))
    multi = _comparison(tmp_path / "ml", _multilingual({"de-en": 41.0, "en-de": 37.0}))
    text = merge_comparisons([a, b, multi], tmp_path / "merged").read_text(encoding="utf-8")
    rows = _by_direction(text)
    assert rows["de-en"]["transformer de-en (a)"] == "40.00 / 60.00"
    assert rows["de-en"]["transformer de-en (b)"] == "42.00 / 62.00"
    assert rows["en-de"] == {
        "test set": "test_2016_flickr",
        "transformer de-en (a)": "–",
        "transformer de-en (b)": "–",
        "multilingual": "37.00 / 57.00",
    }


def test_merge_refuses_what_it_cannot_put_in_one_report(tmp_path: Path) -> None:
    five = _comparison(tmp_path / "five", _bilingual("de-en", 40.0))
    four = _comparison(tmp_path / "four", _bilingual("en-de", 38.0), beam=4)
    with pytest.raises(UsageError, match=r"different beam sizes \(4, 5\)"):
        merge_comparisons([five, four], tmp_path / "merged")
    with pytest.raises(UsageError, match="has no results.json"):
        merge_comparisons([five, tmp_path], tmp_path / "merged")
    with pytest.raises(UsageError, match="one of the merged comparisons"):
        merge_comparisons([five], five)
    assert not (tmp_path / "merged").exists()  # refused before writing anything


def test_cli_merges_the_committed_en_cs_reports(tmp_path: Path) -> None:
    results = REPO / "bench" / "results"
    folders = [results / f"multi30k-{name}" for name in ("en-cs", "cs-en", "ml-en-cs")]
    args = [a for f in folders for a in ("--merge", str(f))]
    runner = CliRunner()
    out = tmp_path / "merged"
    done = runner.invoke(app, ["compare", *args, "--out", str(out)], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    rows = _by_direction((out / "RESULTS.md").read_text(encoding="utf-8"))
    assert set(rows) == {"en-cs", "cs-en"}
    for direction, row in rows.items():
        assert set(row) == {"test set", "transformer", "en-cs"}
        for folder in folders:  # each cell is the figure its own report has
            committed = json.loads((folder / "results.json").read_text(encoding="utf-8"))
            for run in committed["runs"]:
                for test in run["test"].values():
                    if test.get("direction", run["languages"]) == direction:
                        system = "transformer" if run["name"] == "transformer" else "en-cs"
                        assert row[system].startswith(f"{test['bleu']:.2f} / ")
    config = str(REPO / "configs" / "transformer.yaml")
    both = runner.invoke(app, ["compare", config, *args, "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "give no configs" in both.output


def test_test_bleu_bars_group_by_test_set_and_direction() -> None:
    """The bilingual and the multilingual score of one direction stand in one group."""
    runs = [_bilingual("de-en", 40.0), _multilingual({"de-en": 41.0, "en-de": 37.0})]
    runs[0]["name"] = "transformer de-en"
    assert bleu_bar_groups(runs) == {
        "transformer de-en": {"test_2016_flickr\nde-en": 40.0},
        "multilingual": {"test_2016_flickr\nde-en": 41.0, "test_2016_flickr\nen-de": 37.0},
    }
    single = _run("transformer", "transformer", 30.0, attention=False)  # one direction: as before
    assert bleu_bar_groups([single]) == {
        "transformer": {"test_2016_flickr": 30.0, "test_2017_mscoco": 25.0}
    }
