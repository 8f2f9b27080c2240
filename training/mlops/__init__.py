"""training.mlops."""
