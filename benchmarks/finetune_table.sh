#!/usr/bin/env bash
# The README's fine-tuning table: four tasks, each fine-tuned from MODEL and, with --baselines,
# from a random init of the same shape (plus TF-IDF + logistic regression for the classifiers).
#   bash benchmarks/finetune_table.sh MODEL OUT [DATA_DIR]
# DATA_DIR (else $BERTFORGE_DATA, else the repository's tests/data): the README's figures come from
# the development machines' ../shared/data (Twitter, SST-2, CoLA, CoNLL-2003). On the repository's
# tests/data the same commands run on its small stand-ins (tweets, reviews, ner; no CoLA): a smoke run.
# The real sets (public, not redistributable here; download needs the network), under the names below:
#   twitter-entity-sentiment/  Kaggle jp797498e/twitter-entity-sentiment-analysis (training reduced to one row per id)
#   sst2/train.tsv, dev.tsv    GLUE SST-2, https://dl.fbaipublicfiles.com/glue/data/SST-2.zip
#   cola/                      CoLA raw files, https://nyu-mll.github.io/CoLA/ (in_domain_train.tsv, out_of_domain_dev.tsv)
#   conll2003/                 CoNLL-2003 English (train.txt, valid.txt), https://www.clips.uantwerpen.be/conll2003/ner/ (Reuters RCV1, research use)
# benchmarks/task_corpus.py also reads kant/kant.txt (see the README's "A real run"), wikitext-2/ (WikiText-2 raw
# valid + test), tinystories/ (TinyStories train and validation heads) and ag_news/test.csv.
set -euo pipefail
model=$1; out=$2; data=${3:-${BERTFORGE_DATA:-$(dirname "$0")/../tests/data}}
[ -d "$data" ] || { echo "error: data folder $data not found; pass DATA_DIR or set BERTFORGE_DATA" >&2; exit 2; }
mkdir -p "$out"
ft() { local name=$1; shift; /usr/bin/time -f "$name %e s" bertforge "$@" --baselines --quiet --json > "$out/$name.json"; }
if [ ! -f "$data/sst2/train.tsv" ]; then  # the repository's tests/data: same formats, made-up text
    ft twitter finetune classify --model "$model" --train "$data/tweets/training.csv" \
        --validation "$data/tweets/validation.csv" --text-column 1 --text-pair-column 3 \
        --label-column 2 --out "$out/twitter" --epochs 1 --lr 2e-4
    ft sst2 finetune classify --model "$model" --train "$data/reviews/train.tsv" --validation "$data/reviews/dev.tsv" \
        --text-column sentence --label-column label --out "$out/sst2" --epochs 1 --lr 2e-4
    ft conll finetune ner --model "$model" --train "$data/ner/train.txt" --validation "$data/ner/valid.txt" \
        --out "$out/conll" --epochs 1 --lr 5e-4
    exit 0
fi
# Twitter entity sentiment: 4 classes, the text is the pair (entity, tweet); headerless CSV.
ft twitter finetune classify --model "$model" --train "$data/twitter-entity-sentiment/twitter_training_one_per_id.csv" \
    --validation "$data/twitter-entity-sentiment/twitter_validation.csv" --text-column 1 --text-pair-column 3 \
    --label-column 2 --out "$out/twitter" --epochs 1 --lr 2e-4
# GLUE SST-2: dev accuracy (67k training phrases: one epoch).
ft sst2 finetune classify --model "$model" --train "$data/sst2/train.tsv" --validation "$data/sst2/dev.tsv" \
    --text-column sentence --label-column label --out "$out/sst2" --epochs 1 --lr 2e-4
# CoLA: Matthews correlation on the out-of-domain dev set; headerless TSV.
ft cola finetune classify --model "$model" --train "$data/cola/in_domain_train.tsv" \
    --validation "$data/cola/out_of_domain_dev.tsv" --text-column 3 --label-column 1 --metric mcc \
    --out "$out/cola" --epochs 3 --lr 2e-4
# CoNLL-2003 NER: entity-level F1 on the dev set (one epoch).
ft conll finetune ner --model "$model" --train "$data/conll2003/train.txt" --validation "$data/conll2003/valid.txt" \
    --out "$out/conll" --epochs 1 --lr 5e-4
