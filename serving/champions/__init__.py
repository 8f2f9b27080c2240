"""serving.champions."""
