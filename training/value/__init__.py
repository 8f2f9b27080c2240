"""training.value."""
