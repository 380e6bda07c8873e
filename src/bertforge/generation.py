"""Text generation with a causal-LM run (`train.objective=clm`): greedy or sampled, token by token.

The prompt runs through the model once, filling a key/value cache; after that each new token
runs one position through each layer (`MaskedLM.next_token_logits`). Generation stops at the
end-of-sequence token, after `max_new_tokens`, or when the context (model.max_seq_len) is full.
A run trained on templated records (data.template, e.g. alpaca) gets its prompt wrapped in the
same template, so the model sees what it was trained on; `raw=True` sends the text as it is.

`generate(run, prompt, ...)` is a pure function of a loaded run and plain values: it checks its
arguments and raises DataError / ConfigError (one-line messages) for bad ones, so a CLI, a chat
loop or a web handler can call it directly.
"""

from __future__ import annotations

import random

import torch

from .config import Sampling
from .errors import DataError
from .infer import LoadedRun
from .templates import load_template


def check_causal(run: LoadedRun) -> None:
    if not run.config.model.causal:
        raise DataError(
            "this run is a masked LM (train.objective mlm): it fills in words but cannot write text; "
            "pretrain one with --objective clm to generate"
        )


def prompt_text(run: LoadedRun, prompt: str, raw: bool = False) -> str:
    """The text the model reads: the prompt in the run's template, or as it is."""
    if not prompt.strip():
        raise DataError("empty prompt: give some text for the model to continue or answer")
    template = run.config.data.template
    return prompt if raw or not template else load_template(template).prompt(prompt.strip())


def encode_prompt(run: LoadedRun, prompt: str, raw: bool = False) -> list[int]:
    """`<s>` + the prompt's tokens (no end token: the model goes on from there)."""
    ids = [run.tokenizer.bos_id, *run.tokenizer.encode(prompt_text(run, prompt, raw), add_special_tokens=False)]
    limit = run.config.model.max_seq_len
    if len(ids) >= limit:
        raise DataError(
            f"the prompt is {len(ids)} tokens (with <s>{' and the template' if run.config.data.template and not raw else ''}); "
            f"this model's context is {limit} tokens, so give at most {limit - 1} to leave room for an answer"
        )
    return ids


def pick(logits: torch.Tensor, s: Sampling, generator: torch.Generator) -> int:
    """The next token from (V,) logits: argmax when greedy, else a draw after temperature, top-k, top-p."""
    if s.temperature == 0:
        return int(logits.argmax())
    logits = logits.float().cpu() / s.temperature
    if s.top_k and s.top_k < logits.numel():
        logits[logits < logits.topk(s.top_k).values[-1]] = float("-inf")
    if s.top_p < 1:
        probs, order = logits.softmax(dim=-1).sort(descending=True)
        outside = probs.cumsum(dim=-1) - probs >= s.top_p  # the tokens after the set reached top_p
        logits[order[outside]] = float("-inf")
    return int(torch.multinomial(logits.softmax(dim=-1), 1, generator=generator))


@torch.no_grad()
def generate_ids(
    run: LoadedRun, ids: list[int], s: Sampling, generator: torch.Generator | None = None, use_cache: bool = True
) -> tuple[list[int], str]:
    """New token ids after `ids` and why it stopped: "eos", "max_new_tokens" or "context".

    `use_cache=False` runs the whole sequence again for every token (for tests: same output)."""
    check_causal(run)
    generator = generator or torch.Generator().manual_seed(s.seed if s.seed is not None else random.getrandbits(63))
    model, limit, eos = run.model, run.config.model.max_seq_len, run.tokenizer.eos_id
    cache = model.new_cache() if use_cache else None
    new: list[int] = []
    step_input = torch.tensor([ids], device=run.device)
    while True:
        if cache is not None:
            logits = model.next_token_logits(step_input, cache)[0]
        else:
            logits = model(torch.tensor([ids + new], device=run.device)).logits[0, -1]
        token = pick(logits, s, generator)
        new.append(token)
        if token == eos:
            return new, "eos"
        if len(new) >= s.max_new_tokens:
            return new, "max_new_tokens"
        if len(ids) + len(new) >= limit:
            return new, "context"
        step_input = torch.tensor([[token]], device=run.device)


def generate(
    run: LoadedRun,
    prompt: str,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 0.95,
    seed: int | None = None,
    raw: bool = False,
) -> dict:
    """Continue (or, for a templated run, answer) `prompt`.

    Returns {"prompt", "text" (the new text, special tokens left out), "token_ids" (new ids, the
    end token included when it stopped there), "prompt_token_ids", "stopped_at_eos", "stop_reason", "seed"}.
    """
    check_causal(run)
    seed = seed if seed is not None else random.getrandbits(31)
    s = Sampling(max_new_tokens, temperature, top_k, top_p, seed)
    ids = encode_prompt(run, prompt, raw)
    new, reason = generate_ids(run, ids, s)
    return {
        "prompt": prompt,
        "text": run.tokenizer.decode(new).strip(),
        "token_ids": new,
        "prompt_token_ids": ids,
        "stopped_at_eos": reason == "eos",
        "stop_reason": reason,
        "seed": seed,
    }


def empty_answer_note(result: dict) -> str | None:
    """Why nothing was printed, when the answer is empty: a blank line alone explains nothing."""
    if result["text"]:
        return None
    if result["stop_reason"] == "eos":
        what = "the model ended the text at once (it predicted the end token first)"
    else:
        what = f"the model produced only special tokens or whitespace ({len(result['token_ids'])} tokens)"
    return (
        f"note: empty answer: {what}. An under-trained causal LM often does this: train longer, check that "
        "its prompt follows the run's template, or sample with --temperature 0.8"
    )
