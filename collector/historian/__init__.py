"""The historian: durable spool, InfluxDB and SQLite stores, one query interface."""

from .config import HistorianConfig, InfluxBackendConfig, SpoolConfig, SqliteBackendConfig
from .historian import Historian, HistorianConfigError
from .query import (
    AuditEntry,
    CountBucket,
    DowntimeNotFound,
    HistoryQuery,
    HistoryUnavailable,
    Page,
    SeriesPoint,
    StateInterval,
)
from .schema import OeeSnapshot

__all__ = [
    "AuditEntry",
    "CountBucket",
    "DowntimeNotFound",
    "Historian",
    "HistorianConfig",
    "HistorianConfigError",
    "HistoryQuery",
    "HistoryUnavailable",
    "InfluxBackendConfig",
    "OeeSnapshot",
    "Page",
    "SeriesPoint",
    "SpoolConfig",
    "SqliteBackendConfig",
    "StateInterval",
]
