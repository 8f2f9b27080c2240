"""training.tune."""
