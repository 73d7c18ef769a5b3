"""Finished comparisons side by side: ``nmt compare --merge A B ... --out OUT``.

The bilingual and the multilingual models of a language pair are often trained in separate
comparisons (other days, even other hosts), and their reports each show one side. Merging
their ``results.json`` writes the report that puts every direction next to every system,
and trains, translates and scores nothing: each run's entry is copied as it was measured,
and the report lists where (and when) each comparison was made.

Run names must stay unique in a report (they name its rows, plot legends and files): a name
that several merged runs share gets their languages, ``transformer de-en``, and the source
folder's name as well if that is not enough. The by-direction table keeps one column per
*system*, the run's name before merging, so the bilingual ``transformer`` runs of de-en and
en-de fill one column beside the multilingual model's, unless two such runs translate the
same direction (then each keeps a column of its own).
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

from nmt.compare.report import directions_of, summary_plots, write_report
from nmt.compare.runs import now, write_json
from nmt.errors import UsageError


def merge_comparisons(folders: list[Path], out: Path) -> Path:
    """Write ``OUT/results.json``, ``RESULTS.md`` and the plots over ``folders``' runs."""
    out = Path(out)
    sources = [_read(Path(folder), out) for folder in folders]
    results = merge_results(sources)  # refuses before OUT is made
    out.mkdir(parents=True, exist_ok=True)
    for run, (folder, _) in zip(results["runs"], _runs_with_folders(sources), strict=True):
        _copy_attention_plot(run, folder, out)
    results["plots"] = summary_plots(results["runs"], out)
    write_json(out / "results.json", results)
    return write_report(out, results)


def merge_results(sources: list[tuple[Path, dict]]) -> dict:
    """One results dict over ``(folder, results)`` pairs, in the order given.

    The comparisons must have scored with one beam size (the report names one). The
    budget is kept when all share it; otherwise each run's own minutes stand in the table.
    """
    beams = sorted({results["beam"] for _, results in sources})
    if len(beams) > 1:
        raise UsageError(
            f"the comparisons were scored with different beam sizes ({', '.join(map(str, beams))})"
            ": merge only comparisons made with one beam"
        )
    budgets = {results["budget_minutes"] for _, results in sources}
    pairs = _runs_with_folders(sources)
    return {
        "generated": now(),
        "merged_from": [_provenance(folder, results) for folder, results in sources],
        "budget_minutes": budgets.pop() if len(budgets) == 1 else None,
        "beam": beams[0],
        "runs": _unique_runs(pairs),
    }


def _read(folder: Path, out: Path) -> tuple[Path, dict]:
    path = folder / "results.json"
    if not path.is_file():
        raise UsageError(f"{folder} has no results.json: --merge takes nmt compare's folders")
    if folder.resolve() == out.resolve():
        raise UsageError(f"--out {out} is one of the merged comparisons: name a new folder")
    return folder, json.loads(path.read_text(encoding="utf-8"))


def _provenance(folder: Path, results: dict) -> dict:
    """Where a merged comparison came from: its folder, date, overrides and versions."""
    keys = ("generated", "budget_minutes", "overrides", "versions")
    return {"folder": str(folder), **{k: results[k] for k in keys if k in results}}


def _runs_with_folders(sources: list[tuple[Path, dict]]) -> list[tuple[Path, dict]]:
    return [(folder, run) for folder, results in sources for run in results["runs"]]


def _unique_runs(pairs: list[tuple[Path, dict]]) -> list[dict]:
    """The runs, each a copy with a unique ``name`` and its by-direction ``system``."""
    names = Counter(run["name"] for _, run in pairs)
    labelled = Counter((run["name"], run["languages"]) for _, run in pairs)
    covered = Counter((run["name"], d) for _, run in pairs for d in directions_of(run))
    runs = []
    for folder, run in pairs:
        name = run["name"]
        if names[name] > 1:
            name = f"{name} {run['languages']}"
            if labelled[(run["name"], run["languages"])] > 1:
                name = f"{name} ({folder.name})"
        shared = any(covered[(run["name"], d)] > 1 for d in directions_of(run))
        runs.append({**run, "name": name, "system": name if shared else run["name"]})
    return runs


def _copy_attention_plot(run: dict, folder: Path, out: Path) -> None:
    """Copy the run's attention plot under a file name made from its (unique) run name."""
    plot = run.get("attention_plot")
    if not plot:
        return
    source = folder / plot["file"]
    if not source.is_file():  # the report then shows no picture for this run, not a broken one
        run["attention_plot"] = None
        return
    file = "attention_" + re.sub(r"[^A-Za-z0-9_.-]+", "-", run["name"]).strip("-") + ".png"
    shutil.copyfile(source, out / file)
    run["attention_plot"] = {**plot, "file": file}
