"""nmt.compare's parts on their own: the report from a results dict, run names and reuse,
scoring one test set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sacrebleu
import torch

from nmt.artifacts.rundir import RunDir
from nmt.compare.evaluation import TestSet as SetFiles  # not a test class
from nmt.compare.evaluation import pick_sentence, score_test_set
from nmt.compare.report import render_markdown, write_report
from nmt.compare.runs import (
    RunSpec,
    _run_names,
    describe_selected,
    ensure_trained,
    plan_runs,
    read_metrics,
)
from nmt.config import ConfigError
from nmt.errors import Interrupted
from nmt.inference.load import TranslateOptions, make_translator
from nmt.training.run import TrainOutcome
from nmt.training.state import TrainState
from tests import trained_tiny
from tests.conftest import FIXTURES, REPO, tiny_config

# --- report ------------------------------------------------------------------------------


def _scores(bleu: float, n: int = 1000) -> dict:
    return {
        "n": n,
        "bleu": bleu,
        "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.0",
        "bleu_lowercase": bleu + 1,
        "bleu_lowercase_signature": "nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:2.4.0",
        "chrf": bleu + 20,
        "chrf_signature": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.4.0",
        "ter": 100 - bleu,
        "ter_signature": "nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.4.0",
    }


def _run(name: str, backbone: str, bleu: float, attention: bool) -> dict:
    return {
        "name": name,
        "backbone": backbone,
        "config": f"configs/{name}.yaml",
        "languages": "de-en",
        "parameters": 1234567,
        "train_minutes": 12.345,
        "device": "cpu",
        "tokens_per_s": 9876.4,
        "best_valid_bleu": bleu + 2,
        "steps": 4321,
        "stop_reason": "max_minutes",
        "selected_model": "step 4000",
        "run_dir": f"out/{name}",
        "valid_curve": [{"step": 100, "minutes": 1.0, "valid_bleu": 3.0}],
        "test": {
            "test_2016_flickr": _scores(bleu),
            "test_2017_mscoco": _scores(bleu - 5, n=461),
        },
        "speed": {
            "test_set": "test_2016_flickr",
            "greedy_sent_per_s": 123.45,
            "beam5_sent_per_s": 45.67,
        },
        "attention_plot": (
            {
                "file": f"attention_{name}.png",
                "test_set": "test_2016_flickr",
                "line": 7,
                "source": "Ein Hund läuft.",
                "translation": "A dog runs.",
            }
            if attention
            else None
        ),
    }


RESULTS = {
    "generated": "2026-12-04T18:00:00+00:00",
    "budget_minutes": 15.0,
    "beam": 5,
    "runs": [
        _run("transformer", "transformer", 35.125, attention=True),
        _run("lstm", "lstm", 20.5, attention=False),
    ],
}


def _table(text: str, first_header: str, second_header: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose header begins with the two given cells."""
    lines = text.splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line.startswith(f"| {first_header} | {second_header} |")
    )
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return rows


def test_main_table_cells() -> None:
    text = render_markdown(RESULTS)
    rows = _table(text, "run", "backbone")
    assert [r["run"] for r in rows] == ["transformer", "lstm"]
    t, lstm = rows
    assert t["BLEU"] == format(35.125, ".2f")
    assert t["BLEU (lc)"] == format(36.125, ".2f")
    assert t["chrF"] == format(55.125, ".2f")
    assert t["TER"] == format(100 - 35.125, ".2f")
    assert t["parameters"] == "1,234,567"
    assert t["train time"] == "12.3 min"
    assert t["train tokens/s"] == "9,876"
    assert t["best valid BLEU"] == format(37.125, ".2f")
    assert t["test set"] == "test_2016_flickr"
    assert t["greedy sent/s"] == "123.5" and t["beam 5 sent/s"] == "45.7"
    assert lstm["BLEU"] == "20.50" and lstm["chrF"] == "40.50" and lstm["backbone"] == "lstm"


