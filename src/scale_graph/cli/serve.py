"""``scale serve``: the production server (Aegra) for the project's graphs, with API-key authentication."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from scale_graph.server.auth import KEYS_ENV, KEYS_FILE_ENV, MIN_KEY_LENGTH
from scale_graph.server.config import DEFAULT_AUTH, ServerSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale serve``."""
    defaults = ServerSettings()
    p = sub.add_parser(
        "serve", help="run the production server (Aegra, PostgreSQL, Redis broker, API keys)",
        description="Serve SCALE and its baselines over the Agent Protocol (langgraph-sdk, RemoteGraph) "
                    "with Aegra, on PostgreSQL with the Redis broker and checkpoint durability 'sync'. Clients "
                    f"authenticate with an API key from ${KEYS_ENV} or ${KEYS_FILE_ENV} (name:key entries, "
                    f"keys of {MIN_KEY_LENGTH}+ characters). The server refuses to start unless a start-up "
                    "self-check proves that unauthenticated requests are rejected. The model endpoint is "
                    "$SCALE_BASE_URL (or --base-url); without one, the embedded model runs in the server.")
    p.add_argument("--config", type=Path, default=defaults.langgraph_json,
                   help="a langgraph.json whose graphs to serve instead of the package's own (scale, cot, "
                        "majority, inftythink); graphs as ./path/file.py:variable or package.module:variable")
    p.add_argument("--host", default=defaults.host, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=defaults.port, help=f"port (default {defaults.port})")
    p.add_argument("--database-url", default=defaults.database_url,
                   help="PostgreSQL URL (default $SCALE_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/"
                        "scale; the database is created if missing)")
    p.add_argument("--redis-url", default=defaults.redis_url,
                   help="Redis URL for the broker and job queue (default $SCALE_REDIS_URL, else "
                        "redis://127.0.0.1:6379/0)")
    p.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                   help="reject request bodies larger than this with 413 (default $SCALE_MAX_BODY_BYTES, "
                        "else 1048576)")
    p.add_argument("--base-url", help="the model endpoint the graphs call (sets $SCALE_BASE_URL)")
    p.add_argument("--model", help="the model name (sets $SCALE_MODEL)")
    p.add_argument("--auth", default=DEFAULT_AUTH,
                   help="advanced: another Aegra auth handler, module:variable or ./file.py:variable "
                        f"(default {DEFAULT_AUTH}, the API-key handler)")
    p.add_argument("--log-level", default=defaults.log_level, help="the server's log level (default INFO)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``scale serve`` until it is stopped."""
    from scale_graph.server.serve import serve

    for flag, env in ((args.base_url, "SCALE_BASE_URL"), (args.model, "SCALE_MODEL")):
        if flag:
            os.environ[env] = flag
    return serve(ServerSettings(
        langgraph_json=args.config, host=args.host, port=args.port, database_url=args.database_url,
        redis_url=args.redis_url, max_body_bytes=args.max_body_bytes, auth=args.auth, log_level=args.log_level))
