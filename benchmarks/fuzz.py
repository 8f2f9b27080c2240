"""The running service against Schemathesis's own command line, as a user's security review would run it: every check
(`--checks all`), every phase (examples, coverage with its content-type and method mutations, fuzzing; stateful where
the document has links), schema-valid and schema-invalid data; read back from its JSON and NDJSON reports."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
import schemathesis

from benchmarks.report import BenchReport, package_versions
from patron.config import Settings

ST = str(Path(sys.executable).parent / "st")  # Schemathesis's command line, from this environment
PHASES = "examples,coverage,fuzzing,stateful"
# Schema-valid erasures would erase (and log) the fuzzer's ids in the workspace, and schema-valid campaigns would be
# written to it (with their offers): these paths get a run of their own with schema-invalid data only, which must be
# refused before the handler (the privacy and campaign tests erase real customers and create real campaigns).
NEGATIVE_ONLY = "^(/admin/erase|/campaigns)$"
UNAVAILABLE = 503  # a deliberate, declared answer (a model not registered yet), counted apart from server errors
SCHEMA_PATH = "/docs.json"  # where BentoML serves the service's OpenAPI document
SEED = 42
PACKAGES = ("patron", "schemathesis", "hypothesis", "bentoml")


@dataclass
class OperationResult:
    """What Schemathesis sent to one operation and which checks failed."""

    operation: str
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    failure_counts: Counter = field(default_factory=Counter)  # check -> failing test cases
    failures: list[dict] = field(default_factory=list)  # code, title, count (from the run's report)


@dataclass
class FuzzReport:
    """The Schemathesis runs: per operation, and the totals the acceptance bar is about."""

    url: str
    examples: int
    workers: int
    seconds: float
    operations: list[OperationResult]
    errors: list[dict] = field(default_factory=list)  # Schemathesis's own errors: title, count
    phases: dict[str, str] = field(default_factory=dict)  # phase -> status (of the main run)
    commands: list[str] = field(default_factory=list)
    schema_sha256: str = ""  # of the OpenAPI document fuzzed
    output_tail: str = ""  # the end of Schemathesis's own summary

    @property
    def requests(self) -> int:
        return sum(o.requests for o in self.operations)

    @property
    def server_errors(self) -> int:
        return sum(n for o in self.operations for code, n in o.statuses.items() if code >= 500 and code != UNAVAILABLE)

    @property
    def unavailable(self) -> dict[str, int]:
        """503 answers per operation (e.g. /retention/plan before its CLV and uplift models are registered)."""
        return {o.operation: o.statuses[UNAVAILABLE] for o in self.operations if o.statuses[UNAVAILABLE]}

    @property
    def violations(self) -> int:
        """Failing test cases, all checks together."""
        return sum(sum(o.failure_counts.values()) for o in self.operations)

    @property
    def error_count(self) -> int:
        return sum(e["count"] for e in self.errors)

    def operation_details(self) -> list[dict]:
        """Per operation, JSON-ready: requests, status codes, failing checks and the report's failures."""
        return [
            {
                "operation": o.operation,
                "requests": o.requests,
                "statuses": {str(k): v for k, v in sorted(o.statuses.items())},
                "failure_counts": dict(o.failure_counts),
                "failures": o.failures,
            }
            for o in self.operations
        ]

    def markdown(self) -> str:
        """A Markdown table of the runs."""
        lines = [
            f"# API fuzzing (Schemathesis {schemathesis.__version__}, every check and phase)",
            "",
            f"{self.examples} examples per operation against {self.url} ({self.workers} Schemathesis workers), "
            f"{self.seconds:.0f} s: **{self.requests} requests, {self.server_errors} 5xx other than 503, "
            f"{self.violations} failing test cases, {self.error_count} Schemathesis errors**; 503 (model not "
            f"registered): {sum(self.unavailable.values())}. Phases: "
            + ", ".join(f"{k} {v}" for k, v in self.phases.items()),
            "",
            "| operation | requests | status codes | failures |",
            "|---|---|---|---|",
        ]
        for o in self.operations:
            codes = ", ".join(f"{k}: {v}" for k, v in sorted(o.statuses.items()))
            fails = ", ".join(f"{k}: {v}" for k, v in o.failure_counts.items()) or "0"
            lines.append(f"| {o.operation} | {o.requests} | {codes} | {fails} |")
        lines += ["", *[f"- error: {e['title']} ({e['count']})" for e in self.errors]]
        lines += ["", "Commands:", *[f"    {c}" for c in self.commands]]
        return "\n".join(lines) + "\n"


