"""Reading untrusted input files within limits: bytes after decompression, rows, encoding, binary content and field
length are checked, and every refusal names the file (and the line or column where it can)."""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow.parquet as pq

from patron.config import InputLimitsConfig

OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
SNIFF_BYTES = 8192  # how much of a file is looked at for a byte-order mark and NUL bytes


class SourceError(ValueError):
    """A source cannot be read (missing file, wrong layout, bad mapping, past an input limit)."""


class EncodingError(SourceError):
    """A text file that is not in the encoding it was read with."""


class _Capped(io.RawIOBase):
    """A binary stream that refuses to give more than `limit` bytes (a decompression bomb stops there)."""

    def __init__(self, raw: IO[bytes], limit: int, path: Path) -> None:
        self.raw, self.limit, self.path, self.total = raw, limit, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(min(len(buffer), self.limit + 1 - self.total))
        self.total += len(data)
        if self.total > self.limit:
            raise SourceError(
                f"{self.path}: more than {self.limit} bytes (after decompression); "
                "raise input_limits.max_file_bytes to read it"
            )
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


def _open_binary(path: Path, limits: InputLimitsConfig) -> io.BufferedReader:
    opener = OPENERS.get(path.suffix.lower(), open)
    return io.BufferedReader(_Capped(opener(path, "rb"), limits.max_file_bytes, path), buffer_size=1 << 20)


def sniff_encoding(path: Path, encoding: str, limits: InputLimitsConfig) -> str:
    """The encoding to read `path` with: the one its byte-order mark names, else `encoding`; binary files refused."""
    with _open_binary(path, limits) as fh:
        head = fh.read(SNIFF_BYTES)
    for bom, name in BOMS:
        if head.startswith(bom):
            return name
    nul = head.find(b"\x00")
    if nul >= 0:
        raise SourceError(f"{path}: binary content (a NUL byte at offset {nul}), not a delimited text file")
    return encoding


def _first_undecodable(path: Path, encoding: str, limits: InputLimitsConfig) -> str:
    """Where the first byte that does not decode is: line number and byte value."""
    with _open_binary(path, limits) as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as exc:
                return f"line {number}, byte {line[exc.start]:#04x} at column {exc.start + 1}"
    return "the end of the file"


def read_delimited(
    path: Path, limits: InputLimitsConfig, sep: str = ",", encoding: str = "utf-8", **read_csv: Any
) -> pd.DataFrame:
    """A delimited text file (optionally .gz/.bz2/.xz) as strings, parsed in chunks of `limits.chunk_rows` rows;
    SourceError past `max_file_bytes` or `max_rows`, on binary content or on text that is not in `encoding`."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    encoding = sniff_encoding(path, encoding, limits)
    chunks, rows = [], 0
    try:
        with _open_binary(path, limits) as raw, io.TextIOWrapper(raw, encoding=encoding, newline="") as text:
            options = {"dtype": str, "keep_default_na": False, "na_values": [""], **read_csv}
            engine = "python" if len(sep) > 1 else "c"
            for chunk in pd.read_csv(text, sep=sep, engine=engine, chunksize=limits.chunk_rows, **options):
                rows += len(chunk)
                if rows > limits.max_rows:
                    raise SourceError(
                        f"{path}: more than {limits.max_rows} rows; raise input_limits.max_rows to read it"
                    )
                chunks.append(chunk)
    except UnicodeDecodeError as exc:
        raise EncodingError(
            f"{path}: not valid {encoding} text ({_first_undecodable(path, encoding, limits)}); "
            f"give the file's encoding (e.g. `encoding: latin-1` in the mapping)"
        ) from exc
    except pd.errors.ParserError as exc:
        raise SourceError(f"{path}: cannot be parsed as delimited text: {exc}") from exc
    if not chunks:
        raise SourceError(f"{path}: empty file")
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0].reset_index(drop=True)


def read_parquet_bounded(path: Path, limits: InputLimitsConfig, **read_parquet: Any) -> pd.DataFrame:
    """A Parquet file, refused before reading when its metadata claims more than `max_rows` rows or
    `max_file_bytes` uncompressed bytes."""
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise SourceError(f"{path}: not a readable Parquet file: {exc}") from exc
    if meta.num_rows > limits.max_rows:
        raise SourceError(f"{path}: claims {meta.num_rows} rows, more than input_limits.max_rows ({limits.max_rows})")
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if size > limits.max_file_bytes:
        raise SourceError(
            f"{path}: claims {size} uncompressed bytes, more than input_limits.max_file_bytes ({limits.max_file_bytes})"
        )
    return pd.read_parquet(path, **read_parquet)


def split_oversized(df: pd.DataFrame, max_chars: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows whose text values all fit in `max_chars`, and the others (values cut, with a `reason` naming the field)."""
    reasons: dict[Any, list[str]] = {}
    for column in df.columns:
        if df[column].dtype != object and not pd.api.types.is_string_dtype(df[column]):
            continue
        lengths = df[column].map(lambda v: len(v) if isinstance(v, str) else 0)
        for idx, n in lengths[lengths > max_chars].items():
            reasons.setdefault(idx, []).append(
                f"{column}: longer than {max_chars} characters (input_limits.max_field_chars), got {n}"
            )
    if not reasons:
        return df, df.iloc[:0].assign(reason=pd.Series(dtype=object))
    bad = (
        df.loc[list(reasons)]
        .astype(object)
        .map(lambda v: v[:max_chars] + "..." if isinstance(v, str) and len(v) > max_chars else v)
    )
    bad["reason"] = ["; ".join(reasons[i]) for i in bad.index]
    return df.drop(index=list(reasons)), bad
