"""bertforge: pretrain a BERT/RoBERTa-style encoder from scratch on your own text."""

__version__ = "0.1.0"
