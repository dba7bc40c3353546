"""Evaluation: the competition metric, baselines (ridge, constant rank) and the holdout report."""
