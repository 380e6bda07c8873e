"""`bertforge tokenizer train|encode`, `prepare`, `model summary`: the stages before training."""

from __future__ import annotations

import logging

from .common import add_common, add_config_args, add_corpus_args, config_from_args, print_json, settings_from_args

log = logging.getLogger("bertforge")


def cmd_tokenizer_train(args) -> int:
    from ..api import build_tokenizer

    tok = build_tokenizer(args.corpus, args.out, preset=args.preset, config=args.config, settings=settings_from_args(args))
    log.info("tokenizer %s: %d tokens, saved to %s", tok.kind, tok.vocab_size, args.out)
    return 0


def cmd_tokenizer_encode(args) -> int:
    from ..tokenizer import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    ids = tok.encode(args.text)
    tokens = [tok.tokenizer.id_to_token(i) for i in ids]
    if args.json:
        print_json({"ids": ids, "tokens": tokens})
    else:
        print(" ".join(tokens))
        print(" ".join(str(i) for i in ids))
    return 0


def cmd_prepare(args) -> int:
    from ..api import prepare

    out = prepare(args.corpus, args.tokenizer, args.out, preset=args.preset, config=args.config,
                  settings=settings_from_args(args), val_corpus=args.val_corpus, progress=not args.quiet)
    log.info("shards ready in %s", out)
    return 0


def cmd_model_summary(args) -> int:
    from ..model import MaskedLM, parameter_table

    table = parameter_table(MaskedLM(config_from_args(args).model))
    total = sum(count for _, _, count in table)
    if args.json:
        rows = [{"name": n, "shape": list(s), "params": c} for n, s, c in table]
        print_json({"preset": args.preset, "total_params": total, "parameters": rows})
        return 0
    width = max(len(n) for n, _, _ in table)
    for name, shape, count in table:
        print(f"{name:<{width}}  {str(list(shape)):<16} {count:>12,}")
    print(f"{'total':<{width}}  {'':<16} {total:>12,}")
    return 0


def add_commands(sub, parser_class) -> None:
    add_tokenizer(sub, parser_class)
    add_prepare(sub)
    add_model(sub, parser_class)


def add_tokenizer(sub, parser_class) -> None:
    tok = sub.add_parser("tokenizer", help="train or try a tokenizer")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", required=True, parser_class=parser_class)
    p = tok_sub.add_parser(
        "train", help="train a tokenizer on a corpus",
        epilog="example:\n  bertforge tokenizer train --corpus kant.txt --kind bytelevel-bpe --vocab-size 16000 --out tok",
    )
    add_corpus_args(p, required=True)
    p.add_argument("--out", required=True, help="folder for tokenizer.json")
    p.add_argument("--kind", help="bytelevel-bpe (RoBERTa), wordpiece (BERT), sentencepiece-bpe, unigram")
    p.add_argument("--vocab-size", type=int)
    p.add_argument("--min-frequency", type=int)
    p.add_argument("--lowercase", action="store_true", default=None)
    add_config_args(p)
    add_common(p)
    p.set_defaults(func=cmd_tokenizer_train)
    p = tok_sub.add_parser(
        "encode", help="show how a text is tokenized",
        epilog='example:\n  bertforge tokenizer encode tok "Human thinking involves human reason."',
    )
    p.add_argument("tokenizer", help="tokenizer folder (or a run / data folder's tokenizer/)")
    p.add_argument("text")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_tokenizer_encode)


def add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare", help="tokenize and pack a corpus into memory-mapped shards",
        epilog="example:\n  bertforge prepare --corpus kant.txt --tokenizer tok --seq-len 128 --out data",
    )
    add_corpus_args(p, required=True)
    p.add_argument("--tokenizer", required=True, help="tokenizer folder")
    p.add_argument("--out", required=True, help="output folder for shards and manifest.json")
    p.add_argument("--val-corpus", action="append", help="validation text (instead of --val-fraction)")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--packing", choices=("full", "pad", "line"))
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--template", help="JSON/CSV records -> texts: alpaca, or e.g. 'User: {prompt}\\nAgent: {response}'")
    p.add_argument(
        "--objective", choices=("mlm", "mlm+nsp", "mlm+sop"),
        help="mlm+nsp / mlm+sop: build sentence pairs (A, B, label) for BERT's / ALBERT's second objective",
    )
    add_config_args(p)
    add_common(p)
    p.set_defaults(func=cmd_prepare)


def add_model(sub, parser_class) -> None:
    model = sub.add_parser("model", help="inspect model shapes")
    model_sub = model.add_subparsers(dest="model_command", required=True, parser_class=parser_class)
    p = model_sub.add_parser(
        "summary", help="every tensor's name, shape and size, and the total",
        epilog="example:\n  bertforge model summary --preset kantai --json",
    )
    add_config_args(p, preset_default="small")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_model_summary)
