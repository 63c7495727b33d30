"""What every error looks like (RFC 9457 problem details) and the types all schemas share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# The plant config's id rule, so a path or body that cannot name anything fails as 422.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Id = Annotated[str, Field(pattern=ID_PATTERN, examples=["line-1"])]


class Problem(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "type": "about:blank", "title": "Forbidden", "status": 403,
        "detail": "key 'board-line2' is not allowed on line 'line-1'",
    }]})

    type: str = Field(default="about:blank", description="about:blank: the title is the status")
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="what went wrong, in words a user can act on")
