"""The report of a comparison: RESULTS.md and its plots, made from results.json alone.

Nothing here trains, translates or reads a run directory, so a report can be rendered
again (after a change of layout, say) from a committed ``results.json``:
``nmt compare --report-only OUT``.
"""

from __future__ import annotations

import json
from pathlib import Path

from nmt import plots


def summary_plots(runs: list[dict], out: Path) -> dict:
    """Validation curves and test BLEU bars of all runs; returns the file names."""
    curves = {r["name"]: [(p["minutes"], p["valid_bleu"]) for p in r["valid_curve"]] for r in runs}
    bleu = bleu_bar_groups(runs)
    plots.plot_validation_curves(curves, out / "valid_bleu.png")
    plots.plot_test_bleu(bleu, out / "test_bleu.png")
    return {"valid_bleu": "valid_bleu.png", "test_bleu": "test_bleu.png"}


def bleu_bar_groups(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Test BLEU as ``{run: {group: bleu}}`` for the bar plot: a group is a test set, and
    its direction too when the runs cover several (a bilingual run's ``test_2016_flickr``
    and a multilingual run's ``test_2016_flickr.en-cs`` then share the group
    ``test_2016_flickr`` / ``en-cs``)."""
    several = len(set().union(*map(directions_of, runs))) > 1
    return {
        r["name"]: {
            (f"{t.get('test_set', key)}\n{direction_of(r, t)}" if several else key): t["bleu"]
            for key, t in r["test"].items()
        }
        for r in runs
    }


def write_report(out: Path, results: dict | None = None) -> Path:
    """Write ``OUT/RESULTS.md`` from ``results`` (default: ``OUT/results.json``)."""
    out = Path(out)
    if results is None:
        results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    report = out / "RESULTS.md"
    report.write_text(render_markdown(results), encoding="utf-8")
    return report


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: header line, separator, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def _main_header(beam: int) -> list[str]:
    return [
        "run",
        "backbone",
        "parameters",
        "train time",
        "device",
        "train tokens/s",
        "best valid BLEU",
        "test set",
        "BLEU",
        "BLEU (lc)",
        "chrF",
        "TER",
        "greedy sent/s",
        f"beam {beam} sent/s",
    ]


def _main_row(run: dict, beam: int) -> list[str]:
    test_set = run["speed"]["test_set"]
    t, speed = run["test"][test_set], run["speed"]
    cells = [
        run["name"],
        run["backbone"],
        _fmt(run["parameters"], ","),
        f"{_fmt(run['train_minutes'], '.1f')} min",
        run["device"] or "–",
        _fmt(run["tokens_per_s"], ",.0f"),
        _fmt(run["best_valid_bleu"]),
        test_set,
        _fmt(t["bleu"]),
        _fmt(t["bleu_lowercase"]),
        _fmt(t["chrf"]),
        _fmt(t["ter"]),
        _fmt(speed["greedy_sent_per_s"], ".1f"),
        _fmt(speed[f"beam{beam}_sent_per_s"], ".1f"),
    ]
    return cells


def _md_main(results: dict) -> list[str]:
    runs = results["runs"]
    budget, beam = results["budget_minutes"], results["beam"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated {results['generated']} by `nmt compare` "
        + (f"(budget {budget:g} minutes per run)." if budget is not None else "(config budgets)."),
        "",
        *_md_merged_from(results.get("merged_from")),
        f"Test scores: sacreBLEU on detokenized output, beam {beam} with each config's length "
        "penalty, best checkpoint by greedy validation BLEU (the test sets never select "
        "anything). Speed: sentences/s translating the whole test set, fp32, "
        "the config's batch size.",
        "",
        *_md_table(_main_header(beam), [_main_row(r, beam) for r in runs]),
        "",
    ]
    return lines + _md_signatures(runs)


def _md_merged_from(sources: list[dict] | None) -> list[str]:
    """The comparisons a merged report copies its runs from (nothing was measured again)."""
    if not sources:
        return []
    where = [f"- `{s['folder']}`, generated {s['generated']}" for s in sources]
    intro = "Merged from these comparisons; each run's figures are copied as they measured them:"
    return [intro, "", *where, ""]


def _md_signatures(runs: list[dict]) -> list[str]:
    lines = ["Signatures:", ""]
    for label, key in [
        ("BLEU", "bleu_signature"),
        ("BLEU (lc)", "bleu_lowercase_signature"),
        ("chrF", "chrf_signature"),
        ("TER", "ter_signature"),
    ]:
        sigs = dict.fromkeys(t[key] for r in runs for t in r["test"].values())
        lines += [f"- {label}: `{sig}`" for sig in sigs]
    return lines + [""]


def _md_all_sets(runs: list[dict]) -> list[str]:
    rows = [
        [r["name"], name, str(t["n"])]
        + [_fmt(t[k]) for k in ("bleu", "bleu_lowercase", "chrf", "ter")]
        for r in runs
        for name, t in r["test"].items()
    ]
    header = ["run", "test set", "sentences", "BLEU", "BLEU (lc)", "chrF", "TER"]
    return ["## All test sets", "", *_md_table(header, rows), ""]


def direction_of(run: dict, test: dict) -> str:
    """A test entry's direction (results written before entries named theirs: the run's)."""
    return test.get("direction") or run["languages"]


def directions_of(run: dict) -> set[str]:
    """Every direction the run was tested on."""
    return {direction_of(run, t) for t in run["test"].values()}


def _system(run: dict) -> str:
    """The run's column in the by-direction table: its name, or in a merged report
    (:mod:`nmt.compare.merge`) the name it had, shared by runs of disjoint directions."""
    return run.get("system") or run["name"]


def _md_directions(runs: list[dict]) -> list[str]:
    """Direction x system: every direction any run was tested on, one column per system
    (bilingual and multilingual runs side by side). Only when there are several."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in runs:
        for key, t in r["test"].items():
            row = (direction_of(r, t), t.get("test_set", key))
            cells.setdefault(row, {})[_system(r)] = f"{_fmt(t['bleu'])} / {_fmt(t['chrf'])}"
    if len({direction for direction, _ in cells}) < 2:
        return []
    names = list(dict.fromkeys(_system(r) for r in runs))
    rows = [
        [d, name, *(found.get(n, "–") for n in names)] for (d, name), found in sorted(cells.items())
    ]
    return [
        "## By direction",
        "",
        "Test BLEU / chrF of every run on every direction it translates (signatures above).",
        "",
        *_md_table(["direction", "test set", *names], rows),
        "",
        *[f"- `{name}`: {_describe_system(name, runs)}" for name in names],
        "",
    ]


