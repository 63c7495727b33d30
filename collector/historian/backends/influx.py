"""The InfluxDB 2.x store: writes from the spool with the async client, buckets on start.

Buckets: `bucket` (raw samples, `retention_days`) and `downsampled_bucket` (events and
1-minute sample aggregates, `downsampled_retention_days`). Both are created with their
retention on start when the token may; a token that may not (403) is fine as long as
the buckets exist, otherwise writes get 404 and the health check raises the alarm.

Only this module and influx_query talk to influxdb-client; its errors are translated into
the store errors the forwarder understands (see base.py). The client's own batching
WriteApi is not used: it keeps batches in memory and drops them after its retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import aiohttp
from influxdb_client import BucketRetentionRules, PostBucketRequest, WritePrecision
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException
from influxdb_client.service.buckets_service import BucketsService
from influxdb_client.service.organizations_service import OrganizationsService

from ..config import InfluxBackendConfig
from ..linebatch import LineBatch
from .base import StoreAuthError, StoreRejected, StoreTooLarge, StoreUnavailable
from .flux_csv import FluxQueryError, parse_cells, parse_rows
from .influx_query import InfluxQueryMixin
from .influx_totals import InfluxTotals

log = logging.getLogger(__name__)
T = TypeVar("T")


def _message(err: ApiException) -> str:
    body = err.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return str(json.loads(body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(body or err.reason or "")


def _retry_after(err: ApiException) -> float | None:
    headers = err.headers or {}
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def translate(err: Exception, what: str) -> Exception:
    """influxdb-client / aiohttp failure -> the store error the forwarder acts on."""
    if isinstance(err, ApiException):
        status, msg = err.status or 0, f"{what}: HTTP {err.status}: {_message(err)}"
        if status in (400, 422):
            return StoreRejected(msg)
        if status == 413:
            return StoreTooLarge(msg)
        if status in (401, 403, 404):
            return StoreAuthError(msg)
        return StoreUnavailable(msg, retry_after=_retry_after(err))  # 429, 5xx, 0
    return StoreUnavailable(f"{what}: {type(err).__name__}: {err}")


TRANSPORT_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)
PARSE_INLINE_CHARS = 64_000  # ~3 ms of parsing at most on the event loop


class InfluxStore(InfluxQueryMixin, InfluxTotals):
    def __init__(self, cfg: InfluxBackendConfig, *, token: str, clock: Callable[[], datetime],
                 edit_sink: Any = None) -> None:
        self.cfg = cfg
        self._token = token
        self._clock = clock
        self.edit_sink = edit_sink
        self._client: InfluxDBClientAsync | None = None
        self._write_api: Any = None
        self._buckets_checked = False  # retried before writes until influxd has answered
        self._warned = False

    @property
    def client(self) -> InfluxDBClientAsync:
        if self._client is None:
            raise StoreUnavailable("InfluxDB client is not open")
        return self._client

    def bucket_for(self, kind: str) -> str:
        return self.cfg.bucket if kind == "sample" else self.cfg.downsampled_bucket

    async def open(self) -> None:
        # The async client must be created inside the running loop.
        self._client = InfluxDBClientAsync(
            url=self.cfg.url, token=self._token, org=self.cfg.org,
            timeout=int(self.cfg.timeout_s * 1000))
        self._write_api = self._client.write_api()
        await self._check_buckets()

    async def _check_buckets(self) -> None:
        try:
            await self.ensure_buckets()
        except TRANSPORT_ERRORS as err:
            error = translate(err, self.cfg.url)
            # Down: try again before the next write. Refused: the token may only write.
            down = isinstance(error, StoreUnavailable)
            self._buckets_checked = not down
            (log.debug if down and self._warned else log.warning)(
                "InfluxDB buckets not checked: %s", error)
            self._warned = True
        except StoreAuthError as err:
            self._buckets_checked = True
            log.warning("InfluxDB buckets not checked: %s", err)
        else:
            self._buckets_checked = True

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._write_api = None

    async def write(self, kind: str, batch: LineBatch) -> None:
        if self._write_api is None:
            raise StoreUnavailable("InfluxDB client is not open")
        bucket = self.bucket_for(kind)
        if not self._buckets_checked:
            await self._check_buckets()
        try:
            await self._write_api.write(
                bucket=bucket, org=self.cfg.org, record=batch.text,
                write_precision=WritePrecision.NS)
        except TRANSPORT_ERRORS as err:
            raise translate(err, f"write to {bucket}") from err

    async def ensure_buckets(self) -> None:
        """Create the two buckets with their retention if missing and if the token may."""
        api = self.client.api_client
        orgs = await OrganizationsService(api).get_orgs_async(org=self.cfg.org)
        if not orgs.orgs:
            raise StoreAuthError(f"organization {self.cfg.org!r} not found")
        org_id = orgs.orgs[0].id
        buckets = BucketsService(api)
        for name, days in ((self.cfg.bucket, self.cfg.retention_days),
                           (self.cfg.downsampled_bucket, self.cfg.downsampled_retention_days)):
            try:
                found = await buckets.get_buckets_async(name=name, org_id=org_id)
                if found.buckets:
                    continue
            except ApiException as err:
                if err.status != 404:  # influxd answers a name filter with no match with 404
                    raise
            rule = BucketRetentionRules(type="expire", every_seconds=days * 86_400)
            request = PostBucketRequest(org_id=org_id, name=name, retention_rules=[rule])
            try:
                await buckets.post_buckets_async(post_bucket_request=request)
                log.info("created InfluxDB bucket %s (retention %d days)", name, days)
            except ApiException as err:
                if err.status in (401, 403):
                    log.warning("token may not create bucket %s; create it with retention "
                                "%d days", name, days)
                elif err.status != 422:  # 422: created meanwhile by someone else
                    raise

    async def flux(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Run a Flux query with parameters (never formatted into the text); rows as dicts."""
        text = await self._flux_text(query, params)
        rows = await self._parse(text, parse_rows)
        if '"' in text:
            for row in rows:
                for key, value in row.items():
                    if isinstance(value, str) and "\r\n" in value:
                        row[key] = value.replace("\r\n", "\n")
        return rows

    async def flux_cells(self, query: str, params: dict[str, Any], columns: Sequence[str],
                         then: Callable[[list[tuple[str, ...]]], T]) -> T:
        """Run a Flux query; `then` of the raw cells of `columns` (flux_csv.parse_cells),
        called off the event loop with the parsing when the answer is big."""
        text = await self._flux_text(query, params)

        def parse(text: str) -> T:
            rows = parse_cells(text, columns)
            if '"' in text:
                rows = [tuple(_unquoted(v) for v in row) for row in rows]
            return then(rows)

        return await self._parse(text, parse)

    async def _flux_text(self, query: str, params: dict[str, Any]) -> str:
        try:
            return await self.client.query_api().query_raw(query, org=self.cfg.org,
                                                           params=params)
        except TRANSPORT_ERRORS as err:
            raise self.unavailable(translate(err, "query")) from err

    async def _parse(self, text: str, parse: Callable[[str], T]) -> T:
        # A big answer (a month of stops: seconds) is parsed off the event loop.
        try:
            return (parse(text) if len(text) < PARSE_INLINE_CHARS
                    else await asyncio.to_thread(parse, text))
        except FluxQueryError as err:  # failed while running (a timeout, influxd's memory)
            raise self.unavailable(StoreUnavailable(f"query: {err}")) from err


# Flux's CSV turns "\n" in strings into "\r\n"; undo it. Rows end in "\r\n" too, but only
# a quoted cell can hold a line break.
def _unquoted(value: Any) -> Any:
    if isinstance(value, str) and "\r\n" in value:
        return value.replace("\r\n", "\n")
    return value
