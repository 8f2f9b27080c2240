"""What every configuration section shares: unknown keys are errors, and the one seed model fits carry."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SEED = 42  # the default of Settings.seed, the one seed every random draw in Patron starts from


class Section(BaseModel):
    """A configuration section: a key it does not declare stops the command with the key's name."""

    model_config = ConfigDict(extra="forbid")


class SeededSection(Section):
    """A section handed whole to the code that fits a model, so it carries the fit's seed.

    Settings sets it from its own `seed` (a file cannot set it per section); code that needs another random stream
    copies the section with a seed derived from it (e.g. the ranker seeds seed + 1, ...)."""

    seed: int = SEED
