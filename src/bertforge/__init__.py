"""bertforge: pretrain a BERT/RoBERTa-style encoder from scratch on your own text.

The public Python API is the set of functions the CLI calls, one per pipeline stage:

    corpus -> tokenizer -> shards -> masking -> model -> train -> evaluate / infer / generate / export / finetune

They are imported lazily (PEP 562), so `import bertforge` and `bertforge --help` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "build_config": "config",
    "load_config": "config",
    "iter_documents": "corpus",
    "train_tokenizer": "tokenizer",
    "load_tokenizer": "tokenizer",
    "prepare": "shards",
    "PackedShards": "shards",
    "mask_tokens": "masking",
    "MaskedLM": "model",
    "pretrain": "train.loop",
    "evaluate_split": "evaluate",
    "load_run": "infer",
    "fill_mask": "infer",
    "generate": "generation",
    "export_run": "export",
    "import_hf": "export",
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
