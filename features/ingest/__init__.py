"""features.ingest."""
