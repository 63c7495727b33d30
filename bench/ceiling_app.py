"""The ceiling for figure 5: a FastAPI app whose one route returns pre-serialized bytes.

    python -m bench.ceiling_app --port 8001 --body snapshot.json

Same framework, same uvicorn settings as `linemon run` (linemon/serve.py), in the same kind
of process; the body is a real line snapshot (the bytes GET /api/v1/lines/{line} answered),
so the only difference left is what linemon does per request (auth, the hub's snapshot
cache or a fresh serialization).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response


def build(body: bytes) -> FastAPI:
    app = FastAPI()

    @app.get("/ceiling")
    async def ceiling() -> Response:
        return Response(body, media_type="application/json")

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=Path, required=True)
    args = parser.parse_args(argv)
    server = uvicorn.Server(uvicorn.Config(  # as linemon/serve.py configures it
        build(args.body.read_bytes()), host="127.0.0.1", port=args.port, log_level="warning",
        http="httptools", lifespan="on", timeout_graceful_shutdown=5))
    server.run()


if __name__ == "__main__":
    main()