def test_all_sets_table_and_signatures() -> None:
    text = render_markdown(RESULTS)
    rows = _table(text, "run", "test set")
    assert [(r["run"], r["test set"], r["sentences"], r["BLEU"]) for r in rows] == [
        ("transformer", "test_2016_flickr", "1000", format(35.125, ".2f")),
        ("transformer", "test_2017_mscoco", "461", format(30.125, ".2f")),
        ("lstm", "test_2016_flickr", "1000", "20.50"),
        ("lstm", "test_2017_mscoco", "461", "15.50"),
    ]
    sig = _scores(0)
    for label, key in [
        ("BLEU", "bleu_signature"),
        ("BLEU (lc)", "bleu_lowercase_signature"),
        ("chrF", "chrf_signature"),
        ("TER", "ter_signature"),
    ]:
        line = f"- {label}: `{sig[key]}`"
        assert text.count(line) == 1, line  # the same signature is listed once


def test_missing_values_are_dashes_and_budget_sentence() -> None:
    run = _run("x", "transformer", 10.0, attention=False)
    run.update(tokens_per_s=None, best_valid_bleu=None, device=None, stop_reason=None)
    run["selected_model"] = None
    results = {**RESULTS, "budget_minutes": None, "runs": [run]}
    text = render_markdown(results)
    (row,) = _table(text, "run", "backbone")
    assert row["train tokens/s"] == "–" and row["best valid BLEU"] == "–"
    assert row["device"] == "–"
    (details,) = _table(text, "run", "config")
    assert details["stopped by"] == "–" and details["selected model"] == "–"
    assert details["steps"] == "4321" and details["run dir"] == "`out/x`"
    assert "(config budgets)." in text
    assert "(budget 15 minutes per run)." in render_markdown(RESULTS)


def test_attention_plots_only_for_runs_that_have_one() -> None:
    text = render_markdown(RESULTS)
    assert "![Attention of transformer](attention_transformer.png)" in text
    assert "`Ein Hund läuft.` -> `A dog runs.`" in text
    assert "on test_2016_flickr line 7" in text
    assert "Attention of lstm" not in text and "Attention of `lstm`" not in text


def test_write_report_reads_results_json(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(RESULTS), encoding="utf-8")
    report = write_report(tmp_path)
    assert report == tmp_path / "RESULTS.md"
    assert report.read_text(encoding="utf-8") == render_markdown(RESULTS)


# --- runs --------------------------------------------------------------------------------


def test_run_names_are_stems_unless_they_collide() -> None:
    assert _run_names([Path("configs/a.yaml"), Path("other/b.yaml")]) == ["a", "b"]
    assert _run_names([Path("de-en/x.yaml"), Path("en-de/x.yaml"), Path("y/z.yaml")]) == [
        "de-en-x",
        "en-de-x",
        "z",
    ]


def test_plan_runs_refuses_two_configs_with_one_run_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="share the run directory"):
        plan_runs([Path("a/t/x.yaml"), Path("b/t/x.yaml")], tmp_path, [], None)
    with pytest.raises(ConfigError, match="at least one config"):
        plan_runs([], tmp_path, [], None)


def test_plan_runs_adds_the_budget(tmp_path: Path) -> None:
    config = REPO / "configs" / "tiny" / "lstm.yaml"
    (spec,) = plan_runs([config], tmp_path, ["train.max_steps=3"], 2.5)
    assert spec.name == "lstm" and spec.run_dir == tmp_path / "lstm"
    assert spec.cfg.train.max_minutes == 2.5 and spec.cfg.train.max_steps == 3


def _spec(tmp_path: Path) -> RunSpec:
    return RunSpec("lstm", Path("lstm.yaml"), tiny_config("lstm"), tmp_path / "lstm")


def test_ensure_trained_reuses_a_finished_run(tmp_path: Path, monkeypatch) -> None:
    spec = _spec(tmp_path)
    spec.run_dir.mkdir()
    done = {"backbone": "lstm", "steps": 12, "stop_reason": "max_steps"}
    spec.run.done.write_text(json.dumps(done), encoding="utf-8")

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not be trained again")

    monkeypatch.setattr("nmt.compare.runs.run_training", no_training)
    assert ensure_trained(spec) == done


def _fake_training(calls: list, stop: str, signal: int | None = None):
    def fake(cfg, run_dir, resume=False, **kwargs):
        calls.append(resume)
        state = TrainState(step=5, elapsed=90.0)
        return TrainOutcome(state, stop, RunDir(run_dir), 321, "cpu", signal)

    return fake


