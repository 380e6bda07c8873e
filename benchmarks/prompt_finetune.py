"""Prompt-based fine-tuning (PET / LM-BFF: Schick & Schütze 2021, Gao et al. 2021), measured against
bertforge's usual classifier head in README "How good a model will I get?".

Each text becomes a cloze, e.g. "{text} it was <mask> .", and a class is scored by the masked LM's
own logit for its label word at the mask ("great" / "terrible"): no new weights, and the fine-tuning
objective is the pretraining one. It is the usual lever for small labelled sets; here it lost to a
mean-pooled classifier, so it stays a benchmark rather than a `finetune` option.

    python benchmarks/prompt_finetune.py --model RUN --train sst2-train-1000.tsv --validation sst2/dev.tsv \
        --text-column sentence --label-column label --template "{text} it was <mask> ." \
        --words "0= terrible,1= great" --lr 2e-4 --epochs 10 [--init random]

Prints the validation accuracy after each epoch and the best (picked on that split, as
`bertforge finetune` picks its best epoch).
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from bertforge.finetune.config import FinetuneConfig
from bertforge.finetune.data import label_ids, label_list, read_classification
from bertforge.finetune.model import load_source
from bertforge.model import MaskedLM
from bertforge.runtime import autocast


def cloze_ids(tokenizer, texts: list[str], template: str, max_len: int = 128) -> list[list[int]]:
    """Token ids of each text in the template; a text too long loses its end, never the mask."""
    out = []
    for text in texts:
        ids = tokenizer.tokenizer.encode(template.replace("{text}", text).replace("<mask>", tokenizer.mask_token)).ids
        if len(ids) > max_len:
            after = template.split("{text}")[1].replace("<mask>", tokenizer.mask_token)
            tail = tokenizer.tokenizer.encode(after).ids[1:]
            ids = ids[: max_len - len(tail)] + tail  # tail: the template after the text, with </s>
        out.append(ids)
    return out


def word_ids(tokenizer, words: dict[str, str], labels: list) -> list[int]:
    """The one token of each class's label word, in label-id order."""
    ids = []
    for label in labels:
        pieces = tokenizer.tokenizer.encode(words[str(label)], add_special_tokens=False).ids
        if len(pieces) != 1:
            raise SystemExit(f"label word {words[str(label)]!r} is {len(pieces)} tokens; pick a one-token word")
        ids.append(pieces[0])
    return ids


def class_logits(model: MaskedLM, input_ids, attention_mask, mask_id: int, label_words: list[int]) -> torch.Tensor:
    """(B, classes): the masked LM's logits of the label words at each row's mask."""
    h = model.encoder(input_ids, attention_mask)
    at_mask = h[input_ids == mask_id]  # one mask per row
    head = model.head
    x = head.norm(head.act(head.dense(at_mask)))
    words = torch.tensor(label_words, device=input_ids.device)
    return F.linear(x, model.encoder.embeddings.tokens.weight[words], head.bias[words]).float()


def padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(map(len, rows))
    ids = torch.full((len(rows), longest), pad_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    return ids, mask


def accuracy(model, rows, gold, tokenizer, label_words, dtype, batch_size=64) -> float:
    model.eval()
    correct = 0
    with torch.no_grad(), autocast(torch.device("cpu"), dtype):
        for start in range(0, len(rows), batch_size):
            ids, mask = padded(rows[start : start + batch_size], tokenizer.pad_id)
            pred = class_logits(model, ids, mask, tokenizer.mask_id, label_words).argmax(-1)
            correct += int((pred == torch.tensor(gold[start : start + batch_size])).sum())
    return correct / len(rows)


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--validation", required=True)
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--template", default="{text} it was <mask> .")
    p.add_argument("--words", required=True, help='label=word pairs, e.g. "0= terrible,1= great" (mind the space)')
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--init", choices=("pretrained", "random"), default="pretrained")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="CPU autocast (bf16: AMX, AVX-512)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    source = load_source(args.model)
    tokenizer = source.tokenizer
    model = MaskedLM(source.model)  # a random init of the same shape; then the run's weights unless --init random
    if args.init == "pretrained":
        model.load_state_dict(source.state)
    cfg = FinetuneConfig(text_column=args.text_column, label_column=args.label_column)
    train, val = read_classification(args.train, cfg), read_classification(args.validation, cfg)
    labels = label_list(train.labels, args.train, "classify")
    train_gold, val_gold = label_ids(train.labels, labels, args.train), label_ids(val.labels, labels, args.validation)
    words = dict(pair.split("=", 1) for pair in args.words.split(","))
    label_words = word_ids(tokenizer, words, labels)
    train_rows = cloze_ids(tokenizer, train.texts, args.template, source.model.max_seq_len)
    val_rows = cloze_ids(tokenizer, val.texts, args.template, source.model.max_seq_len)
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": 0.01}, {"params": others, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    steps = args.epochs * math.ceil(len(train_rows) / args.batch_size)
    warmup = max(1, steps // 10)  # as `finetune`: 10% linear warmup, then linear decay to 0
    decay = max(1, steps - warmup)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(s / warmup, max(0.0, (steps - s) / decay)))
    order = torch.Generator().manual_seed(args.seed)
    best = 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in torch.randperm(len(train_rows), generator=order).split(args.batch_size):
            ids, mask = padded([train_rows[i] for i in batch], tokenizer.pad_id)
            with autocast(torch.device("cpu"), dtype):
                logits = class_logits(model, ids, mask, tokenizer.mask_id, label_words)
            loss = F.cross_entropy(logits, torch.tensor([train_gold[i] for i in batch]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        score = accuracy(model, val_rows, val_gold, tokenizer, label_words, dtype)
        best = max(best, score)
        print(f"epoch {epoch}: train loss {loss.item():.4f} | validation accuracy {score:.4f}", flush=True)
    print(f"best validation accuracy {best:.4f} ({args.init} init, lr {args.lr:g}, template {args.template!r})")
    return best


if __name__ == "__main__":
    main()
