"""Data in: the competition layout, targets and the reveal rule, the synthetic market zoo, ingest."""
