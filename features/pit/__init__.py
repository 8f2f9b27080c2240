"""features.pit."""
