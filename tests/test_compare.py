"""``nmt compare`` on the tiny configs (the report's structure, not its scores) and
``nmt translate --attention-plot``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nmt.cli.app import app
from nmt.compare import RunSpec, describe_selected, ensure_trained
from nmt.config import Config, load_config, to_dict
from tests.conftest import BACKBONES, FIXTURES, REPO

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = [REPO / "configs" / "tiny" / f"{b}.yaml" for b in BACKBONES]
SETS = [
    f"data.dir={FIXTURES}",
    f"tokenizer.model={FIXTURES / 'spm.tiny'}",
    "train.max_steps=4",
    "train.valid_every=2",
    "train.valid_max_sentences=10",
    "train.average_last=2",
]
MAIN_COLUMNS = [
    "parameters",
    "train time",
    "device",
    "train tokens/s",
    "best valid BLEU",
    "BLEU",
    "BLEU (lc)",
    "chrF",
    "TER",
    "greedy sent/s",
    "beam 5 sent/s",
]


def nmt(*args: object, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def compare(out: Path, *extra: object):
    sets = [arg for s in SETS for arg in ("--set", s)]
    return nmt("compare", *TINY, "--out", out, "--test", "test", *sets, *extra)


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    result = compare(out, "--budget-minutes", "2")
    assert result.exit_code == 0, result.output
    return out


def said(result, text: str) -> bool:
    """Whether the command's output holds ``text`` (log lines may be wrapped)."""
    return text in " ".join(result.output.split())


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def table_rows(markdown: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body rows of the first table whose header starts as given."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return header, rows


def test_results_md_has_a_row_per_backbone(compared: Path) -> None:
    header, rows = table_rows((compared / "RESULTS.md").read_text(encoding="utf-8"), "| run |")
    for column in MAIN_COLUMNS:
        assert column in header, column
    assert sorted(row[header.index("backbone")] for row in rows) == sorted(BACKBONES)
    for row in rows:
        assert len(row) == len(header)
        assert row[header.index("test set")] == "test"
        float(row[header.index("BLEU")])
        assert int(row[header.index("parameters")].replace(",", "")) > 0
    text = (compared / "RESULTS.md").read_text(encoding="utf-8")
    assert "tok:13a" in text and "case:mixed" in text  # the sacreBLEU signature is shown
    for png in ("valid_bleu.png", "test_bleu.png", "attention_attention.png"):
        assert f"({png})" in text


def test_results_json_has_the_fields(compared: Path) -> None:
    results = json.loads((compared / "results.json").read_text(encoding="utf-8"))
    assert results["beam"] == 5 and results["budget_minutes"] == 2
    assert [r["backbone"] for r in results["runs"]] == BACKBONES
    for run in results["runs"]:
        for key in ("parameters", "device", "train_minutes", "tokens_per_s", "best_valid_bleu"):
            assert run[key] is not None, key
        assert [p["step"] for p in run["valid_curve"]] == [2, 4]  # the average is not on it
        assert run["selected_model"] in ("step 2", "step 4", "average of 2 (steps 2-4)")
        records = (compared / run["name"] / "metrics.jsonl").read_text(encoding="utf-8")
        assert '"averaged": ["step_2.safetensors", "step_4.safetensors"]' in records
        test = run["test"]["test"]
        assert test["n"] == 60 and "tok:13a" in test["bleu_signature"]
        for key in ("bleu", "bleu_lowercase", "chrf", "ter"):
            assert 0 <= test[key] <= 1000, key
        assert len(Path(test["hyp_file"]).read_text(encoding="utf-8").splitlines()) == 60
        speed = run["speed"]
        assert speed["greedy_sent_per_s"] > 0 and speed["beam5_sent_per_s"] > 0
        assert (compared / run["name"] / "done.json").is_file()
    attention = {r["backbone"]: r["attention_plot"] for r in results["runs"]}
    assert attention["lstm"] is None  # no attention to show
    assert attention["attention"]["file"] == "attention_attention.png"
    assert attention["transformer"]["file"] == "attention_transformer.png"


def test_plots_are_png_files(compared: Path) -> None:
    for name in ("valid_bleu", "test_bleu", "attention_attention", "attention_transformer"):
        assert is_png(compared / f"{name}.png"), name
    assert not (compared / "attention_lstm.png").exists()


def test_compare_out_is_one_tensorboard_log_dir(compared: Path) -> None:
    """``tensorboard --logdir OUT`` shows every run of the comparison side by side."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    runs = EventMultiplexer().AddRunsFromDirectory(str(compared)).Reload().Runs()
    assert sorted(runs) == [f"{b}/tensorboard" for b in sorted(BACKBONES)]
    for name in runs:
        assert "valid/bleu" in runs[name]["scalars"]


def checkpoint_times(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(out.glob("*/*.safetensors"))}


def test_second_run_reuses_the_runs(compared: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    shutil.copytree(compared, out)
    before = checkpoint_times(out)
    result = compare(out, "--budget-minutes", "2")
    assert result.exit_code == 0, result.output
    assert checkpoint_times(out) == before and len(before) == 6
    assert said(result, "reusing the finished run")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert len(results["runs"]) == 3


@pytest.mark.parametrize(
    "name",
    [
        "multi30k-de-en",
        "multi30k-en-de",
        "multi30k-de-en-15min",
        "multi30k-ml-en-cs",
        "multi30k-ml-de-en",
        "multi30k-en-cs-multilingual",  # nmt compare --merge's reports
        "multi30k-de-en-multilingual",
    ],
)
def test_committed_reports_render_again_from_their_results(tmp_path: Path, name: str) -> None:
    committed = REPO / "bench" / "results" / name
    shutil.copy(committed / "results.json", tmp_path / "results.json")
    result = nmt("compare", "--out", tmp_path, "--report-only")
    assert result.exit_code == 0, result.output
    expected = (committed / "RESULTS.md").read_text(encoding="utf-8")
    assert (tmp_path / "RESULTS.md").read_text(encoding="utf-8") == expected


def test_missing_test_sets_are_an_error(tmp_path: Path) -> None:
    sets = [arg for s in SETS for arg in ("--set", s)]
    result = nmt("compare", TINY[0], "--out", tmp_path, "--test", "nosuch", *sets)
    assert result.exit_code == 2
    assert said(result, "no test set found")
    assert not list(tmp_path.iterdir())  # refused before training anything


@pytest.mark.parametrize("backbone", ["attention", "transformer"])
def test_translate_attention_plot(compared: Path, tmp_path: Path, backbone: str) -> None:
    png = tmp_path / "attention.png"
    result = nmt("translate", compared / backbone, "--attention-plot", png, input="Ein Hund.\n")
    assert result.exit_code == 0, result.output
    assert is_png(png)
    assert result.stdout.strip()  # the greedy translation


def test_attention_plot_refuses_two_sentences_and_lstm(compared: Path, tmp_path: Path) -> None:
    png = tmp_path / "attention.png"
    two = "Ein Hund.\n\nEine Katze.\n"
    result = nmt("translate", compared / "attention", "--attention-plot", png, input=two)
    assert result.exit_code == 2 and said(result, "exactly one input sentence")
    result = nmt("translate", compared / "lstm", "--attention-plot", png, input="Ein Hund.\n")
    assert result.exit_code == 2 and said(result, "no attention")
    assert not png.exists()


@pytest.mark.parametrize("pair", ["de-en", "en-de"])
def test_multi30k_benchmark_configs(pair: str) -> None:
    src, tgt = pair.split("-")
    configs = sorted((REPO / "configs" / "multi30k" / pair).glob("*.yaml"))
    assert [c.stem for c in configs] == sorted(BACKBONES)
    for path in configs:
        cfg = load_config(path)
        assert cfg.model.type == path.stem
        assert (cfg.data.src_lang, cfg.data.tgt_lang) == (src, tgt)
        assert cfg.data.dir == "data/multi30k" and 0 < cfg.train.max_minutes <= 60


def test_selected_model_names_the_step_or_the_average() -> None:
    assert describe_selected({"step": 400, "valid_bleu": 30.0}) == "step 400"
    names = ["step_1200.safetensors", "step_1600.safetensors", "step_2000.safetensors"]
    record = {"step": 2000, "valid_bleu": 31.0, "averaged": names}
    assert describe_selected(record) == "average of 3 (steps 1200-2000)"
    assert describe_selected(None) is None


def _finished_run(tmp_path: Path, cfg: Config, saved: dict) -> RunSpec:
    """A run directory that holds ``done.json`` and ``saved`` as its config.yaml."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "done.json").write_text(json.dumps({"steps": 4}), encoding="utf-8")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved), encoding="utf-8")
    return RunSpec(name="run", config=TINY[0], cfg=cfg, run_dir=run_dir)


def test_reuse_warns_on_a_changed_key_not_on_a_key_added_since(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sets = [s for s in SETS if not s.startswith("train.average_last=")]
    cfg = load_config(TINY[0], sets)  # average_last at its default
    saved = to_dict(cfg)
    del saved["train"]["average_last"]  # a run trained before the key existed
    spec = _finished_run(tmp_path, cfg, saved)
    with caplog.at_level(logging.WARNING):
        assert ensure_trained(spec) == {"steps": 4}
    assert "differs" not in caplog.text

    saved["train"]["lr"] = 0.5
    (spec.run_dir / "config.yaml").write_text(yaml.safe_dump(saved), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        ensure_trained(spec)
    assert "differs" in caplog.text and "train.lr" in caplog.text
    assert "average_last" not in caplog.text


def test_translate_attention_plot_of_an_ensemble(compared: Path, tmp_path: Path) -> None:
    png = tmp_path / "attention.png"
    run = compared / "transformer"
    result = nmt("translate", run, run, "--attention-plot", png, input="Ein Hund.\n")
    assert result.exit_code == 0, result.output
    assert is_png(png)
    single = nmt("translate", run, "--beam", "1", input="Ein Hund.\n")
    assert result.stdout.strip() == single.stdout.strip()  # a model with itself: the model
