#!/usr/bin/env bash
# What N minutes of pretraining buy downstream: pretrained vs random-init fine-tuning, tuned TF-IDF + LR and
# the majority class, one table per task (issue 17).
#   bash benchmarks/downstream.sh OUT [MINUTES] [DATA_DIR]
# DATA_DIR (else $BERTFORGE_DATA, else the repository's tests/data): the real sets as in
# benchmarks/finetune_table.sh (sst2/train.tsv, kant/kant.txt); on tests/data its small stand-ins: a smoke run.
set -euo pipefail
out=$1; minutes=${2:-10}; data=${3:-${BERTFORGE_DATA:-$(dirname "$0")/../tests/data}}
[ -d "$data" ] || { echo "error: data folder $data not found; pass DATA_DIR or set BERTFORGE_DATA" >&2; exit 2; }
mkdir -p "$out"
labelled="$data/sst2/train.tsv"; [ -f "$labelled" ] || labelled="$data/reviews/train.tsv"
corpus="$data/kant/kant.txt"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} bertforge bench downstream --minutes "$minutes" \
    --labelled "$labelled" --text-column sentence --label-column label --corpus "$corpus" \
    --train-examples 1000 --eval-examples 1000 --seed 0 \
    --finetune-set finetune.lr=2e-4 --finetune-set finetune.epochs=3 \
    --work-dir "$out/sst2" --quiet | tee "$out/sst2.txt"
