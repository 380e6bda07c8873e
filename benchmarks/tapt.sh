#!/usr/bin/env bash
# Task-adaptive pretraining for SST-2 (issue 17; the README's "Task-adaptive pretraining" section):
#   bash benchmarks/tapt.sh OUT [BUDGET] [DATA_DIR]
# 1. The task corpus and labelled slices of benchmarks/budget.sh (reused when OUT holds them), and
#    SST-2's training sentences without their labels.
# 2. The tokenizer of budget.sh's run (OUT/run/tokenizer) when there is one, else one trained the
#    same way on the task corpus alone (`--preset small`, as `pretrain --corpus` does).
# 3. Shards of the two sources mixed by corpus weights: the task corpus 48% of the documents,
#    SST-2's sentences 52% (they are read twice; Gururangan et al., 2020), then
#    `bertforge pretrain --budget BUDGET` (default 1h) on all cores and `bertforge evaluate`.
# 4. SST-2 fine-tuned on 1,000 labelled sentences (each side picks lr and pooling on the dev split,
#    with the same-shape random init and tuned TF-IDF + LR beside it) and on all 67,349 (1 epoch,
#    mean pooling, lr 1e-4 and 2e-4).
# DATA_DIR (else $BERTFORGE_DATA) holds the public sets under the names of benchmarks/finetune_table.sh.
set -euo pipefail
out=$1; budget=${2:-1h}; data=${3:-${BERTFORGE_DATA:?pass DATA_DIR or set BERTFORGE_DATA}}
here=$(dirname "$0")
mkdir -p "$out"
[ -f "$out/corpus.txt" ] || python "$here/task_corpus.py" "$data" "$out/corpus.txt" "$out/slices"
tail -n +2 "$data/sst2/train.tsv" | cut -f1 > "$out/sst2-text.txt"
tok="$out/run/tokenizer"
if [ ! -f "$tok/tokenizer.json" ]; then
    tok="$out/tapt-tokenizer"
    [ -f "$tok/tokenizer.json" ] || bertforge tokenizer train --corpus "$out/corpus.txt" --doc-per line \
        --preset small --out "$tok" --quiet
fi
[ -d "$out/tapt-data" ] || bertforge prepare --corpus "$out/corpus.txt:0.48" --corpus "$out/sst2-text.txt:0.52" \
    --doc-per line --tokenizer "$tok" --out "$out/tapt-data" --quiet
[ -d "$out/tapt" ] || /usr/bin/time -f "pretrain %e s" bertforge pretrain --data "$out/tapt-data" \
    --budget "$budget" --out "$out/tapt" --quiet 2>&1 | tee "$out/tapt-pretrain.txt"
bertforge evaluate "$out/tapt" --batches 0 --json | tee "$out/tapt-eval.json"
bertforge finetune classify --model "$out/tapt" --out "$out/tapt-sst2-1k" \
    --train "$out/slices/sst2-train-1000.tsv" --validation "$data/sst2/dev.tsv" \
    --text-column sentence --label-column label --epochs 10 \
    --search lr=2e-4,1e-3 --search pooling=cls,mean --baselines --quiet | tee "$out/tapt-sst2-1k.txt"
bertforge finetune classify --model "$out/tapt" --out "$out/tapt-sst2" \
    --train "$data/sst2/train.tsv" --validation "$data/sst2/dev.tsv" \
    --text-column sentence --label-column label --epochs 1 --pooling mean \
    --search lr=1e-4,2e-4 --baselines --quiet | tee "$out/tapt-sst2.txt"
