"""The framework's floor: a BentoML endpoint that returns a constant, served like Patron, for `patron bench serve`."""

from __future__ import annotations

import bentoml

from patron.config import load_settings

SETTINGS = load_settings()


@bentoml.service(name="floor", workers=SETTINGS.serving.workers)
class Floor:
    """One endpoint, no work: what BentoML costs on this machine."""

    @bentoml.api(route="/ping")
    def ping(self) -> dict:
        """A constant."""
        return {"ok": True}
