#!/usr/bin/env bash
# Masked LM vs ELECTRA at the same budget, on the task's own unlabelled text (issue 17):
#   bash benchmarks/objectives.sh OUT [MINUTES] [DATA_DIR]
# 1. the pretraining corpus is SST-2's training sentences without their labels (task-adaptive, as
#    Gururangan et al. 2020); 2. `pretrain --budget MINUTES` once with the default objective and once
#    with --objective electra, side by side, one core each (same machine state for both);
#    3. each is fine-tuned on 1,000 labelled training sentences (seed 0) and scored on the dev set
#    (872, never in the pretraining text), with the same-shape random init and tuned TF-IDF + LR
#    beside it (--baselines). DATA_DIR (else $BERTFORGE_DATA) holds sst2/train.tsv and sst2/dev.tsv.
set -euo pipefail
out=$1; minutes=${2:-20}; data=${3:-${BERTFORGE_DATA:?pass DATA_DIR or set BERTFORGE_DATA}}
mkdir -p "$out"
tail -n +2 "$data/sst2/train.tsv" | cut -f1 > "$out/sst2-text.txt"
python - "$data/sst2/train.tsv" "$out/train-1000.tsv" <<'EOF'
import random, sys
rows = open(sys.argv[1], encoding="utf-8").read().splitlines()
header, body = rows[0], rows[1:]
random.Random(0).shuffle(body)
open(sys.argv[2], "w", encoding="utf-8").write("\n".join([header, *body[:1000]]) + "\n")
EOF
for objective in mlm electra; do
    OMP_NUM_THREADS=1 bertforge pretrain --corpus "$out/sst2-text.txt" --doc-per line --budget "${minutes}m" --objective "$objective" \
        --set train.device=cpu --out "$out/$objective" --quiet > "$out/$objective.pretrain.txt" 2>&1 &
done
wait
for objective in mlm electra; do
    bertforge evaluate "$out/$objective" --json > "$out/$objective.eval.json"
    OMP_NUM_THREADS=2 bertforge finetune classify --model "$out/$objective" --train "$out/train-1000.tsv" \
        --validation "$data/sst2/dev.tsv" --text-column sentence --label-column label --epochs 5 \
        --baselines --out "$out/$objective-sst2" --quiet | tee "$out/$objective-sst2.txt"
done
