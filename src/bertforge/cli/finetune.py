"""`bertforge finetune classify|ner` and `bertforge predict`: thin wrappers over the finetune package."""

from __future__ import annotations

import logging
import sys

from ..errors import ConfigError

log = logging.getLogger("bertforge")

# Convenience flags and the `finetune.*` keys they set (each is a shortcut for --set finetune.KEY=VALUE).
FLAG_KEYS = (
    "text_column", "text_pair_column", "label_column", "pooling", "max_seq_len", "epochs", "max_steps",
    "batch_size", "lr", "warmup_fraction", "metric", "patience", "class_weights", "freeze_layers",
    "layer_lr_decay", "init",
    "seed", "device",
)

CLASSIFY_EXAMPLE = """\
examples:
  bertforge finetune classify --model run --train sst2/train.tsv --validation sst2/dev.tsv \\
      --text-column sentence --label-column label --out sst2-ft --epochs 3 --baselines
  # a CSV without a header row: give 0-based column numbers; entity + tweet as a text pair
  bertforge finetune classify --model run --train twitter_training.csv --validation twitter_validation.csv \\
      --text-column 1 --text-pair-column 3 --label-column 2 --out tweets-ft"""

NER_EXAMPLE = """\
example:
  bertforge finetune ner --model run --train conll2003/train.txt --validation conll2003/valid.txt \\
      --test conll2003/test.txt --out ner-ft --epochs 3"""

PREDICT_EXAMPLE = """\
examples:
  bertforge predict sst2-ft "a gripping , funny and moving film"
  bertforge predict sst2-ft --input sst2/dev.tsv --label-column label --out preds.csv
  bertforge predict tweets-ft "Borderlands" --text-pair "I love this game" --json
  bertforge predict ner-ft "EU rejects German call to boycott British lamb ." --json"""


def add_commands(sub, parser_class) -> None:
    """Register `finetune classify`, `finetune ner` and `predict` on the top-level subparsers."""
    ft = sub.add_parser("finetune", help="fine-tune an encoder for text classification or NER")
    ft_sub = ft.add_subparsers(dest="finetune_command", required=True, parser_class=parser_class)
    p = ft_sub.add_parser(
        "classify", help="classify texts or text pairs (CSV, TSV, JSON lines)", epilog=CLASSIFY_EXAMPLE
    )
    add_split_args(p, "CSV, TSV or JSON-lines file")
    p.add_argument("--text-column", help="column / JSON field of the text (default: text; a number: no header row)")
    p.add_argument("--text-pair-column", help="column of the second text, for text pairs")
    p.add_argument("--label-column", help="column of the label, strings or integers (default: label)")
    p.add_argument("--pooling", choices=("cls", "mean"), help="sentence vector: first token (default) or mean")
    p.add_argument("--class-weights", choices=("none", "balanced"), help="weight the loss against skewed labels")
    p.add_argument("--metric", choices=("accuracy", "macro_f1", "mcc", "loss"),
                   help="picks the best epoch (default accuracy; mcc = Matthews correlation, CoLA's metric)")
    add_training_args(p)
    p.set_defaults(func=cmd_finetune, task="classify")

    p = ft_sub.add_parser("ner", help="tag words (CoNLL files: word ... TAG per line, IOB2 tags)", epilog=NER_EXAMPLE)
    add_split_args(p, "CoNLL file")
    p.add_argument("--class-weights", choices=("none", "balanced"), help="weight the loss against rare tags")
    p.add_argument("--metric", choices=("f1", "precision", "recall", "accuracy", "loss"), help="default: f1")
    add_training_args(p)
    p.set_defaults(func=cmd_finetune, task="ner")

    p = sub.add_parser(
        "predict", help="labels with probabilities (or NER tags and spans) from a fine-tuned model",
        epilog=PREDICT_EXAMPLE,
    )
    p.add_argument("model", help="fine-tuned folder (from `bertforge finetune`)")
    p.add_argument("text", nargs="?", help="one text to predict on (or use --input)")
    p.add_argument("--text-pair", help="second text, for a model fine-tuned on pairs")
    p.add_argument("--input", help="CSV, TSV or JSON-lines file, or .txt with one text per line")
    p.add_argument("--text-column", help="text column of --input (default: the one used in training)")
    p.add_argument("--text-pair-column", help="second-text column of --input (default: the one used in training)")
    p.add_argument("--label-column", help="gold labels in --input: prints the accuracy (labels must be known)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.add_argument("--out", help="write the predictions to a .csv, .tsv or .jsonl file")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
    p.set_defaults(func=cmd_predict)


def add_split_args(p, kind: str) -> None:
    p.add_argument("--model", required=True, help="run folder, fine-tuned folder or Hugging Face BERT/RoBERTa folder")
    p.add_argument("--train", required=True, help=f"training split ({kind})")
    p.add_argument("--validation", required=True, help=f"validation split ({kind}): picks the best epoch")
    p.add_argument("--test", help=f"test split ({kind}), scored once with the best epoch")
    p.add_argument("--out", required=True, help="fine-tuned folder to write")


def add_training_args(p) -> None:
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="optimizer steps instead of whole epochs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float,
                   help="peak learning rate (default: by the encoder's width, 5e-5 from 768, 1e-4 from 384, 2e-4 below)")
    p.add_argument("--warmup-fraction", type=float, help="share of steps for the linear warmup (default 0.1)")
    p.add_argument("--max-seq-len", type=int, help="truncate inputs to this many tokens (default: the model's)")
    p.add_argument("--patience", type=int, help="stop after N evaluations without improvement")
    p.add_argument("--freeze-layers", type=int, help="keep the embeddings and the lowest N layers fixed")
    p.add_argument("--layer-lr-decay", type=float,
                   help="each layer's LR is this times the one above (e.g. 0.8; default 1 = one LR for all)")
    p.add_argument("--init", choices=("pretrained", "random"), help="random: same shape, fresh weights (a baseline)")
    p.add_argument("--baselines", action="store_true", help="also train from random init and TF-IDF + LR, and compare")
    p.add_argument("--search", action="append", default=[], metavar="KEY=V1,V2",
                   help="try each value (e.g. lr=1e-4,3e-4 pooling=cls,mean; every combination), for the model "
                        "and its --baselines alike; each keeps its best on the validation split")
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the comparison table")
    p.add_argument("--config", help="YAML file with `finetune:` (and `model:`, e.g. dropout) sections")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. finetune.lr=3e-5")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")


