"""Self-contained HTML reports: figures inlined as base64 PNG, tables, no external URL; written and logged to MLflow."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from features.tables.store import atomic_write_bytes
from patron.config import Settings

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2.2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .55rem}
th{background:#f2f2f2}td{text-align:right}td:first-child{text-align:left}
figure{display:inline-block;margin:.5rem 1rem .5rem 0}figcaption{font-size:.85rem;color:#555;max-width:520px}
.meta{color:#555;font-size:.9rem}
"""


@dataclass
class HtmlReport:
    """An HTML document built section by section; every figure carries a stable id and an alt text."""

    title: str
    meta: dict[str, str] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)
    figure_ids: list[str] = field(default_factory=list)

    def heading(self, text: str, anchor: str | None = None) -> None:
        """A section heading (`anchor` becomes its id)."""
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h2{ident}>{html.escape(text)}</h2>")

    def paragraph(self, text: str) -> None:
        """A paragraph of plain text."""
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def figure(self, fig: Figure, ident: str, alt: str, caption: str | None = None) -> None:
        """A matplotlib figure inlined as a base64 PNG (`ident` is the img id; `alt` its alternative text)."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        data = base64.b64encode(buffer.getvalue()).decode()
        self.figure_ids.append(ident)
        self.parts.append(
            f'<figure><img id="{html.escape(ident)}" alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{data}"/>'
            f"<figcaption>{html.escape(caption or alt)}</figcaption></figure>"
        )

    def table(self, frame: pd.DataFrame, ident: str, floatfmt: str = "{:.4f}") -> None:
        """A table (index dropped; floats formatted with `floatfmt`)."""
        self.parts.append(
            frame.to_html(index=False, table_id=ident, border=0, na_rep="-", float_format=floatfmt.format, escape=True)
        )

    def html(self) -> str:
        """The whole document."""
        meta = " · ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in self.meta.items())
        return (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
            f'<p class="meta">{meta}</p>' + "\n".join(self.parts) + "</body></html>"
        )


def save_report(settings: Settings, report: HtmlReport, name: str, run_id: str | None, out: Path | None = None) -> Path:
    """Write the report (default WORKSPACE/reports/<name>.html) and log it to the MLflow run as reports/<file>."""
    from training.mlops import tracking

    report.meta.setdefault("generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    path = Path(out) if out else settings.reports_dir / f"{name}.html"
    atomic_write_bytes(path, report.html().encode())
    if run_id is not None:
        tracking.configure(settings).log_artifact(run_id, str(path), "reports")
    return path
