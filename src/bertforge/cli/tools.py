"""Commands around a run: plot, viz, report, serve, bench, demo."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ..errors import ConfigError
from .common import add_common, print_json

log = logging.getLogger("bertforge")


def cmd_plot(args) -> int:
    from ..plots import plot_runs

    out = plot_runs(args.runs, args.out, args.x)
    log.info("wrote %s", out)
    return 0


def cmd_viz_embeddings(args) -> int:
    from ..api import load_model_folder
    from ..viz import viz_embeddings

    words = args.words.split(",") if args.words is not None else None
    run, _ = load_model_folder(args.model, device=args.device)
    paths = viz_embeddings(run, args.model, args.out, words, args.top)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_report(args) -> int:
    from ..report import write_report

    out = write_report(args.run, args.out, texts=args.text, top=args.top, device=args.device)
    log.info("wrote %s", out)
    return 0


def cmd_serve(args) -> int:
    from ..serve import serve

    return serve(args.model, host=args.host, port=args.port, device=args.device)


def cmd_bench(args) -> int:
    ref = not args.no_reference
    if args.kind == "downstream":
        return bench_downstream_command(args)
    if args.kind == "quality":
        return bench_quality_command(args, ref)
    from ..bench.speed import bench_fill_mask, bench_prepare, bench_train, format_table

    preset = args.preset or "small"
    if args.kind == "train":
        result = bench_train(
            preset=preset, steps=args.steps, warmup_steps=args.warmup_steps, batch_size=args.batch_size,
            seq_len=args.seq_len, precision=args.precision, corpus=args.corpus, device=args.device,
            compile=args.compile, reference=ref, data_dir=args.data_dir,
        )
    elif args.kind == "prepare":
        result = bench_prepare(
            corpus_mb=args.corpus_mb, processes=args.processes, seq_len=args.seq_len, reference=ref,
            work_dir=args.work_dir, preset=preset, data_dir=args.data_dir,
        )
    else:
        result = bench_fill_mask(
            preset=preset, sentences=args.sentences, top_k=args.top_k, reference=ref, device=args.device,
            batch_size=args.batch_size, corpus=args.corpus, data_dir=args.data_dir,
        )
    if args.json:
        print_json(result)
    else:
        print(format_table(result))
    return 0


def bench_quality_command(args, reference: bool) -> int:
    from ..bench.quality import bench_quality, format_quality, plot_quality

    variants = {}
    for spec in args.variant:
        name, _, sets = spec.partition(":")
        if not name or not sets:
            raise ConfigError(f"--variant {spec!r}: write NAME:KEY=VALUE[,KEY=VALUE...]")
        variants[name] = sets.split(",")
    result = bench_quality(
        minutes=args.minutes, corpus=args.corpus, work_dir=args.work_dir, evaluations=args.evaluations,
        device=args.device, reference=reference, variants=variants, data_dir=args.data_dir,
    )
    if args.plot:
        result["plot"] = str(plot_quality(result, args.plot))
    if args.json:
        print_json(result)
    else:
        print(format_quality(result))
    return 0


def bench_downstream_command(args) -> int:
    from ..bench.downstream import bench_downstream, default_paths, format_downstream

    labelled, corpus = default_paths()
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bertforge-downstream-"))
    result = bench_downstream(
        labelled=Path(args.labelled) if args.labelled else labelled, corpus=Path(args.corpus or corpus),
        work_dir=work_dir, minutes=args.minutes, text_column=args.text_column, label_column=args.label_column,
        train_examples=args.train_examples, eval_examples=args.eval_examples, seed=args.seed, preset=args.preset,
        pretrain_sets=args.set, finetune_sets=args.finetune_set, finetune_search=args.finetune_search,
    )
    if args.json:
        print_json(result)
    else:
        print(format_downstream(result))
    return 0


def cmd_demo(args) -> int:
    from ..demo import run_demo

    run_demo(Path(args.out), corpus=args.corpus, max_steps=args.max_steps, progress=not args.quiet)
    return 0


def add_commands(sub, parser_class) -> None:
    add_plot(sub)
    add_viz(sub, parser_class)
    add_report(sub)
    add_serve(sub)
    add_bench(sub)
    add_demo(sub)


def add_plot(sub) -> None:
    p = sub.add_parser(
        "plot", help="training and validation curves of one or more runs, as a PNG",
        epilog="example:\n  bertforge plot runs/kant runs/kant-post --out curves.png --x tokens",
    )
    p.add_argument("runs", nargs="+", help="run folders (their metrics.jsonl)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--x", choices=("step", "tokens"), default="step", help="horizontal axis")
    add_common(p)
    p.set_defaults(func=cmd_plot)


def add_viz(sub, parser_class) -> None:
    viz = sub.add_parser("viz", help="pictures of what a model learned")
    viz_sub = viz.add_subparsers(dest="viz_command", required=True, parser_class=parser_class)
    p = viz_sub.add_parser(
        "embeddings", help="PCA scatter (PNG), interactive 3D scatter (HTML) and similarity heat map (PNG) of words",
        epilog="examples:\n  bertforge viz embeddings runs/kant --words reason,understanding,sense,time,space --out viz\n"
        "  bertforge viz embeddings runs/kant --top 80 --out viz",
    )
    p.add_argument("model", help="run folder (or fine-tuned folder)")
    words = p.add_mutually_exclusive_group(required=True)
    words.add_argument("--words", help="comma-separated words to place")
    words.add_argument("--top", type=int, metavar="N", help="the N most frequent words of the training data")
    p.add_argument("--out", required=True, help="folder for pca.png, pca3d.html and similarity.png")
    p.add_argument("--device", default="auto")
    add_common(p)
    p.set_defaults(func=cmd_viz_embeddings)


def add_report(sub) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML page about a run: config, parameters, data, curves, metrics, samples",
        epilog='example:\n  bertforge report runs/kant --out kant-report.html --text "The <mask> of pure reason."',
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--text", action="append", help="a sentence with <mask> to fill in as well (repeatable)")
    p.add_argument("--top", type=int, default=40, metavar="N", help="words in the embedding plot (default: 40)")
    p.add_argument("--device", default="auto")
    add_common(p)
    p.set_defaults(func=cmd_report)


def add_serve(sub) -> None:
    p = sub.add_parser(
        "serve", help="a local web page and JSON API to try a model: fill-mask, similarity, neighbours, classify",
        epilog="examples:\n  bertforge serve runs/kant            # then open http://127.0.0.1:8000\n"
        "  bertforge serve sst2-ft --port 8080",
    )
    p.add_argument("model", help="run folder or fine-tuned folder; the only model the server reads")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")
    add_common(p)
    p.set_defaults(func=cmd_serve)


def add_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="bertforge next to Hugging Face: same data, shape and settings, one run",
        epilog="examples:\n  bertforge bench train --preset small\n  bertforge bench prepare --corpus-mb 40 --json\n"
        "  bertforge bench fill-mask --preset small\n  bertforge bench quality --minutes 10 --plot quality.png\n"
        "  bertforge bench downstream --minutes 10",
    )
    p.add_argument("kind", choices=("train", "prepare", "fill-mask", "quality", "downstream"))
    p.add_argument("--preset", help="model preset (default: small; downstream: the --budget recipe's)")
    p.add_argument("--steps", type=int, default=20, help="train: timed training steps")
    p.add_argument("--warmup-steps", type=int, default=3, help="train: untimed steps first")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32")
    p.add_argument("--compile", action="store_true", help="train: torch.compile both models")
    p.add_argument("--device", default="auto")
    p.add_argument("--corpus", help="train, fill-mask, quality: one text file instead of the data folder's text")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder of benchmark text (default: $BERTFORGE_DATA, else the repository's tests/data; "
                        "layouts in benchmarks/README.md)")
    p.add_argument("--minutes", type=float, default=10, help="quality: training minutes of each side")
    p.add_argument("--evaluations", type=int, default=10, help="quality: validation points along each side's clock")
    p.add_argument("--plot", metavar="PNG", help="quality: validation loss against minutes, both sides")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,...]",
                   help="quality: race another bertforge recipe too, e.g. mask30:masking.mask_prob=0.3")
    p.add_argument("--corpus-mb", type=float, default=40, help="prepare: corpus size, MB")
    p.add_argument("--processes", type=int, default=2, help="prepare: processes / tokenizer threads")
    p.add_argument("--work-dir", help="prepare, quality: keep the built data (and quality's runs) here")
    p.add_argument("--sentences", type=int, default=1000, help="fill-mask: sentences")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--no-reference", action="store_true", help="bertforge only (no transformers needed)")
    add_downstream_args(p)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    add_common(p)
    p.set_defaults(func=cmd_bench)


def add_downstream_args(p) -> None:
    p.add_argument("--labelled", metavar="FILE",
                   help="downstream: labelled TSV/CSV with a header (default: tests/data/reviews/train.tsv); "
                        "--corpus is the pretraining text (default: tests/data/kant/kant.txt)")
    p.add_argument("--text-column", default="sentence", help="downstream: text column of --labelled")
    p.add_argument("--label-column", default="label", help="downstream: label column of --labelled")
    p.add_argument("--train-examples", type=int, default=1000, help="downstream: fine-tuning examples")
    p.add_argument("--eval-examples", type=int, default=500, help="downstream: held-out examples scored")
    p.add_argument("--seed", type=int, default=0, help="downstream: seed of the train/eval split and fine-tuning")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="downstream: pretraining setting")
    p.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                   help="downstream: fine-tuning setting for both models, e.g. finetune.lr=1e-3")
    p.add_argument("--finetune-search", action="append", default=[], metavar="KEY=V1,V2",
                   help="downstream: fine-tuning values each model tries (e.g. lr=2e-4,1e-3); each keeps its best")


def add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="a small end-to-end pretraining on text that ships with Python",
        epilog="example:\n  bertforge demo --out demo-run",
    )
    p.add_argument("--out", default="demo-run")
    p.add_argument("--corpus", help="use this text instead of Python's documentation")
    p.add_argument("--max-steps", type=int, default=2000)
    add_common(p)
    p.set_defaults(func=cmd_demo)
