#!/usr/bin/env bash
# Train the three shipped Multi30k de->en configs one after the other for a fixed wall-time
# budget each, then score each on test_2016_flickr (beam 5 and greedy).
# Usage: bench/train_three.sh [MINUTES] [OUT_DIR]      (default: 20 minutes, runs/three)
set -euo pipefail
minutes="${1:-20}"
out="${2:-runs/three}"
data=data/multi30k
mkdir -p "$out"
[ -f "$data/train.de" ] || nmt data multi30k --out "$data" --langs de en
for backbone in lstm attention transformer; do
  nmt train "configs/$backbone.yaml" --out "$out/$backbone" --set "train.max_minutes=$minutes"
  for beam in 5 1; do
    nmt evaluate "$out/$backbone" --src "$data/test_2016_flickr.de" \
      --ref "$data/test_2016_flickr.en" --beam "$beam" --json > "$out/$backbone/test_beam$beam.json"
  done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'backbone':12} {'BLEU b5':>8} {'BLEU g':>8} {'chrF b5':>8}")
for b in ("lstm", "attention", "transformer"):
    s5 = json.loads((out / b / "test_beam5.json").read_text())
    s1 = json.loads((out / b / "test_beam1.json").read_text())
    print(f"{b:12} {s5['bleu']:8.2f} {s1['bleu']:8.2f} {s5['chrf']:8.2f}")
PY
