#!/usr/bin/env python3
"""Give linemon its own scoped InfluxDB tokens, so it never holds the operator token.

Run once after InfluxDB is onboarded (the compose `influx-tokens` service does it at every
`up`; on Kubernetes or a plain server run it by hand). Idempotent: a token file that still
matches an active token is kept; `--rotate` makes new ones and revokes the old.

  writer  read+write on both linemon buckets, read on the org: the single process and the
          engines (they write, downsample, and in single-process mode also answer history)
  reader  read on both buckets and the org: `linemon run --role api`, Grafana, reports

It also creates the buckets with their retention, because a scoped token cannot.
Only the standard library: it runs in the linemon image and on any host with Python 3.9+.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DESCRIPTIONS = {"writer": "linemon writer", "reader": "linemon reader"}


class InfluxError(RuntimeError):
    pass


class Influx:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
             ok: tuple[int, ...] = (200, 201, 204)) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Token {self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        if status not in ok:
            detail = raw[:300].decode(errors="replace")
            raise InfluxError(f"{method} {path}: HTTP {status}: {detail}")
        return json.loads(raw) if raw else None

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=3) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as err:
                last = str(err)
            time.sleep(1)
        raise InfluxError(f"{self.url}/health did not answer within {timeout_s:.0f}s ({last})")


def ensure_bucket(influx: Influx, org_id: str, name: str, days: int) -> str:
    # influxd answers a name filter without a match with 404, not an empty list.
    found = influx.call("GET", "/api/v2/buckets", query={"orgID": org_id, "name": name},
                        ok=(200, 404))
    if found and found.get("buckets"):
        return str(found["buckets"][0]["id"])
    created = influx.call("POST", "/api/v2/buckets", {
        "orgID": org_id, "name": name,
        "retentionRules": [{"type": "expire", "everySeconds": days * 86_400}]})
    print(f"created bucket {name} (retention {days} days)", file=sys.stderr)
    return str(created["id"])


def permissions(role: str, org_id: str, bucket_ids: list[str]) -> list[dict[str, Any]]:
    actions = ("read", "write") if role == "writer" else ("read",)
    perms: list[dict[str, Any]] = [
        {"action": action, "resource": {"type": "buckets", "id": bid, "orgID": org_id}}
        for bid in bucket_ids for action in actions]
    # linemon looks its org up by name on start.
    perms.append({"action": "read", "resource": {"type": "orgs", "id": org_id}})
    return perms


def write_secret(path: Path, value: str) -> None:
    """Atomically, readable by the owner and group only (the app runs in that group)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o440)
        with os.fdopen(fd, "w") as out:
            out.write(value)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def provision(influx: Influx, args: argparse.Namespace) -> dict[str, str]:
    orgs = influx.call("GET", "/api/v2/orgs", query={"org": args.org}, ok=(200, 404))
    if not orgs or not orgs.get("orgs"):
        raise InfluxError(f"organization {args.org!r} not found; is InfluxDB onboarded?")
    org_id = str(orgs["orgs"][0]["id"])
    bucket_ids = [ensure_bucket(influx, org_id, args.bucket, args.retention_days),
                  ensure_bucket(influx, org_id, args.downsampled_bucket,
                                args.downsampled_retention_days)]
    auths = influx.call("GET", "/api/v2/authorizations", query={"orgID": org_id})
    auths = auths.get("authorizations", []) if auths else []
    written: dict[str, str] = {}
    for role in ("writer", "reader"):
        path = args.out_dir / f"{role}.token"
        description = DESCRIPTIONS[role]
        ours = [a for a in auths if a.get("description") == description]
        current = path.read_text().strip() if path.is_file() else ""
        keep = next((a for a in ours if current and a.get("token") == current
                     and a.get("status") == "active"), None)
        if keep is not None and not args.rotate:
            wanted = _perm_set(permissions(role, org_id, bucket_ids))
            if _perm_set(keep.get("permissions", [])) == wanted:
                written[role] = "kept"
                continue
        created = influx.call("POST", "/api/v2/authorizations", {
            "orgID": org_id, "description": description,
            "permissions": permissions(role, org_id, bucket_ids)})
        write_secret(path, created["token"])
        for stale in ours:  # only after the new token is safely on disk
            influx.call("DELETE", f"/api/v2/authorizations/{stale['id']}", ok=(204, 404))
        written[role] = "created"
    return written


def _perm_set(perms: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(p["action"], p["resource"]["type"], str(p["resource"].get("id"))) for p in perms}


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=env("INFLUX_URL", "http://influxdb:8086"))
    p.add_argument("--org", default=env("INFLUX_ORG", "plant"))
    p.add_argument("--operator-token-file", type=Path, default=Path(
        env("INFLUX_OPERATOR_TOKEN_FILE", "/run/secrets/influx_admin_token")))
    p.add_argument("--bucket", default=env("INFLUX_BUCKET", "linemon"))
    p.add_argument("--retention-days", type=int, default=int(env("INFLUX_RETENTION_DAYS", "30")))
    p.add_argument("--downsampled-bucket", default=env("INFLUX_DOWNSAMPLED_BUCKET", "linemon_1m"))
    p.add_argument("--downsampled-retention-days", type=int,
                   default=int(env("INFLUX_DOWNSAMPLED_RETENTION_DAYS", "730")))
    p.add_argument("--out-dir", type=Path, default=Path(env("TOKEN_DIR", "/run/linemon/tokens")),
                   help="writer.token and reader.token go here")
    p.add_argument("--wait-s", type=float, default=float(env("INFLUX_WAIT_S", "120")))
    p.add_argument("--rotate", action="store_true", help="new tokens; the old ones are revoked")
    args = p.parse_args(argv)
    try:
        operator_token = args.operator_token_file.read_text().strip()
    except OSError as err:
        print(f"error: operator token: {err}", file=sys.stderr)
        return 2
    influx = Influx(args.url, operator_token)
    try:
        influx.wait_healthy(args.wait_s)
        result = provision(influx, args)
    except (InfluxError, urllib.error.URLError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for role, what in result.items():
        print(f"{role} token {what}: {args.out_dir / (role + '.token')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
