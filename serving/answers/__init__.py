"""serving.answers."""