def overrides_from_args(args) -> dict:
    """--set values over the convenience flags, as a nested dict of overrides."""
    from ..config import merge, parse_overrides

    flags = {name: getattr(args, name) for name in FLAG_KEYS if getattr(args, name, None) is not None}
    return merge({"finetune": {"task": args.task, **flags}}, parse_overrides(args.set))


def cmd_finetune(args) -> int:
    """Fine-tune, write the folder, print the comparison table (or metrics.json with --json)."""
    from ..finetune import comparison_table, finetune, to_json_text

    metrics = finetune(
        args.model, args.train, args.validation, args.out, settings=overrides_from_args(args),
        config_file=args.config, test=args.test, baselines=args.baselines, progress=not args.quiet,
        search=args.search,
    )
    sys.stdout.write((to_json_text(metrics) if args.json else comparison_table(metrics)) + "\n")
    return 0


def cmd_predict(args) -> int:
    """Predict on one text or a file; print the results, or write them with --out."""
    from ..finetune import load_finetuned, predict, read_predict_input, write_predictions

    if (args.text is None) == (args.input is None):
        raise ConfigError("give one text to predict on, or --input FILE (not both)")
    ft = load_finetuned(args.model, args.device)
    if args.text is not None:
        texts, pairs, gold = [args.text], None if args.text_pair is None else [args.text_pair], None
    else:
        data, gold = read_predict_input(ft, args.input, args.text_column, args.text_pair_column, args.label_column)
        texts, pairs = data.texts, data.pairs
    results = predict(ft, texts, pairs, args.batch_size)
    rows = [{"text": t, **({"text_pair": pairs[i]} if pairs else {}), **r}
            for i, (t, r) in enumerate(zip(texts, results))]
    if gold is not None:
        correct = sum(ft.labels.index(r["label"]) == g for r, g in zip(results, gold))
        log.info("accuracy %.4f on %d labelled rows", correct / len(gold), len(gold))
    if args.out:
        write_predictions(args.out, rows, ft)
        log.info("%d predictions -> %s", len(rows), args.out)
    if args.json:
        from ..finite import dumps  # strict JSON: NaN scores (never expected) would be null

        sys.stdout.write(dumps(rows, indent=2, ensure_ascii=False) + "\n")
    elif not args.out:
        sys.stdout.write("".join(plain_line(row, ft.task) for row in rows))
    return 0


def plain_line(row: dict, task: str) -> str:
    """One classification per line (label, score, text), or a text followed by its entities."""
    if task == "classify":
        pair = f"\t{row['text_pair']}" if "text_pair" in row else ""
        return f"{row['label']}\t{row['score']:.4f}\t{row['text']}{pair}\n"
    entities = "".join(
        f"  {e['type']}\t{e['text']}\t{e['start']}-{e['end']}\t{e['score']:.4f}\n" for e in row["entities"]
    )
    return f"{row['text']}\n{entities or '  (no entities)' + chr(10)}"
