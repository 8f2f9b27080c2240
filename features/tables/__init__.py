"""features.tables."""
