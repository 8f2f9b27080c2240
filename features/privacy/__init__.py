"""features.privacy."""
