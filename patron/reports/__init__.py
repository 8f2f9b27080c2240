"""patron.reports."""
