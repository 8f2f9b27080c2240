"""features.synthetic."""
