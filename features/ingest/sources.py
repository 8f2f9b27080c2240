"""Source readers: turn a retailer export or a public dataset into contract-shaped tables (values not yet validated)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from features.ingest.bounded_read import (
    EncodingError,
    SourceError,
    read_delimited,
    read_parquet_bounded,
    split_oversized,
)
from features.ingest.mapping import load_mapped
from features.ingest.raw_tables import AUTO, UNIX, Loaded, parse_timestamps
from features.tables.contract import TABLES
from patron.config import InputLimitsConfig, Settings

SOURCES = ("synthetic", "cdnow", "ml100k", "online-retail", "csv")

CDNOW_ITEM = "cdnow"  # the CDNOW log has no products: every purchase points at this one placeholder item
ML_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
RETAIL_COLUMNS = {  # Online Retail (I and II) header names -> our names
    "Invoice": "invoice",
    "InvoiceNo": "invoice",
    "StockCode": "stock_code",
    "Description": "description",
    "Quantity": "quantity",
    "InvoiceDate": "ts",
    "Price": "price",
    "UnitPrice": "price",
    "Customer ID": "customer_id",
    "CustomerID": "customer_id",
    "Country": "country",
}


def _read_text_table(path: Path, sep: str, names: list[str], limits: InputLimitsConfig) -> pd.DataFrame:
    """A headerless (or one-header-line) delimited file as strings; a first line that is not numeric is a header."""
    df = read_delimited(path, limits, sep=sep, header=None)
    if df.shape[1] != len(names):
        raise SourceError(f"{path}: expected {len(names)} columns ({', '.join(names)}), found {df.shape[1]}")
    df.columns = names
    if len(df) and not str(df.iloc[0, 0]).strip().isdigit():
        df = df.iloc[1:]
    return df.reset_index(drop=True)


def _customers_from_events(events: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """One customer per id seen in the events, signed up at their first event."""
    ts = parse_timestamps(events["ts"], fmt)
    first = ts.groupby(events["customer_id"]).min()
    return pd.DataFrame({"customer_id": first.index.astype(str), "signup_date": first.to_numpy()})


def _find(path: Path, names: tuple[str, ...]) -> Path:
    """`path` itself when it is a file, else the first of `names` inside it."""
    if path.is_file():
        return path
    for name in names:
        if (path / name).is_file():
            return path / name
    raise SourceError(f"{path}: none of {', '.join(names)} found (run `patron data get` or pass --path)")


def load_synthetic(path: Path, limits: InputLimitsConfig = InputLimitsConfig()) -> Loaded:
    """The Parquet tables written by `patron data synth`."""
    tables = {
        name: read_parquet_bounded(path / f"{name}.parquet", limits)
        for name in TABLES
        if (path / f"{name}.parquet").exists()
    }
    if "events" not in tables:
        raise SourceError(f"{path}: no events.parquet (run `patron data synth` first)")
    return Loaded(tables, origin=str(path))


def load_cdnow(path: Path, limits: InputLimitsConfig = InputLimitsConfig()) -> Loaded:
    """CDNOW master log: one purchase event per line (customer, YYYYMMDD, CDs, dollars)."""
    file = _find(path, ("CDNOW_master.txt",))
    raw = _read_text_table(file, r"\s+", ["customer_id", "date", "cds", "value"], limits)
    cds, value = pd.to_numeric(raw["cds"], errors="coerce"), pd.to_numeric(raw["value"], errors="coerce")
    per_cd = value / cds
    # Keep the raw text where the price cannot be computed so that validation names it.
    unit_price = per_cd.astype(object).where(per_cd.notna() & (cds > 0), raw["value"])
    events = pd.DataFrame(
        {
            # Line numbers, not content: the file holds byte-identical duplicate lines that are distinct purchases.
            "event_id": "cdnow-" + pd.Series(range(1, len(raw) + 1)).astype(str),
            "customer_id": raw["customer_id"],
            "item_id": CDNOW_ITEM,
            "ts": raw["date"],
            "type": "purchase",
            "quantity": raw["cds"],
            "unit_price": unit_price,
            "channel": "online",
            "order_id": None,
        }
    )
    products = pd.DataFrame(
        {
            "item_id": [CDNOW_ITEM],
            "name": ["CDNOW purchase (the log has no product detail)"],
            "category": ["music"],
            "in_stock": [True],
        }
    )
    fmt = "%Y%m%d"
    return Loaded(
        {"customers": _customers_from_events(events, fmt), "products": products, "events": events},
        {"events": {"ts": fmt}},
        origin=str(file),
    )


def _ml_products(folder: Path) -> tuple[pd.DataFrame | None, str]:
    """MovieLens titles and genres (u.item or RecBole's .item) as products, when the file is there."""
    if (folder / "u.item").is_file():
        raw = pd.read_csv(folder / "u.item", sep="|", header=None, dtype=str, encoding="latin-1")
        flags = raw.iloc[:, 5 : 5 + len(ML_GENRES)].astype(int).to_numpy().argmax(axis=1)
        return pd.DataFrame(
            {
                "item_id": raw[0],
                "name": raw[1],
                "category": [ML_GENRES[i] for i in flags],
                "in_stock": True,
                "launched_at": raw[2],
            }
        ), "%d-%b-%Y"
    items = sorted(folder.glob("*.item"))
    if items:
        raw = pd.read_csv(items[0], sep="\t", dtype=str)
        raw.columns = [c.split(":")[0] for c in raw.columns]
        return pd.DataFrame(
            {
                "item_id": raw["item_id"],
                "name": raw["movie_title"],
                "category": raw["class"].fillna("unknown").str.split().str[0],
                "in_stock": True,
                # RecBole writes unknown years as text ("unkonwn", "V"): those have no launch date.
                "launched_at": (raw["release_year"].str.strip() + "-01-01").where(
                    raw["release_year"].str.fullmatch(r"\s*\d{4}\s*"), None
                ),
            }
        ), AUTO
    return None, AUTO


def load_ml100k(path: Path, limits: InputLimitsConfig = InputLimitsConfig()) -> Loaded:
    """MovieLens-100K ratings (u.data or RecBole .inter) as purchase events, titles as products when present."""
    file = path if path.is_file() else None
    if file is None:
        inters = sorted(path.glob("*.inter"))
        file = _find(path, ("u.data",)) if (path / "u.data").is_file() or not inters else inters[0]
    raw = _read_text_table(file, "\t", ["user", "item", "rating", "timestamp"], limits)
    rating = pd.to_numeric(raw["rating"], errors="coerce")
    interaction = rating >= 1
    events = pd.DataFrame(
        {
            "event_id": "ml100k-" + raw["user"] + "-" + raw["item"] + "-" + raw["timestamp"],
            "customer_id": raw["user"],
            "item_id": raw["item"],
            "ts": raw["timestamp"],
            "type": "purchase",
            "quantity": 1,
            "unit_price": None,
            "channel": "online",
            "order_id": None,
        }
    )
    rejected = (
        events[~interaction]
        .astype(object)
        .assign(
            reason=[f"rating: not an interaction (ratings >= 1 are), got {r!r}" for r in raw["rating"][~interaction]]
        )
    )
    events = events[interaction].reset_index(drop=True)
    tables = {"customers": _customers_from_events(events, UNIX), "events": events}
    formats = {"events": {"ts": UNIX}}
    products, launched_fmt = _ml_products(file.parent)
    if products is not None:
        tables["products"] = products
        formats["products"] = {"launched_at": launched_fmt}
    return Loaded(tables, formats, {"events": rejected} if len(rejected) else {}, origin=str(file))


def _read_retail(path: Path, limits: InputLimitsConfig) -> pd.DataFrame:
    """Online Retail rows as strings from CSV, or from every sheet of an .xlsx when openpyxl is installed."""
    if path.suffix.lower() in (".xlsx", ".xls"):
        if importlib.util.find_spec("openpyxl") is None:
            raise SourceError(
                f"{path}: reading Excel needs openpyxl (pip install openpyxl); or export the sheets to CSV"
            )
        if path.stat().st_size > limits.max_file_bytes:
            raise SourceError(f"{path}: more than {limits.max_file_bytes} bytes; raise input_limits.max_file_bytes")
        sheets = pd.read_excel(path, sheet_name=None, dtype=str)
        return pd.concat(sheets.values(), ignore_index=True)
    try:
        return read_delimited(path, limits, encoding="utf-8", keep_default_na=True, na_values=None)
    except EncodingError:
        return read_delimited(path, limits, encoding="latin-1", keep_default_na=True, na_values=None)


def load_online_retail(path: Path, limits: InputLimitsConfig = InputLimitsConfig()) -> Loaded:
    """UCI Online Retail (II): invoice lines as purchases, "C" invoices as returns; products and customers beside."""
    raw = _read_retail(path, limits).rename(columns=RETAIL_COLUMNS)
    missing = sorted(set(RETAIL_COLUMNS.values()) - set(raw.columns))
    if missing:
        raise SourceError(f"{path}: Online Retail columns missing: {', '.join(missing)}")
    raw = raw.apply(lambda s: s.str.strip())
    invoice = raw["invoice"].fillna("")
    is_return = invoice.str.upper().str.startswith("C")
    qty = pd.to_numeric(raw["quantity"], errors="coerce")
    customer = raw["customer_id"].str.replace(r"\.0+$", "", regex=True)  # Excel exports ids as floats
    events = pd.DataFrame(
        {
            "event_id": invoice + "-" + (raw.groupby(invoice).cumcount() + 1).astype(str),
            "customer_id": customer,
            "item_id": raw["stock_code"],
            "ts": raw["ts"],
            "type": is_return.map({True: "return", False: "purchase"}),
            "quantity": qty.abs().astype(object).where(is_return & qty.notna(), raw["quantity"]),
            "unit_price": raw["price"],
            "channel": "online",
            "order_id": raw["invoice"],
        }
    )
    ts = parse_timestamps(raw["ts"], AUTO)
    price = pd.to_numeric(raw["price"], errors="coerce")
    by_item = (
        pd.DataFrame(
            {"item_id": raw["stock_code"], "name": raw["description"], "ts": ts, "price": price.where(price > 0)}
        )
        .dropna(subset=["item_id"])
        .groupby("item_id")
    )
    products = pd.DataFrame(
        {
            "name": by_item["name"].last(),
            "unit_price": by_item["price"].median(),
            "launched_at": by_item["ts"].min(),
        }
    ).reset_index()
    # Stock codes that start with a digit are goods; the rest are postage, fees and manual adjustments.
    products["category"] = products["item_id"].str[0].str.isdigit().map({True: "merchandise", False: "non_product"})
    products["in_stock"] = True
    by_customer = (
        pd.DataFrame({"customer_id": customer, "ts": ts, "region": raw["country"]})
        .dropna(subset=["customer_id"])
        .groupby("customer_id")
    )
    customers = pd.DataFrame(
        {"signup_date": by_customer["ts"].min(), "region": by_customer["region"].first()}
    ).reset_index()
    return Loaded(
        {"customers": customers, "products": products, "events": events}, {"events": {"ts": AUTO}}, origin=str(path)
    )


def default_path(source: str, settings: Settings) -> Path:
    """Where a source is read from when no --path is given."""
    folders = {"synthetic": "synthetic", "cdnow": "cdnow", "ml100k": "ml100k"}
    if source not in folders:
        raise SourceError(f"--path is required for source {source!r}")
    return settings.raw_dir / folders[source]


def _reject_oversized(loaded: Loaded, max_chars: int) -> Loaded:
    """Rows with a value longer than `max_chars` move to `rejected` (quarantined by the ingest, values cut)."""
    for name, df in list(loaded.tables.items()):
        kept, bad = split_oversized(df, max_chars)
        if len(bad):
            loaded.tables[name] = kept
            earlier = loaded.rejected.get(name)
            loaded.rejected[name] = bad if earlier is None else pd.concat([earlier, bad], ignore_index=True)
    return loaded


def load_source(source: str, settings: Settings, path: Path | None = None, mapping: Path | None = None) -> Loaded:
    """Read a source into contract-shaped tables, within `settings.input_limits`."""
    limits = settings.input_limits
    if source not in SOURCES:
        raise SourceError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "csv":
        if mapping is None:
            raise SourceError("--mapping is required for source 'csv'")
        return _reject_oversized(
            load_mapped(Path(mapping), Path(path) if path else None, limits), limits.max_field_chars
        )
    path = Path(path) if path else default_path(source, settings)
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    readers = {
        "synthetic": load_synthetic,
        "cdnow": load_cdnow,
        "ml100k": load_ml100k,
        "online-retail": load_online_retail,
    }
    return _reject_oversized(readers[source](path, limits), limits.max_field_chars)
