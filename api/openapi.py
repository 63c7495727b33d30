"""The OpenAPI document, finished from what the routes declare.

Every route that checks a key gets its access rule (`x-linemon-access`, read by the
role-matrix test), a sentence saying it, and its 401/403/429 answers; every route with
a body gets 413; every error answer is `application/problem+json` with the Problem
schema (FastAPI would say application/json and its own validation-error schema).
Deriving it from the dependencies themselves keeps the document from drifting.

`AccessRoute` is the route class of every linemon router: it reads the access rule off
its own dependencies when FastAPI builds it (a documented extension point, unlike the
router internals, which changed in FastAPI 0.16x).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api.auth import Access, access_of
from api.problems import DESCRIPTIONS, PROBLEM_JSON
from api.schemas import Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


class AccessRoute(APIRoute):
    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        extra: dict[str, Any] = dict(self.openapi_extra or {})
        codes: list[int] = []
        access = find_access(self.dependant)
        if access is not None:
            extra["x-linemon-access"] = access.openapi()
            self.description = f"{self.description}\n\n{access.describe()}".strip()
            codes += [401, 403, 429]
        else:
            extra["security"] = []  # public: say so, rather than by omission
        if self.body_field is not None:
            codes += [400, 413]
        if codes:
            answers = extra.setdefault("responses", {})
            for code in codes:
                answers.setdefault(str(code), {"description": DESCRIPTIONS[code]})
        self.openapi_extra = extra


def find_access(dependant: Dependant) -> Access | None:
    for dep in dependant.dependencies:
        found = access_of(dep.call) or find_access(dep)
        if found is not None:
            return found
    return None


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary,
                      description=app.description, routes=app.routes, tags=app.openapi_tags)
    for path in doc["paths"].values():
        for op in path.values():
            _problem_media_types(op)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Problem", Problem.model_json_schema())
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def _problem_media_types(op: dict[str, Any]) -> None:
    for status, answer in op.get("responses", {}).items():
        if not status.isdigit() or int(status) < 400 or not _is_problem(answer):
            continue  # e.g. /readyz's 503 is a readiness report, not an error
        answer["description"] = DESCRIPTIONS.get(int(status), answer.get("description", ""))
        if status in ("429", "503"):
            answer.setdefault("headers", {})["Retry-After"] = {
                "description": "seconds to wait", "schema": {"type": "integer"}}
        answer["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}


def _is_problem(answer: dict[str, Any]) -> bool:
    content = answer.get("content")
    if not content:
        return True
    schema = next(iter(content.values())).get("schema", {})
    return str(schema.get("$ref", "")).endswith(("/Problem", "/HTTPValidationError"))
