"""training.recommend."""