def st_command(
    url: str, headers: dict[str, str], examples: int, workers: int, out: Path, negative_only: bool = False
) -> list[str]:
    """The `st run` command line: every check and phase, reports in `out`."""
    command = [ST, "run", url.rstrip("/") + SCHEMA_PATH, "--max-examples", str(examples), "--checks", "all"]
    command += ["--phases", PHASES, "--workers", str(workers), "--seed", str(SEED), "--no-color"]
    command += ["--report", "json,ndjson", "--report-dir", str(out), "--request-timeout", "30"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if negative_only:
        return [*command, "--include-path-regex", NEGATIVE_ONLY, "--mode", "negative"]
    return [*command, "--exclude-path-regex", NEGATIVE_ONLY]


def _printable(command: list[str]) -> str:
    """The command with header values hidden (they hold the API key)."""
    shown = [("-H", c) for c in command]
    return " ".join("'<header>'" if i and command[i - 1] == "-H" else c for i, (_, c) in enumerate(shown))


def _read_run(out: Path, results: dict[str, OperationResult]) -> dict:
    """Fold one run's NDJSON events into `results` (per operation) and return its JSON report."""
    for line in next(out.glob("ndjson-*.ndjson")).read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if not event:
            continue
        recorder = event["recorder"]
        result = results.setdefault(recorder["label"], OperationResult(recorder["label"]))
        for interaction in recorder.get("interactions", {}).values():
            response = interaction.get("response")
            if response is not None:
                result.requests += 1
                result.statuses[int(response["status_code"])] += 1
        for checks in recorder.get("checks", {}).values():
            for check in checks:
                if check["status"] == "failure":
                    result.failure_counts[check["name"]] += 1
    report = json.loads(next(out.glob("json-*.json")).read_text())
    for failure in report["failures"]:
        for label in failure["operations"]:
            result = results.setdefault(label, OperationResult(label))
            result.failures.append({k: failure[k] for k in ("code", "title", "count")})
    return report


def fuzz_api(
    url: str,
    headers: dict[str, str] | None = None,
    examples: int = 25,
    workers: int = 2,
    out: Path | None = None,
    timeout_s: float = 1800,
) -> FuzzReport:
    """Run Schemathesis against the service at `url` (a main run, and /admin/erase schema-invalid only); nothing
    raised on findings. Its raw reports go to `out` (default: a temporary folder)."""
    import tempfile

    headers = dict(headers or {})
    document = requests.get(url.rstrip("/") + SCHEMA_PATH, timeout=30).json()
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    started = time.perf_counter()
    results: dict[str, OperationResult] = {}
    errors: list[dict] = []
    commands, phases, tail = [], {}, ""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(out or scratch).resolve()
        root.mkdir(parents=True, exist_ok=True)
        for name, negative_only in (("main", False), ("erase", True)):
            shutil.rmtree(root / name, ignore_errors=True)  # a report left by an earlier run must not be read
            command = st_command(url, headers, examples, workers, root / name, negative_only)
            # run in the reports' folder: Schemathesis keeps its cache (.schemathesis/) in its working directory
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=root)
            commands.append(_printable(command))
            try:
                report = _read_run(root / name, results)
            except StopIteration as exc:  # no report: Schemathesis itself failed
                raise RuntimeError(f"Schemathesis wrote no report: {done.stdout[-3000:]}{done.stderr[-3000:]}") from exc
            errors += report["errors"]
            if name == "main":
                phases = {k: v["status"] for k, v in report["phases"].items()}
                tail = done.stdout[-1500:]
    return FuzzReport(
        url,
        examples,
        workers,
        time.perf_counter() - started,
        sorted(results.values(), key=lambda r: r.operation),
        errors,
        phases,
        commands,
        digest,
        tail,
    )


def fuzz_bench_report(report: FuzzReport) -> BenchReport:
    """The runs as a benchmark report: one row per operation, the totals as its summary."""
    rows = [
        {
            "operation": o.operation,
            "requests": o.requests,
            "statuses": ", ".join(f"{k}: {v}" for k, v in sorted(o.statuses.items())),
            "failures": ", ".join(f"{k}: {v}" for k, v in o.failure_counts.items()) or "0",
            "server_errors": sum(n for code, n in o.statuses.items() if code >= 500 and code != UNAVAILABLE),
            "check_failures": sum(o.failure_counts.values()),
        }
        for o in report.operations
    ]
    found = [f"`{o.operation}` {f['code']} {f['title']} ({f['count']})" for o in report.operations for f in o.failures]
    return BenchReport(
        name=f"API fuzzing (Schemathesis {schemathesis.__version__}, every check and phase)",
        dataset=report.url,
        protocol={
            "max_examples_per_operation": report.examples,
            "schemathesis_workers": report.workers,
            "checks": "all",
            "phases": PHASES,
            "negative_only": NEGATIVE_ONLY,
            "commands": report.commands,
        },
        columns=["requests", "statuses", "failures"],
        rows=rows,
        label="operation",
        fingerprint=report.schema_sha256,
        seeds={"schemathesis": SEED},
        seconds=report.seconds,
        summary={
            "requests": report.requests,
            "server_errors": report.server_errors,
            "violations": report.violations,
            "schemathesis_errors": report.error_count,
            "unavailable_503": sum(report.unavailable.values()),
        },
        details={
            "unavailable_503": report.unavailable,
            "phases": report.phases,
            "errors": report.errors,
            "operations": report.operation_details(),
        },
        notes=[
            f"{report.requests} requests, {report.server_errors} 5xx other than 503, {report.violations} failing "
            f"test cases, {report.error_count} Schemathesis errors; 503 (model not registered): "
            f"{sum(report.unavailable.values())}",
            "data fingerprint: SHA-256 of the OpenAPI document fuzzed",
            *found,
            *[f"Schemathesis error: {e['title']} ({e['count']})" for e in report.errors],
        ],
        versions=package_versions(PACKAGES),
    )


def write_fuzz_report(report: FuzzReport, folder: Path, settings: Settings | None = None) -> tuple[Path, Path]:
    """`fuzz.json` and `fuzz.md` (the benchmark report) in `folder`; with `settings`, logged as an MLflow run of
    that workspace too."""
    md, js = fuzz_bench_report(report).write(folder, "fuzz", settings)
    return js, md