def test_ensure_trained_trains_then_marks_done(tmp_path: Path, monkeypatch) -> None:
    spec, calls = _spec(tmp_path), []
    monkeypatch.setattr("nmt.compare.runs.run_training", _fake_training(calls, "max_steps"))
    spec.run_dir.mkdir()
    done = ensure_trained(spec)
    assert calls == [False]  # nothing to resume: a fresh run
    assert done["steps"] == 5 and done["train_minutes"] == pytest.approx(1.5)
    assert done["parameters"] == 321 and done["stop_reason"] == "max_steps"
    assert json.loads(spec.run.done.read_text(encoding="utf-8")) == done
    assert ensure_trained(spec) == done and calls == [False]  # now reused


def test_ensure_trained_resumes_an_unfinished_run(tmp_path: Path, monkeypatch) -> None:
    spec, calls = _spec(tmp_path), []
    spec.run_dir.mkdir()
    spec.run.last.write_bytes(b"x")
    spec.run.train_state.write_bytes(b"x")
    monkeypatch.setattr("nmt.compare.runs.run_training", _fake_training(calls, "max_steps"))
    ensure_trained(spec)
    assert calls == [True]


def test_ensure_trained_interrupted_leaves_no_done_mark(tmp_path: Path, monkeypatch) -> None:
    spec, calls = _spec(tmp_path), []
    spec.run_dir.mkdir()
    monkeypatch.setattr("nmt.compare.runs.run_training", _fake_training(calls, "interrupted", 15))
    with pytest.raises(Interrupted):
        ensure_trained(spec)
    assert not spec.run.is_finished()


def test_read_metrics_skips_a_cut_line_and_describe_selected(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert read_metrics(run) == []
    run.metrics.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo', encoding="utf-8")
    assert read_metrics(run) == [{"step": 1, "loss": 2.0}]
    assert describe_selected(None) is None
    assert describe_selected({"step": 40}) == "step 40"
    names = ["step_30.safetensors", "step_10.safetensors", "step_20.safetensors"]
    assert describe_selected({"step": 40, "averaged": names}) == "average of 3 (steps 10-30)"


# --- evaluation --------------------------------------------------------------------------


def test_score_test_set_writes_hypotheses_and_matches_sacrebleu(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    translator = make_translator(
        trained_tiny.trained_checkpoint(tmp_path), TranslateOptions(beam=1)
    )
    unseen = (FIXTURES / "test.de").read_text(encoding="utf-8").splitlines()[:4]
    unseen_ref = (FIXTURES / "test.en").read_text(encoding="utf-8").splitlines()[:4]
    src, ref = tmp_path / "t.de", tmp_path / "t.en"
    src.write_text("\n".join(trained_tiny.sources()[:6] + unseen) + "\n", encoding="utf-8")
    ref.write_text("\n".join(trained_tiny.references()[:6] + unseen_ref) + "\n", encoding="utf-8")
    hyp_path = tmp_path / "out" / "t.beam1.en"
    result = score_test_set(translator, SetFiles("t", "de-en", src, ref), hyp_path)
    hyps = hyp_path.read_text(encoding="utf-8").splitlines()
    refs = ref.read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 10 and hyps[:6] == trained_tiny.references()[:6]
    assert result["n"] == 10 and result["hyp_file"] == "t.beam1.en"
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert 0 < result["bleu"] < 100
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert result["seconds"] > 0


def test_score_test_set_refuses_files_of_different_lengths(tmp_path: Path) -> None:
    src, ref = tmp_path / "s", tmp_path / "r"
    src.write_text("a\nb\n", encoding="utf-8")
    ref.write_text("a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="has 2 lines but"):
        score_test_set(None, SetFiles("t", "de-en", src, ref), tmp_path / "h")  # refused first
    assert not (tmp_path / "h").exists()


def test_pick_sentence_prefers_8_to_16_words() -> None:
    assert pick_sentence(["", "short one", " ".join(["w"] * 9)]) == 2
    assert pick_sentence(["", "  ", "short", " ".join(["w"] * 30)]) == 2
    assert pick_sentence(["", ""]) == 0
