"""Pretraining: the loop and what it needs (schedule, batches, checkpoints, metrics)."""
