"""How InfluxDB's answers map to what the forwarder does (no server needed)."""

from __future__ import annotations

import pytest
from influxdb_client.rest import ApiException

from collector.historian.backends.base import (
    StoreAuthError,
    StoreRejected,
    StoreTooLarge,
    StoreUnavailable,
)
from collector.historian.backends.influx import translate


def api_error(status: int, headers: dict[str, str] | None = None) -> ApiException:
    err = ApiException(status=status, reason="x")
    err.headers = headers
    err.body = '{"code":"x","message":"because"}'
    return err


@pytest.mark.parametrize(("status", "kind"), [
    (400, StoreRejected), (422, StoreRejected), (413, StoreTooLarge), (401, StoreAuthError),
    (403, StoreAuthError), (404, StoreAuthError), (429, StoreUnavailable),
    (500, StoreUnavailable), (503, StoreUnavailable), (0, StoreUnavailable),
])
def test_http_statuses_map_to_what_the_forwarder_does(status: int, kind: type) -> None:
    err = translate(api_error(status), "write")
    assert type(err) is kind and "because" in str(err)


def test_retry_after_is_read() -> None:
    err = translate(api_error(503, {"Retry-After": "7"}), "write")
    assert isinstance(err, StoreUnavailable) and err.retry_after == 7.0
    assert translate(TimeoutError(), "write").__class__ is StoreUnavailable
