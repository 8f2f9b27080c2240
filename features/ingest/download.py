"""`patron data get`: a public dataset into WORKSPACE/raw, from its official address or a PyPI wheel, verified."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from features.tables.store import atomic_write_bytes
from patron.config import IngestConfig, Settings

CACHE_ENV = "PATRON_CACHE"  # a folder shared across workspaces (tests set it so the suite downloads once)


class DownloadError(RuntimeError):
    """A dataset could not be obtained or failed its checksum."""


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: where it lies in the official archive and in the wheel, and its known digests."""

    name: str  # file name written under WORKSPACE/raw/<dataset>/
    sha256: str  # of the file as shipped in the wheel
    records_sha256: str | None = None  # of its sorted, whitespace-normalised numeric records (format-independent)
    official_member: str | None = None  # path inside the official zip (None: not taken from there)
    wheel_member: str | None = None  # path inside the wheel


@dataclass(frozen=True)
class Dataset:
    """A public dataset: official address and a PyPI wheel that ships it."""

    name: str
    official_url: str
    wheel: tuple[str, str]  # (project, version)
    files: tuple[DataFile, ...]  # the first one is the main file


DATASETS: dict[str, Dataset] = {
    "cdnow": Dataset(
        "cdnow",
        "https://www.brucehardie.com/datasets/CDNOW_master.zip",
        ("lifetimes", "0.11.3"),
        (
            DataFile(
                "CDNOW_master.txt",
                sha256="eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef",
                records_sha256="57e863a51d0124fdae8c1b8015627b1cd205010c3ea07da16e577c23c945f944",
                official_member="CDNOW_master.txt",
                wheel_member="lifetimes/datasets/CDNOW_master.txt",
            ),
        ),
    ),
    "ml100k": Dataset(
        "ml100k",
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        ("recbole", "1.2.1"),
        (
            DataFile(
                "ml-100k.inter",
                sha256="4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                records_sha256="c98970c48ae3e6b98bb44a3f6725d386b37e7817707570c2b7c30a7e395a02f2",
                wheel_member="recbole/dataset_example/ml-100k/ml-100k.inter",
            ),
            DataFile(
                "ml-100k.item",
                sha256="51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                wheel_member="recbole/dataset_example/ml-100k/ml-100k.item",
            ),
            # The official archive ships the original layout; its ratings must hold the same records.
            DataFile(
                "u.data",
                sha256="",
                official_member="ml-100k/u.data",
                records_sha256="c98970c48ae3e6b98bb44a3f6725d386b37e7817707570c2b7c30a7e395a02f2",
            ),
            DataFile("u.item", sha256="", official_member="ml-100k/u.item"),
        ),
    ),
}


def records_digest(data: bytes) -> str:
    """SHA-256 of the numeric records of a whitespace-separated file, sorted, header and spacing ignored."""
    rows = []
    for line in data.decode("latin-1").splitlines():
        tokens = line.split()
        if tokens and tokens[0].isdigit():
            rows.append(" ".join(tokens))
    rows.sort()
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _verify(spec: DataFile, data: bytes, origin: str) -> str:
    """Check a file against the digests the code knows; return how it matched."""
    digest = hashlib.sha256(data).hexdigest()
    if spec.sha256 and digest == spec.sha256:
        return f"sha256 {digest}"
    if spec.records_sha256:
        records = records_digest(data)
        if records == spec.records_sha256:
            return f"records sha256 {records}"
        raise DownloadError(
            f"checksum mismatch for {spec.name} from {origin}: expected sha256 {spec.sha256} "
            f"(or records sha256 {spec.records_sha256}), got {digest} (records {records}); file not kept"
        )
    if spec.sha256:
        raise DownloadError(
            f"checksum mismatch for {spec.name} from {origin}: expected sha256 {spec.sha256}, "
            f"got {digest}; file not kept"
        )
    return f"sha256 {digest} (companion file, not pinned)"


def cache_dir(settings: Settings) -> Path:
    """Where downloaded wheels are kept: $PATRON_CACHE or WORKSPACE/cache."""
    return Path(os.environ.get(CACHE_ENV) or settings.workspace / "cache")


def _fetch_official(ds: Dataset, timeout: float) -> bytes:
    with urllib.request.urlopen(ds.official_url, timeout=timeout) as response:
        return response.read()


def _wheel(ds: Dataset, settings: Settings, echo: Callable[[str], None]) -> Path:
    """The dataset's wheel from the cache, downloaded with pip (no install) when absent."""
    project, version = ds.wheel
    wheels = cache_dir(settings) / "wheels"
    pattern = f"{project.lower()}-{version}-"
    cached = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(pattern)] if wheels.exists() else []
    if cached:
        echo(f"using cached wheel {cached[0]}")
        return cached[0]
    wheels.mkdir(parents=True, exist_ok=True)
    echo(f"downloading {project}=={version} from PyPI (pip download, no install)")
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                f"{project}=={version}",
                "-d",
                tmp,
            ],
            capture_output=True,
            text=True,
        )
        found = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not found:
            raise DownloadError(
                f"could not download {project}=={version} from PyPI: {(proc.stderr or proc.stdout).strip()[-500:]}"
            )
        target = wheels / found[0].name
        os.replace(found[0], target)
    return target


def _from_official(ds: Dataset, ingest: IngestConfig, echo: Callable[[str], None]) -> dict[str, bytes] | None:
    """The dataset's files from its official archive, or None when the address cannot be reached."""
    try:
        payload = _fetch_official(ds, ingest.download_timeout_s)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        echo(f"official address {ds.official_url} unreachable ({exc}); falling back to PyPI")
        return None
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile:
        echo(f"{ds.official_url} did not return a zip archive; falling back to PyPI")
        return None
    names = set(archive.namelist())
    return {
        f.name: archive.read(f.official_member) for f in ds.files if f.official_member and f.official_member in names
    }


def _from_wheel(ds: Dataset, settings: Settings, echo: Callable[[str], None]) -> dict[str, bytes]:
    with zipfile.ZipFile(_wheel(ds, settings, echo)) as archive:
        return {f.name: archive.read(f.wheel_member) for f in ds.files if f.wheel_member}


def get_dataset(name: str, settings: Settings, echo: Callable[[str], None] = print) -> Path:
    """Obtain a public dataset into WORKSPACE/raw/<name>/ and return its main file (checksums verified)."""
    if name not in DATASETS:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    ds = DATASETS[name]
    folder = settings.raw_dir / name
    specs = {f.name: f for f in ds.files}
    for spec in ds.files:  # a verified copy already there: nothing to fetch
        path = folder / spec.name
        if spec.records_sha256 and path.exists():
            try:
                how = _verify(spec, path.read_bytes(), str(path))
            except DownloadError:
                continue
            echo(f"{name}: already present at {path} ({how})")
            return path
    files = _from_official(ds, settings.ingest, echo)
    origin = ds.official_url
    if not files or not any(specs[n].records_sha256 for n in files):
        files = _from_wheel(ds, settings, echo)
        origin = f"PyPI wheel {ds.wheel[0]}=={ds.wheel[1]}"
    checks = {n: _verify(specs[n], data, origin) for n, data in files.items()}  # all verified before any write
    main = None
    for n, data in files.items():
        atomic_write_bytes(folder / n, data)
        echo(f"{name}: {n} from {origin} ({checks[n]})")
        main = main or (folder / n if specs[n].records_sha256 else None)
    assert main is not None
    return main
