"""schemathesis against the OpenAPI document, on a real uvicorn: no 5xx, no schema violations.

Every operation gets positive cases (valid by the document: they must be answered as
documented) and negative ones (invalid: they must be refused as documented), sent with an
admin key so they reach the handlers. The app runs in this test's event loop; the
hypothesis runs (synchronous, like schemathesis's transport) run in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import Served
from tests.api.plant import bearer

MIN_CASES = 2000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 70, GenerationMode.NEGATIVE: 30}


@dataclass
class Outcome:
    cases: int = 0
    per_operation: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def fuzz(schema: schemathesis.BaseSchema, base_url: str) -> Outcome:
    outcome = Outcome()
    session = requests.Session()
    headers = bearer("admin")
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, examples in EXAMPLES.items():
            run = _hypothesis_test(operation.as_strategy(generation_mode=mode), examples,
                                   lambda case: case.call_and_validate(
                                       base_url=base_url, session=session, headers=headers,
                                       checks=CHECKS, timeout=10))
            before = outcome.cases
            try:
                run(outcome)
            except Unsatisfiable:
                pass  # no parameters to break (e.g. /healthz): no negative case exists
            except Exception as err:  # hypothesis re-raises the shrunk failing case
                outcome.failures.append(f"{operation.label} [{mode}]: {err}")
            key = f"{operation.label} [{mode}]"
            outcome.per_operation[key] = outcome.cases - before
    return outcome


def _hypothesis_test(strategy, examples: int, call: Callable) -> Callable[[Outcome], None]:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(outcome: Outcome, case) -> None:
        outcome.cases += 1
        call(case)

    return run


async def test_schemathesis_finds_no_server_errors_and_no_schema_violations(
        served: Served) -> None:
    served.api.lm.sources[0].stats.connected = True  # else /readyz is rightly 503
    schema = schemathesis.openapi.from_dict(served.api.app.openapi())
    outcome = await asyncio.to_thread(fuzz, schema, f"http://{served.url}")
    assert not outcome.failures, "\n\n".join(outcome.failures)
    assert outcome.cases >= MIN_CASES, outcome.per_operation
