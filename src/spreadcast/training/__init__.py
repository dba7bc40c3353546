"""Training: the loop, device placement, data parallelism, pruning, fine-tuning and refit."""
