"""patron.cli."""
