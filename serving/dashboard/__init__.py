"""serving.dashboard."""
