"""Patron: retail retention ML service (shared configuration and command-line tool)."""

__version__ = "0.1.0"
