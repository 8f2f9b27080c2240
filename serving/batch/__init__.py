"""serving.batch."""
