"""serving.online."""
