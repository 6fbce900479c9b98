"""Run the production server: Aegra serving the project's graphs on PostgreSQL with the Redis broker.

:func:`serve` checks what the server depends on (API keys, PostgreSQL, Redis, the model endpoint), writes the
Aegra config (:mod:`scale_graph.server.config`), and runs Aegra under uvicorn *in this process* behind the
:class:`~scale_graph.server.guard.Guard` with its gate closed. Once the server listens, the self-check
(:mod:`scale_graph.server.selfcheck`) proves that authentication is really enforced; only then does the gate
open. A failed check stops the server and exits non-zero, before any other request was served.

One process is the whole server, so ``kill -9`` of the ``scale serve`` process kills the server; its runs were
queued in Redis and leased in PostgreSQL, and a restarted server (or another one on the same database)
takes them up again from their last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from scale_graph.checkpoint import CheckpointerError, ensure_postgres_database, redact
from scale_graph.context import Context
from scale_graph.server import selfcheck, tenancy
from scale_graph.server.auth import ApiKeyConfigError, configured_entries, configured_keys, identify
from scale_graph.server.config import (
    DEFAULT_AUTH,
    LIMITS,
    PACKAGED_GRAPHS,
    ServerLimits,
    ServerSettings,
    aegra_config,
    aegra_environment,
)
from scale_graph.server.guard import Gate, Guard

STOP_TIMEOUT = 30.0
"""Seconds to wait for the server to stop after a failed start."""


class ServeError(RuntimeError):
    """The server cannot start safely; the message says why."""


def say(message: str) -> None:
    """A line for the operator, on stderr (the server's own log goes to stdout)."""
    print(f"scale serve: {message}", file=sys.stderr, flush=True)


def serve(settings: ServerSettings) -> int:
    """Run the server until it is stopped (SIGINT/SIGTERM); the exit code. Refuses to run unsafely."""
    try:
        limits = settings.limits or ServerLimits.from_env()
        config, probe_key = preflight(settings)
    except (ServeError, ApiKeyConfigError, CheckpointerError, ValueError) as exc:
        say(f"error: {exc}")
        return 1
    with tempfile.TemporaryDirectory(prefix="scale-serve-") as tmp:
        config_path = Path(tmp) / "aegra.json"
        config_path.write_text(json.dumps(config, indent=2))
        os.environ.update(aegra_environment(settings, config_path))
        try:
            app = aegra_app()
        except ServeError as exc:
            say(f"error: {exc}")
            return 1
        gate = Gate()
        try:
            guarded = guard(app, gate, settings, limits)
        except (ServeError, tenancy.TenancyError) as exc:
            say(f"error: {exc}")
            return 1
        return asyncio.run(_run(settings, guarded, gate, list(config["graphs"]), probe_key))


def guard(app: Any, gate: Gate, settings: ServerSettings, limits: ServerLimits) -> Guard:
    """The guard in front of Aegra, with the operator's limits, and the per-tenant model-request limit installed.

    The run settings are checked against the context schemas of the served graphs. Runs in flight are counted
    per tenant only with the built-in API-key handler (it knows which identity a key is); with another
    ``--auth`` handler that limit is off, and the log says so.
    """
    tenancy.install(tenancy.TenantSlots(limits["tenant_model_requests"]))
    runs = None
    if settings.auth == DEFAULT_AUTH:
        keys = configured_keys()
        runs = tenancy.RunLimit(limits["tenant_runs"], limits["retry_after"],
                                tenancy.RunCounter(settings.database_url), lambda headers: identify(headers, keys))
    else:
        say(f"warning: SCALE_SERVER_TENANT_RUNS is not enforced with the auth handler {settings.auth!r}")
    say("limits: " + ", ".join(f"{limit.env}={limits[name]}" for name, limit in LIMITS.items()))
    return Guard(app, max_body_bytes=settings.max_body_bytes, gate=gate, caps=limits.caps(),
                 schemas=context_schemas(), runs=runs)


def context_schemas() -> list[type]:
    """The context schemas of the graphs this package serves (Context, and BaselineContext for the baselines).

    Read from the package's graphs (:data:`~scale_graph.server.config.PACKAGED_GRAPHS`): run settings are checked
    against these schemas whatever ``--config`` serves; a graph that does not load is Aegra's to report.
    """
    import importlib

    schemas: list[type] = [Context]
    for spec in json.loads(PACKAGED_GRAPHS.read_text())["graphs"].values():
        module, _, variable = spec.partition(":")
        try:
            graph = getattr(importlib.import_module(module), variable)
        except (ImportError, AttributeError):
            continue
        schema = getattr(graph, "context_schema", None)
        if isinstance(schema, type) and schema not in schemas:
            schemas.append(schema)
    return schemas


def preflight(settings: ServerSettings) -> tuple[dict[str, Any], str | None]:
    """The Aegra config and a key for the self-check, after checking keys, PostgreSQL, Redis and the model."""
    config = aegra_config(settings)
    probe_key = configured_entries()[0][1] if settings.auth == DEFAULT_AUTH else None
    ensure_postgres_database(settings.database_url)
    check_redis(settings.redis_url)
    if base_url := os.environ.get("SCALE_BASE_URL"):
        from scale_graph.models import EndpointError, check_endpoint

        try:
            check_endpoint(base_url, os.environ.get("SCALE_API_KEY"))
        except EndpointError as exc:
            raise ServeError(str(exc)) from exc
    return config, probe_key


def check_redis(url: str) -> None:
    """:class:`ServeError` naming ``url`` when Redis does not answer a PING."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        with contextlib.closing(client):
            client.ping()
    except redis.RedisError as exc:
        raise ServeError(f"cannot reach Redis at {redact(url)} ({exc}); the broker needs it") from exc


def aegra_app() -> Any:
    """Aegra's ASGI app (imported only now: Aegra reads its settings from the environment on import)."""
    try:
        from aegra_api.main import app
    except ImportError as exc:
        raise ServeError(f"the server needs the server extra: pip install 'scale-graph[server]' ({exc})") from exc
    return app


async def _run(settings: ServerSettings, app: Guard, gate: Gate, graphs: list[str], probe_key: str | None) -> int:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                                           lifespan="on", timeout_graceful_shutdown=10))
    serving = asyncio.create_task(_serve(server))
    try:
        await _started(server, serving, settings.startup_timeout)
        passed = await asyncio.wait_for(selfcheck.verify(
            settings.url, gate_token=gate.token, auth_path=settings.auth, max_body_bytes=settings.max_body_bytes,
            graphs=graphs, key=probe_key), settings.startup_timeout)
    except (ServeError, selfcheck.SelfCheckError, TimeoutError) as exc:
        say(f"error: {exc or 'the self-check timed out'}; the server is stopped and served no request")
        await _stop(server, serving)
        await app.aclose()
        return 1
    gate.open()
    model = os.environ.get("SCALE_BASE_URL") or "the embedded model (started in this process on the first run)"
    say(f"ready on {settings.url}: graphs {', '.join(graphs)}; model {model}; PostgreSQL "
        f"{redact(settings.database_url)}; Redis broker {redact(settings.redis_url)}; durability sync")
    for line in passed:
        say(f"self-check: {line}")
    try:
        return await serving
    finally:
        await app.aclose()


async def _serve(server: Any) -> int:
    """Run the uvicorn server; its exit code (uvicorn calls ``sys.exit`` when start-up fails)."""
    try:
        await server.serve()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


async def _started(server: Any, serving: asyncio.Task[int], timeout: float) -> None:
    """Wait until uvicorn listens; :class:`ServeError` if it stopped or took longer than ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not server.started:
        if serving.done():
            raise ServeError("the server did not start (see its log above)")
        if loop.time() > deadline:
            raise ServeError(f"the server did not start within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def _stop(server: Any, serving: asyncio.Task[int]) -> None:
    server.should_exit = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(serving, STOP_TIMEOUT)
