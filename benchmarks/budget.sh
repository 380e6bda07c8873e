#!/usr/bin/env bash
# What a `pretrain --budget` buys downstream, on text that includes the tasks' unlabelled training text
# (issue 17; the README's "How good a model will I get?" 1-hour table):
#   bash benchmarks/budget.sh OUT [BUDGET] [DATA_DIR]
#   SEARCH="--search lr=2e-4,1e-3 --search pooling=cls,mean" bash benchmarks/budget.sh ...   (each model
#   then picks its fine-tuning settings on the validation split, as TF-IDF does; the README's grid rows)
# 1. benchmarks/task_corpus.py: the task corpus (Kant, WikiText-2, TinyStories, AG News without its
#    evaluation rows, and the training texts of SST-2, Twitter, CoLA, CoNLL-2003, no labels) and the
#    labelled slices (SST-2: 1,000 training sentences, seed 0; AG News: 1,000 train / 1,000 eval rows
#    of test.csv, seed 0).
# 2. `bertforge pretrain --budget BUDGET` (default 1h) on all cores, then `bertforge evaluate`
#    (validation loss, masked accuracy, bits per byte).
# 3. Each task fine-tuned from the run and, with --baselines, from a random init of the same shape with the
#    same settings, beside TF-IDF + LR (C and n-grams picked on the same validation split) and the majority
#    class. The best epoch is picked on the validation split for both models, as the baseline's C is.
# A finished run in OUT/run is reused (delete it to pretrain again). DATA_DIR (else $BERTFORGE_DATA) holds
# the public sets under the names of benchmarks/finetune_table.sh; the figures come from ../shared/data.
set -euo pipefail
out=$1; budget=${2:-1h}; data=${3:-${BERTFORGE_DATA:?pass DATA_DIR or set BERTFORGE_DATA}}
here=$(dirname "$0")
mkdir -p "$out"
[ -f "$out/corpus.txt" ] || python "$here/task_corpus.py" "$data" "$out/corpus.txt" "$out/slices"
[ -d "$out/run" ] || /usr/bin/time -f "pretrain %e s" bertforge pretrain --corpus "$out/corpus.txt" \
    --doc-per line --budget "$budget" --out "$out/run" --quiet 2>&1 | tee "$out/pretrain.txt"
bertforge evaluate "$out/run" --batches 0 --json | tee "$out/eval.json"
ft() { local name=$1; shift; /usr/bin/time -f "$name %e s" bertforge finetune classify --model "$out/run" \
    --out "$out/$name" --baselines --quiet --json ${SEARCH:-} "$@" > "$out/$name.json"; }
ft sst2-1k --train "$out/slices/sst2-train-1000.tsv" --validation "$data/sst2/dev.tsv" \
    --text-column sentence --label-column label --epochs 10
ft ag_news-1k --train "$out/slices/ag_news-train-1000.csv" --validation "$out/slices/ag_news-eval.csv" \
    --text-column text --label-column label --epochs 10
ft cola --train "$data/cola/in_domain_train.tsv" --validation "$data/cola/out_of_domain_dev.tsv" \
    --text-column 3 --label-column 1 --metric mcc --epochs 3
ft sst2 --train "$data/sst2/train.tsv" --validation "$data/sst2/dev.tsv" \
    --text-column sentence --label-column label --epochs 1
python - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'task':<11} {'metric':<9} {'pretrained':>10} {'random init':>11} {'TF-IDF + LR':>11} {'majority':>8}")
for name in ("sst2-1k", "ag_news-1k", "cola", "sst2"):
    m = json.loads((out / f"{name}.json").read_text())
    key, b = m["metric"], m["baselines"]
    row = [m["best"]["validation"][key], b["random_init"]["validation"][key], b["tfidf_logreg"]["validation"][key],
           b["majority"]["validation"][key]]
    print(f"{name:<11} {key:<9} " + " ".join(f"{v:>{w}.3f}" for v, w in zip(row, (10, 11, 11, 8))))
EOF
