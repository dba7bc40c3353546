"""The model: gated transformer with a linear path, its losses, and safe checkpoints."""
