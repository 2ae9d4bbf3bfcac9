"""Property-based fuzzing of the whole OpenAPI schema with schemathesis, in process over ASGI.

Every operation the app publishes in ``/openapi.json`` gets schemathesis' coverage cases (boundary values, missing
and wrongly typed fields, methods the path does not have) and a bounded number of random cases, valid and invalid
inputs alike, derandomized: the same requests on every run. Each response must:

- not be a server error, apart from the few 5xx that are answers by design (``LEGITIMATE_5XX``);
- have a documented status code and a declared content type, and a body that matches the declared schema;
- when it is an error, be in Orchard's one shape, ``{"error": {"code": str, "message": str, ...}}``, with OpenAI's
  ``type`` and ``param`` too under ``/v1/``.

Every operation runs to the end, so one run reports every distinct failure (with a curl command to reproduce it),
and the test prints per operation what it sent and what came back, so the CI log shows what was tried.

Nothing leaves the machine: the ``settings`` fixture points the Hub at 127.0.0.1:9, where connections are refused
at once. No operation is excluded: without a model loaded, the chat routes answer 409 before any stream starts; a
download fails as soon as it tries the Hub; random job ids find no job, so no event stream stays open.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import CheckFunction
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.config import Settings
from backend.main import create_app

MAX_EXAMPLES = 25  # random cases per operation and generation mode, on top of the coverage cases
REQUEST_TIMEOUT_S = 30  # a handler that hangs fails its case instead of the whole run

FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the seed comes from the test itself: the same cases on every run and machine
    database=None,  # no .hypothesis folder replaying cases from an earlier run
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    deadline=None,  # timing is for bench/, a slow machine fails nothing
    suppress_health_check=list(HealthCheck),  # bounded on purpose; generation speed is not under test
    print_blob=False,
)

# Fuzzed values are no secrets: show them as sent in the curl commands (a field named like *token* is hidden else).
FUZZ_CONFIG = schemathesis.Config.from_dict({"output": {"sanitization": {"enabled": False}}})

# 5xx answers that are part of the API's contract rather than failures:
# - hub_unavailable: 502 (unreachable), 504 (timed out), 503 (HF_HUB_OFFLINE). The routes that read the Hub cannot
#   reach it here by design (HF_ENDPOINT is 127.0.0.1:9), so 502 is the right answer to /model/info, /model/check,
#   and a download or resume that waits for its job.
# - server_busy: 503 with Retry-After when the chat queue is full; the client is told to retry.
# - insufficient_memory / insufficient_disk: 507, a load or download that would not fit, refused with the numbers.
# - rag_store_unavailable: 503, a collection (or a new one) in PostgreSQL while ORCHARD_RAG_DATABASE_URL is unset or
#   its server away; the fuzzer asks for "store": "pgvector" without one.
# Any other 5xx, above all 500 internal_error (an exception nothing translated), is a bug.
LEGITIMATE_5XX: dict[str, frozenset[int]] = {
    "hub_unavailable": frozenset({502, 503, 504}),
    "server_busy": frozenset({503}),
    "insufficient_memory": frozenset({507}),
    "insufficient_disk": frozenset({507}),
    "rag_store_unavailable": frozenset({503}),
}


def _error_code(response: Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def not_a_server_error(ctx: CheckContext, response: Response, case: Case) -> None:
    """No 5xx but the answers by design in ``LEGITIMATE_5XX`` (schemathesis' own check refuses every 5xx)."""
    if response.status_code < 500:
        return
    code = _error_code(response)
    allowed = LEGITIMATE_5XX.get(code, frozenset()) if code else frozenset()
    assert response.status_code in allowed, f"Server error {response.status_code}: {response.text_lossy()[:500]}"


def error_in_one_shape(ctx: CheckContext, response: Response, case: Case) -> None:
    """A 4xx/5xx body is ``{"error": {"code": str, "message": str, ...}}``; under /v1/ also ``type`` and ``param``."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"Error body is not JSON: {response.text_lossy()[:300]!r}") from None
    assert isinstance(body, dict) and list(body) == ["error"], f"Error body is not {{'error': ...}}: {body!r}"
    error = body["error"]
    assert isinstance(error, dict), f"'error' is not an object: {body!r}"
    assert isinstance(error.get("code"), str) and error["code"], f"'error.code' is not a string: {body!r}"
    assert isinstance(error.get("message"), str) and error["message"], f"'error.message' is not a string: {body!r}"
    if case.operation.path.startswith("/v1/"):
        assert isinstance(error.get("type"), str), f"/v1 error without OpenAI's 'type': {body!r}"
        assert "param" in error, f"/v1 error without OpenAI's 'param': {body!r}"


CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,  # the status code is documented for the operation
    content_type_conformance,  # the Content-Type is one the status code declares
    response_schema_conformance,  # the body matches the schema declared for the status code
    response_headers_conformance,  # declared headers are present and valid
    error_in_one_shape,
]
# Not negative_data_rejection (an input the schema forbids must get a 4xx): pydantic's lax mode, which FastAPI
# uses, accepts 0 and 1 for a boolean on purpose, and that is all the check reports here. Invalid inputs are still
# sent, and their answers must pass every check above.


@dataclass
class OperationStats:
    requests: int = 0
    invalid_inputs: int = 0
    refused: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def add(self, other: OperationStats) -> None:
        self.requests += other.requests
        self.invalid_inputs += other.invalid_inputs
        self.refused += other.refused
        self.statuses.update(other.statuses)

    def __str__(self) -> str:
        statuses = " ".join(f"{status}x{count}" for status, count in sorted(self.statuses.items()))
        return (
            f"{self.requests} requests ({self.invalid_inputs} with invalid inputs), "
            f"{self.refused} refused with 4xx; statuses {statuses}"
        )


def _innermost(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (a stream's task group wraps what its producer raised)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _origin(exc: BaseException) -> str:
    """The deepest frame of Orchard's own code in the traceback, else the deepest frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/backend/" in f.filename] or frames[-1:]
    return ", ".join(f"{f.filename[f.filename.rfind('/backend/') + 1 :]}:{f.lineno} in {f.name}" for f in ours[-1:])


@dataclass
class FuzzRun:
    stats: dict[str, OperationStats] = field(default_factory=dict)
    failures: dict[tuple[str, str, int], str] = field(default_factory=dict)  # first report of each distinct failure

    def send(self, case: Case) -> None:
        """Send one case and check its response; a failure is recorded, not raised, so the run goes on."""
        label = case.operation.label
        stats = self.stats.setdefault(label, OperationStats())
        stats.requests += 1
        try:
            response = case.call(timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:  # not sent, or no answer within REQUEST_TIMEOUT_S
            stats.statuses[0] += 1
            report = f"{type(exc).__name__}: {exc}\n{case.as_curl_command()}"
            self.failures.setdefault((label, f"No response ({type(exc).__name__})", 0), report)
            return
        except Exception as exc:
            # The in-process transport re-raises what the app did not handle, where a server answers 500
            # internal_error, or cuts the response when a stream has already started.
            stats.statuses[500] += 1
            cause = _innermost(exc)
            report = f"{type(cause).__name__}: {cause} (raised at {_origin(cause)})\n{case.as_curl_command()}"
            self.failures.setdefault((label, f"Unhandled {type(cause).__name__}", 500), report)
            return
        stats.statuses[response.status_code] += 1
        if case.meta is not None and case.meta.generation.mode == GenerationMode.NEGATIVE:
            stats.invalid_inputs += 1
        if 400 <= response.status_code < 500:
            stats.refused += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (label, failure.title, response.status_code)
                self.failures.setdefault(key, str(group))

    def summary(self) -> str:
        total = OperationStats()
        lines = [
            f"OpenAPI fuzz, derandomized: coverage cases + up to {MAX_EXAMPLES} random cases per operation "
            "for valid and for invalid inputs (status 0: no response)"
        ]
        for label, stats in self.stats.items():
            total.add(stats)
            lines.append(f"  {label}: {stats}")
        lines.append(f"  total: {len(self.stats)} operations, {total}; {len(self.failures)} distinct failures")
        return "\n".join(lines)


def fuzz_operation(operation: APIOperation, send: Callable[[Case], None]) -> None:
    """Coverage cases first (deterministic), then random valid and invalid inputs."""
    schema = operation.schema
    config = schema.config.generation_for(operation=operation, phase="coverage")
    modes = list(GenerationMode)
    for case in schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=config):
        send(case)
    for mode in GenerationMode:

        @FUZZ_SETTINGS
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Case) -> None:
            send(case)

        try:
            fuzz()
        except Unsatisfiable:
            # No invalid input exists: no parameters and no body (GET /health), or only a string path parameter.
            assert mode == GenerationMode.NEGATIVE, f"{operation.label}: no valid input could be generated"


@pytest.fixture
def api_schema(settings: Settings) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(settings)
    # Loading the schema over ASGI starts the app's lifespan, which schemathesis keeps running; end it here.
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=FUZZ_CONFIG)
    finally:
        asgi.shutdown_lifespans()


def test_openapi_fuzz(api_schema: schemathesis.BaseSchema, capsys: pytest.CaptureFixture[str]) -> None:
    run = FuzzRun()
    try:
        for result in api_schema.get_all_operations():
            fuzz_operation(result.ok(), run.send)
    finally:
        with capsys.disabled():  # in the CI log even when the test passes
            print("\n" + run.summary())
    if run.failures:
        reports = [f"{label}: {title} ({status})\n{report}" for (label, title, status), report in run.failures.items()]
        pytest.fail(f"{len(reports)} distinct failures\n\n" + "\n\n".join(reports), pytrace=False)
