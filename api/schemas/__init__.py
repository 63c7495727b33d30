"""The API's contract: response and request models, with examples for the OpenAPI document."""

from .alerts import AlertOut, SilenceIn, SilenceOut
from .common import Id, Problem
from .history import (
    AuditOut,
    Counts,
    Downtime,
    DowntimePage,
    DowntimePatch,
    OeePeriod,
    Pareto,
    ParetoRow,
    Reason,
    ReasonIn,
    Reliability,
    Series,
    Timeline,
)
from .live import Line, LineSummary, Machine, Oee
from .ops import Readiness

__all__ = [
    "AlertOut", "AuditOut", "Counts", "Downtime", "DowntimePage", "DowntimePatch", "Id", "Line",
    "LineSummary", "Machine", "Oee", "OeePeriod", "Pareto", "ParetoRow", "Problem", "Readiness",
    "Reason", "ReasonIn", "Reliability", "Series", "SilenceIn", "SilenceOut", "Timeline",
]
