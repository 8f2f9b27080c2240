"""Property-based fuzzing of the running service against its own OpenAPI document (Schemathesis + Hypothesis)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from benchmarks.report import BenchReport, package_versions
from patron.config import Settings

# Every response: a declared status code and content type, a body that fits the declared schema; and data the
# schema calls invalid must be refused with a 4xx. 5xx answers are counted from the status codes (FuzzReport).
CHECKS = (status_code_conformance, content_type_conformance, response_schema_conformance, negative_data_rejection)
# Schema-valid erasures would erase (and log) the fuzzer's ids in the workspace, and schema-valid campaigns would be
# written to it (with their offers): only invalid bodies are sent there, which must be refused before the handler
# (the privacy and campaign tests erase real customers and create real campaigns).
NEGATIVE_ONLY = ("POST /admin/erase", "POST /campaigns")
UNAVAILABLE = 503  # a deliberate, declared answer (a model not registered yet), counted apart from server errors
SCHEMA_PATH = "/docs.json"  # where BentoML serves the service's OpenAPI document
PACKAGES = ("patron", "schemathesis", "hypothesis", "bentoml")


@dataclass
class OperationResult:
    """What the fuzzer sent to one operation and what failed."""

    operation: str
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[dict] = field(default_factory=list)  # check, status, message, curl (first of each kind)
    failure_counts: Counter = field(default_factory=Counter)  # check -> failing requests


@dataclass
class FuzzReport:
    """The whole fuzzing run: per operation, and the totals the acceptance bar is about."""

    url: str
    examples: int
    seconds: float
    operations: list[OperationResult]
    schema_sha256: str = ""  # of the OpenAPI document fuzzed

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
        return sum(sum(o.failure_counts.values()) for o in self.operations)

    def operation_details(self) -> list[dict]:
        """Per operation, JSON-ready: requests, status codes, failing checks and one example of each failure."""
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
        """A Markdown table of the run."""
        lines = [
            f"# API fuzzing (Schemathesis {schemathesis.__version__})",
            "",
            f"{self.examples} examples per operation and mode (positive, negative) against {self.url}, "
            f"{self.seconds:.0f} s: **{self.requests} requests, {self.server_errors} 5xx other than 503, "
            f"{self.violations} check failures**; 503 (model not registered): "
            f"{sum(self.unavailable.values())}.",
            "",
            "Checks: " + ", ".join(f"`{c.__name__}`" for c in CHECKS),
            "",
            "| operation | requests | status codes | failures |",
            "|---|---|---|---|",
        ]
        for o in self.operations:
            codes = ", ".join(f"{k}: {v}" for k, v in sorted(o.statuses.items()))
            fails = ", ".join(f"{k}: {v}" for k, v in o.failure_counts.items()) or "0"
            lines.append(f"| {o.operation} | {o.requests} | {codes} | {fails} |")
        for o in self.operations:
            for f in o.failures:
                lines += ["", f"- `{o.operation}` {f['check']} (HTTP {f['status']}): {f['title']}", f"  `{f['curl']}`"]
        return "\n".join(lines) + "\n"


def _record(result: OperationResult, case: schemathesis.Case, response, failures: list[Failure]) -> None:
    result.requests += 1
    result.statuses[response.status_code] += 1
    for failure in failures:
        name = type(failure).__name__
        result.failure_counts[name] += 1
        if result.failure_counts[name] == 1:  # one reproducible example of each kind is enough
            result.failures.append(
                {
                    "check": name,
                    "status": response.status_code,
                    "title": failure.title,
                    "message": failure.message[:2000],
                    "curl": case.as_curl_command(),
                }
            )


def _fuzz_operation(
    operation,
    mode: GenerationMode,
    url: str,
    headers: dict[str, str],
    examples: int,
    session: requests.Session,
    result: OperationResult,
    timeout_s: float,
) -> None:
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, session=session, headers=headers, timeout=timeout_s)
        try:
            case.validate_response(response, checks=list(CHECKS), headers=headers)
            failures = []
        except FailureGroup as group:
            failures = list(group.exceptions)
        except Failure as failure:
            failures = [failure]
        if 400 <= response.status_code < 500:  # any 4xx refuses the request (e.g. a 413 for a body over the limit)
            failures = [f for f in failures if type(f).__name__ != "AcceptedNegativeData"]
        _record(result, case, response, failures)

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):  # e.g. no negative data for an operation without inputs
        run()


def fuzz_api(
    url: str,
    headers: dict[str, str] | None = None,
    examples: int = 25,
    timeout_s: float = 30.0,
    negative_only: tuple[str, ...] = NEGATIVE_ONLY,
) -> FuzzReport:
    """Fuzz every operation of the service at `url` with positive and negative examples; nothing raised on findings."""
    headers = dict(headers or {})
    schema = schemathesis.openapi.from_url(url.rstrip("/") + SCHEMA_PATH, headers=headers, timeout=timeout_s)
    started = time.perf_counter()
    results = []
    with requests.Session() as session:
        for loaded in schema.get_all_operations():
            operation = loaded.ok()
            result = OperationResult(operation.label)
            modes = [GenerationMode.NEGATIVE] if operation.label in negative_only else list(GenerationMode)
            for mode in modes:
                _fuzz_operation(operation, mode, url, headers, examples, session, result, timeout_s)
            results.append(result)
    digest = hashlib.sha256(json.dumps(schema.raw_schema, sort_keys=True, default=str).encode()).hexdigest()
    return FuzzReport(url, examples, time.perf_counter() - started, results, digest)


def fuzz_bench_report(report: FuzzReport) -> BenchReport:
    """The run as a benchmark report: one row per operation, the totals as its summary."""
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
    found = [
        f"`{o.operation}` {f['check']} (HTTP {f['status']}): {f['title']}; `{f['curl']}`"
        for o in report.operations
        for f in o.failures
    ]
    return BenchReport(
        name=f"API fuzzing (Schemathesis {schemathesis.__version__})",
        dataset=report.url,
        protocol={
            "examples_per_operation_and_mode": report.examples,
            "modes": "positive, negative",
            "checks": ", ".join(c.__name__ for c in CHECKS),
            "negative_only": ", ".join(NEGATIVE_ONLY),
        },
        columns=["requests", "statuses", "failures"],
        rows=rows,
        label="operation",
        fingerprint=report.schema_sha256,
        seeds={"hypothesis": "derandomized"},
        seconds=report.seconds,
        summary={
            "requests": report.requests,
            "server_errors": report.server_errors,
            "violations": report.violations,
            "unavailable_503": sum(report.unavailable.values()),
        },
        details={"unavailable_503": report.unavailable, "operations": report.operation_details()},
        notes=[
            f"{report.requests} requests, {report.server_errors} 5xx other than 503, {report.violations} check "
            f"failures; 503 (model not registered): {sum(report.unavailable.values())}",
            "data fingerprint: SHA-256 of the OpenAPI document fuzzed",
            *found,
        ],
        versions=package_versions(PACKAGES),
    )


def write_fuzz_report(report: FuzzReport, folder: Path, settings: Settings | None = None) -> tuple[Path, Path]:
    """`fuzz.json` and `fuzz.md` (the benchmark report) in `folder`; with `settings`, logged as an MLflow run of
    that workspace too."""
    md, js = fuzz_bench_report(report).write(folder, "fuzz", settings)
    return js, md
