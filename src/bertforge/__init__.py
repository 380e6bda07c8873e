"""bertforge: pretrain a BERT/RoBERTa-style encoder from scratch on your own text.

The public Python API: one function per command, with the CLI's power (bertforge/api.py),

    bertforge.pretrain(corpus="kant.txt", out="run", budget="10m")
    bertforge.evaluate("run", corpus="heldout.txt")
    bertforge.export("run", "hf-model")

and the stage-level functions underneath, for finer control:

    corpus -> tokenizer -> shards -> masking -> model -> train -> evaluate / infer / generate / export / finetune

They are imported lazily (PEP 562), so `import bertforge` and `bertforge --help` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    # one function per command (api.py)
    "pretrain": "api",
    "prepare": "api",
    "build_tokenizer": "api",
    "evaluate": "api",
    "export": "api",
    "import_hf": "api",
    "finetune": "api",
    "run_config": "api",
    "load_model_folder": "api",
    # stage-level
    "build_config": "config",
    "load_config": "config",
    "iter_documents": "corpus",
    "train_tokenizer": "tokenizer",
    "load_tokenizer": "tokenizer",
    "PackedShards": "shards",
    "mask_tokens": "masking",
    "MaskedLM": "model",
    "evaluate_split": "evaluate",
    "load_run": "infer",
    "fill_mask": "infer",
    "embed": "infer",
    "generate": "generation",
    "export_run": "hf.exporter",
    "load_finetuned": "finetune",
    "predict": "finetune",
}

__all__ = ["__version__", *_API]


def __dir__() -> list[str]:
    """`dir(bertforge)` lists the public API, though its names load lazily."""
    return sorted(__all__)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'bertforge' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
