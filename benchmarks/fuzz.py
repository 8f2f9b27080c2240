"""Property-based fuzzing of the running service against its own OpenAPI document (Schemathesis + Hypothesis)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from features.tables.store import write_json

# Every response: a declared status code and content type, a body that fits the declared schema; and data the
# schema calls invalid must be refused with a 4xx. 5xx answers are counted from the status codes (FuzzReport).
CHECKS = (status_code_conformance, content_type_conformance, response_schema_conformance, negative_data_rejection)
# Schema-valid erasures would erase (and log) the fuzzer's ids in the workspace: only invalid bodies are sent there,
# which must be refused before the handler (the privacy tests erase real customers).
NEGATIVE_ONLY = ("POST /admin/erase",)
UNAVAILABLE = 503  # a deliberate, declared answer (a model not registered yet), counted apart from server errors
SCHEMA_PATH = "/docs.json"  # where BentoML serves the service's OpenAPI document


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

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {"url": self.url, "examples_per_operation_and_mode": self.examples, "seconds": round(self.seconds, 1),
                "requests": self.requests, "server_errors": self.server_errors, "violations": self.violations,
                "unavailable_503": self.unavailable,
                "checks": [c.__name__ for c in CHECKS],
                "operations": [{"operation": o.operation, "requests": o.requests,
                                "statuses": {str(k): v for k, v in sorted(o.statuses.items())},
                                "failure_counts": dict(o.failure_counts), "failures": o.failures}
                               for o in self.operations]}

    def markdown(self) -> str:
        """A Markdown table of the run."""
        lines = [f"# API fuzzing (Schemathesis {schemathesis.__version__})", "",
                 f"{self.examples} examples per operation and mode (positive, negative) against {self.url}, "
                 f"{self.seconds:.0f} s: **{self.requests} requests, {self.server_errors} 5xx other than 503, "
                 f"{self.violations} check failures**; 503 (model not registered): "
                 f"{sum(self.unavailable.values())}.", "",
                 "Checks: " + ", ".join(f"`{c.__name__}`" for c in CHECKS), "",
                 "| operation | requests | status codes | failures |", "|---|---|---|---|"]
        for o in self.operations:
            codes = ", ".join(f"{k}: {v}" for k, v in sorted(o.statuses.items()))
            fails = ", ".join(f"{k}: {v}" for k, v in o.failure_counts.items()) or "0"
            lines.append(f"| {o.operation} | {o.requests} | {codes} | {fails} |")
        for o in self.operations:
            for f in o.failures:
                lines += ["", f"- `{o.operation}` {f['check']} (HTTP {f['status']}): {f['title']}",
                          f"  `{f['curl']}`"]
        return "\n".join(lines) + "\n"


def _record(result: OperationResult, case: schemathesis.Case, response, failures: list[Failure]) -> None:
    result.requests += 1
    result.statuses[response.status_code] += 1
    for failure in failures:
        name = type(failure).__name__
        result.failure_counts[name] += 1
        if result.failure_counts[name] == 1:  # one reproducible example of each kind is enough
            result.failures.append({"check": name, "status": response.status_code, "title": failure.title,
                                    "message": failure.message[:2000], "curl": case.as_curl_command()})


def _fuzz_operation(operation, mode: GenerationMode, url: str, headers: dict[str, str], examples: int,
                    session: requests.Session, result: OperationResult, timeout_s: float) -> None:
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                         suppress_health_check=list(hypothesis.HealthCheck), verbosity=hypothesis.Verbosity.quiet)
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

    try:
        run()
    except hypothesis.errors.Unsatisfiable:  # e.g. no negative data exists for an operation without inputs
        pass


def fuzz_api(url: str, headers: dict[str, str] | None = None, examples: int = 25, timeout_s: float = 30.0,
             negative_only: tuple[str, ...] = NEGATIVE_ONLY) -> FuzzReport:
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
    return FuzzReport(url, examples, time.perf_counter() - started, results)


def write_fuzz_report(report: FuzzReport, folder: Path) -> tuple[Path, Path]:
    """`fuzz.json` and `fuzz.md` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(report.as_dict(), folder / "fuzz.json")
    (folder / "fuzz.md").write_text(report.markdown())
    return folder / "fuzz.json", folder / "fuzz.md"
