"""`bertforge chat RUN`: talk to a causal-LM run in the terminal.

The conversation is what the model reads: `<s>`, the past turns (each prompt in the run's
template with the model's reply, closed by `</s>` as documents are in training), then the new
prompt. When it would not leave room for `max_new_tokens` in the context window, the oldest
turns are dropped first. `/reset` forgets the history, `/quit` (or Ctrl-D) leaves.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from .errors import DataError
from .generation import Sampling, check_causal, encode_prompt, generate_ids
from .infer import LoadedRun

HELP = "/reset clears the history, /quit leaves"


class Chat:
    """A conversation with a run: its history as token ids, one list per past turn."""

    def __init__(self, run: LoadedRun, sampling: Sampling, raw: bool = False):
        check_causal(run)
        self.run, self.sampling, self.raw = run, sampling, raw
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(63)
        self.generator = torch.Generator().manual_seed(seed)  # one stream for the session: reproducible with --seed
        self.turns: list[list[int]] = []

    def reset(self) -> None:
        self.turns = []

    def context(self, prompt_ids: list[int]) -> list[int]:
        """`<s>`, the most recent turns that fit with the prompt and the reply's room, the prompt."""
        limit = self.run.config.model.max_seq_len
        room = min(self.sampling.max_new_tokens, limit - len(prompt_ids))
        while self.turns and 1 + sum(map(len, self.turns)) + len(prompt_ids) + room > limit:
            self.turns.pop(0)  # the oldest turn goes first
        return [self.run.tokenizer.bos_id, *(i for turn in self.turns for i in turn), *prompt_ids]

    def reply(self, text: str) -> dict:
        """The model's answer to `text`, remembered for the next turns."""
        prompt_ids = encode_prompt(self.run, text, self.raw)[1:]  # without <s>: the context starts with it
        new, reason = generate_ids(self.run, self.context(prompt_ids), self.sampling, self.generator)
        eos = self.run.tokenizer.eos_id
        self.turns.append([*prompt_ids, *new, *([] if new[-1] == eos else [eos])])
        return {"text": self.run.tokenizer.decode(new).strip(), "token_ids": new, "stop_reason": reason}


def run_chat(
    run: LoadedRun,
    sampling: Sampling,
    name: str = "the model",
    raw: bool = False,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
) -> None:
    """The terminal loop: read a line, answer it, until /quit or end of input."""
    chat = Chat(run, sampling, raw)
    write(f"chatting with {name} ({run.config.model.max_seq_len}-token context); {HELP}")
    while True:
        try:
            line = read("you> ")
        except EOFError:
            write("")
            return
        command = line.strip()
        if not command:
            continue
        if command == "/quit":
            return
        if command == "/reset":
            chat.reset()
            write("(history cleared)")
            continue
        if command.startswith("/"):
            write(f"unknown command {command}; {HELP}")
            continue
        try:
            answer = chat.reply(line)
        except DataError as e:  # a prompt too long for the context: say so and go on
            write(f"error: {e}")
            continue
        write(f"bot> {answer['text']}")
