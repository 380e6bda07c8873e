"""`bertforge bench`: figures side by side with the Hugging Face reference, measured in one run.

  speed.py       train / prepare / fill-mask speed (tokens/s, MB/s, sentences/s, memory, MFU)
  quality.py     validation loss at equal minutes: budget recipes vs the Hugging Face path
  downstream.py  what N minutes of pretraining buy on a labelled task, next to random init and TF-IDF

Benchmarks use the stages' public API (`bertforge.api`, `bertforge.train`'s step API); their
text comes from `--data-dir` / $BERTFORGE_DATA, else the repository's tests/data.
"""

from .speed import LABELS, bench_fill_mask, bench_prepare, bench_text, bench_train, format_table

__all__ = ["LABELS", "bench_fill_mask", "bench_prepare", "bench_text", "bench_train", "format_table"]
