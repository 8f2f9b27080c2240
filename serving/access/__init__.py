"""serving.access."""
