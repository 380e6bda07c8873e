"""Commands that read a trained model: export / import, evaluate, fill-mask, embed, similar, generate, chat."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from ..errors import ConfigError
from .common import add_common, at_least, print_json, read_lines_file

log = logging.getLogger("bertforge")


def cmd_export(args) -> int:
    from ..api import export
    from ..files import read_json

    out = export(args.run, args.out, args.arch)
    model_class = read_json(Path(out) / "config.json")["architectures"][0]  # MLM, causal LM or a fine-tuned head
    log.info("exported to %s (load it with transformers' %s.from_pretrained)", out, model_class)
    return 0


def cmd_import(args) -> int:
    from ..api import import_hf

    out = import_hf(args.hf_dir, args.out)
    log.info("imported %s into the run folder %s", args.hf_dir, out)
    return 0


def cmd_evaluate(args) -> int:
    from ..api import evaluate

    result = evaluate(args.run, data=args.data, corpus=args.corpus, batch_size=args.batch_size,
                      batches=args.batches, device=args.device)
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value:.4f}" if isinstance(value, float) else f"{key:>16}: {value}")
    return 0


def cmd_fill_mask(args) -> int:
    from ..infer import fill_mask, load_run

    run = load_run(args.run, device=args.device)
    if run.config.model.causal:
        raise ConfigError(f"{args.run} is a causal LM (train.objective clm): use `bertforge generate` or `chat`")
    results = fill_mask(run, args.text, args.top_k)
    if args.json:
        print_json(results)
        return 0
    for i, candidates in enumerate(results, 1):
        if len(results) > 1:
            print(f"mask {i}:")
        for c in candidates:
            print(f"  {c['score']:.4f}  {c['token']}")
    return 0


def cmd_embed(args) -> int:
    import numpy as np

    from ..files import atomic_write_bytes
    from ..infer import embed, load_run

    texts = read_lines_file(Path(args.input), "--input")
    vectors = embed(load_run(args.model, device=args.device), texts, args.pooling, args.batch_size)
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    atomic_write_bytes(args.out, buffer.getvalue())
    log.info("%d x %d embeddings -> %s", *vectors.shape, args.out)
    return 0


def cmd_similar(args) -> int:
    from ..infer import load_run, similar

    neighbours = similar(load_run(args.model, device=args.device), args.word, args.top_k)
    if args.json:
        print_json(neighbours)
    else:
        for n in neighbours:
            print(f"  {n['score']:.4f}  {n['token']}")
    return 0


def sampling_from_args(args):
    from ..config import Sampling  # no torch import: bad settings fail fast

    return Sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)


def cmd_generate(args) -> int:
    sampling = sampling_from_args(args)  # bad settings fail before torch and the model load
    from ..generation import empty_answer_note, generate
    from ..infer import load_run

    run = load_run(args.run, device=args.device)
    result = generate(
        run, args.prompt, sampling.max_new_tokens, sampling.temperature, sampling.top_k, sampling.top_p, sampling.seed,
        raw=args.raw,
    )
    if args.json:
        print_json(result)
    else:
        print(result["text"])
        log.info("(%d tokens, stopped: %s, seed %d)", len(result["token_ids"]), result["stop_reason"], result["seed"])
        if note := empty_answer_note(result):
            log.warning("%s", note)
    return 0


def cmd_chat(args) -> int:
    sampling = sampling_from_args(args)
    from ..chat import run_chat
    from ..generation import check_causal
    from ..infer import load_run

    run = load_run(args.run, device=args.device)
    check_causal(run)
    run_chat(run, sampling, name=Path(args.run).name, raw=args.raw)
    return 0


def add_commands(sub, parser_class) -> None:
    add_interop(sub)
    add_evaluate(sub)
    add_fill_mask(sub)
    add_generation(sub)
    add_embeddings(sub)


def add_interop(sub) -> None:
    p = sub.add_parser(
        "export", help="write a Hugging Face model folder (config.json, model.safetensors, tokenizer)",
        epilog="example:\n  bertforge export run --out hf-model\n"
        "  python -c \"from transformers import pipeline; print(pipeline('fill-mask', model='hf-model')('A <mask>.'))\"",
    )
    p.add_argument("run", help="run folder (its latest checkpoint) or a fine-tuned folder from `bertforge finetune`")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--arch", choices=("bert", "roberta", "roberta-prelayernorm", "electra"),
                   help="default: electra (ElectraForPreTraining) for an ELECTRA run, roberta-prelayernorm for a "
                   "pre-LN model (model.norm=pre), else roberta for byte-level BPE, bert for WordPiece")
    add_common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import", help="turn a Hugging Face BERT/RoBERTa/RoBERTa-PreLayerNorm MLM folder into a bertforge run",
        epilog="example:\n  bertforge import ./roberta-base --out base-run\n"
        "  bertforge pretrain --init-from base-run --corpus my-domain.txt --out adapted --max-steps 2000",
    )
    p.add_argument("hf_dir", help="folder with config.json, model.safetensors and tokenizer files")
    p.add_argument("--out", required=True, help="run folder to write")
    add_common(p)
    p.set_defaults(func=cmd_import)


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="validation loss, perplexity and masked accuracy of a run",
        epilog="example:\n  bertforge evaluate run --corpus heldout.txt --json",
    )
    p.add_argument("run")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data", help="shard folder (its validation split)")
    where.add_argument("--corpus", action="append", help="text files to evaluate on")
    p.add_argument("--batch-size", type=at_least(1), default=32)
    p.add_argument("--batches", type=at_least(0), default=0, help="at most this many batches (0 = all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_evaluate)


def add_fill_mask(sub) -> None:
    p = sub.add_parser(
        "fill-mask", help="most likely tokens for each [MASK] / <mask>",
        epilog='example:\n  bertforge fill-mask run "Human thinking involves human <mask>." --top-k 5',
    )
    p.add_argument("run")
    p.add_argument("text")
    p.add_argument("--top-k", type=at_least(1), default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_fill_mask)


def add_sampling_args(p) -> None:
    p.add_argument("--max-new-tokens", type=int, default=64, help="at most this many new tokens (default 64)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more varied (default 0.8)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all, default)")
    p.add_argument("--top-p", type=float, default=0.95,
                   help="sample among the most likely tokens that together hold this probability (default 0.95)")
    p.add_argument("--seed", type=int, help="the same seed gives the same text")
    p.add_argument("--raw", action="store_true", help="send the prompt as it is, without the run's template")
    p.add_argument("--device", default="auto")


def add_generation(sub) -> None:
    p = sub.add_parser(
        "generate", help="write text with a causal-LM run (--objective clm)",
        epilog='examples:\n  bertforge generate run "Give three tips for staying healthy." --temperature 0\n'
        '  bertforge generate run "Once upon a time" --max-new-tokens 50 --temperature 0.8 --top-p 0.9 --seed 1 --json',
    )
    p.add_argument("run", help="run folder of a causal LM")
    p.add_argument("prompt")
    add_sampling_args(p)
    p.add_argument("--json", action="store_true", help="text, token ids, stop reason and seed as JSON")
    add_common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "chat", help="talk to a causal-LM run in the terminal (/reset, /quit)",
        epilog="example:\n  bertforge chat run --temperature 0.7 --max-new-tokens 80",
    )
    p.add_argument("run", help="run folder of a causal LM")
    add_sampling_args(p)
    add_common(p)
    p.set_defaults(func=cmd_chat)


def add_embeddings(sub) -> None:
    p = sub.add_parser(
        "embed", help="sentence embeddings of each line of a file, as a .npy array",
        epilog="example:\n  bertforge embed run --input sentences.txt --pooling mean --out emb.npy",
    )
    p.add_argument("model", help="run folder")
    p.add_argument("--input", required=True, help="text file, one sentence per line")
    p.add_argument("--out", required=True, help=".npy file to write (lines x hidden_size)")
    p.add_argument("--pooling", choices=("mean", "cls"), default="mean")
    p.add_argument("--batch-size", type=at_least(1), default=32)
    p.add_argument("--device", default="auto")
    add_common(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "similar", help="nearest tokens to a word by cosine similarity of the input embeddings",
        epilog='example:\n  bertforge similar run "reason" --top-k 10',
    )
    p.add_argument("model", help="run folder")
    p.add_argument("word")
    p.add_argument("--top-k", type=at_least(1), default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_similar)