def _describe_system(name: str, runs: list[dict]) -> str:
    """What a by-direction column holds: one model for its directions, or one per direction."""
    members = [r for r in runs if _system(r) == name]
    directions = [sorted(directions_of(r)) for r in members]
    if len(members) == 1:
        return "one model for " + ", ".join(directions[0])
    each = [f"`{r['name']}` ({', '.join(d)})" for r, d in zip(members, directions, strict=True)]
    return "one model per direction: " + ", ".join(each)


def _md_plots(results: dict) -> list[str]:
    lines = [
        "## Plots",
        "",
        "![Validation BLEU against training time](valid_bleu.png)",
        "",
        "![Test BLEU](test_bleu.png)",
        "",
    ]
    for r in results["runs"]:
        a = r["attention_plot"]
        if a:
            lines += [
                f"Attention of `{r['name']}` on {a['test_set']} line {a['line']}:",
                f"`{a['source']}` -> `{a['translation']}`",
                "",
                f"![Attention of {r['name']}]({a['file']})",
                "",
            ]
    return lines


def _md_runs(runs: list[dict]) -> list[str]:
    rows = [
        [
            r["name"],
            f"`{r['config']}`",
            r["languages"],
            _fmt(r["steps"], "d"),
            r["stop_reason"] or "–",
            r.get("selected_model") or "–",
            f"`{r['run_dir']}`",
        ]
        for r in runs
    ]
    header = ["run", "config", "languages", "steps", "stopped by", "selected model", "run dir"]
    return ["## Runs", "", *_md_table(header, rows), ""]


def render_markdown(results: dict) -> str:
    """The report: main table, signatures, every test set, plots, run details."""
    runs = results["runs"]
    lines = _md_main(results) + _md_directions(runs) + _md_all_sets(runs)
    lines += _md_plots(results) + _md_runs(runs)
    return "\n".join(lines)
