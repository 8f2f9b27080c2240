"""Progress bars of long commands: tqdm on stderr, shown on a terminal only, and never after `--no-progress`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

ENV = "PATRON_PROGRESS"  # "0" turns every bar off; `patron --no-progress` sets it


def enabled() -> bool:
    """Whether bars are shown: stderr is a terminal and $PATRON_PROGRESS is not "0"."""
    return os.environ.get(ENV, "1") != "0" and sys.stderr.isatty()


def bar(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled unless `enabled()`; the keywords go to tqdm (desc, total, unit...)."""
    return tqdm(iterable, file=sys.stderr, disable=not enabled(), **kwargs)
