"""The production server's settings, and the Aegra configuration and environment derived from them.

The graphs come from a ``langgraph.json``: by default the one shipped in the package (``server/langgraph.json``,
module paths, so an installed package serves without a checkout; the same graphs as the checkout's root
``langgraph.json``, which ``langgraph dev`` serves), or the one ``--config`` names. ``scale serve``
adds the parts Aegra needs for production and writes the result to a private file for the server's lifetime:
the auth handler, checkpoint durability ``sync``, PostgreSQL, and the Redis broker.

Settings default from the environment (flags of ``scale serve`` win):

============================== ===================================================
``SCALE_DATABASE_URL``         PostgreSQL for threads, runs and checkpoints
                               (default ``postgresql://postgres@127.0.0.1:5432/scale``; created if missing)
``SCALE_REDIS_URL``            Redis for the broker and the job queue (default ``redis://127.0.0.1:6379/0``)
``SCALE_MAX_BODY_BYTES``       largest request body accepted (default 1 MiB)
``SCALE_SERVER_API_KEYS``      the API keys (see :mod:`scale_graph.server.auth`)
``SCALE_SERVER_MAX_*``,        what clients may set, what one tenant may use at once, and how many runs this
``SCALE_SERVER_TENANT_*``      process executes at once (``SCALE_SERVER_CONCURRENT_RUNS``, default 30):
                               :data:`LIMITS`, :class:`ServerLimits`
============================== ===================================================

Several ``scale serve`` processes on one PostgreSQL database and one Redis are one server: Aegra queues every run
in Redis (the queue key is derived from the database name, so they share it), any process pops it, leases it in
PostgreSQL and heartbeats the lease while it runs; a process that dies stops heartbeating, and the lease reaper of
any live process re-queues its runs, which resume from their last checkpoint (docs/deploy.md, "Scale-out").
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scale_graph.baselines.context import BaselineContext
from scale_graph.checkpoint import DURABILITY

DEFAULT_AUTH = "scale_graph.server.auth:auth"
"""The API-key handler (module form, so it does not depend on the working directory)."""
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/scale"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MAX_BODY_BYTES = 1 << 20
PACKAGED_GRAPHS = Path(__file__).with_name("langgraph.json")
"""The graphs this package serves (package data, module paths), so ``scale serve`` needs no checkout."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Limit:
    """One operator-set limit: its environment variable, default, and the Context fields it caps (if any)."""

    env: str
    default: int
    fields: tuple[str, ...] = ()
    """Context fields a client may set up to this value (422 above it)."""
    what: str = ""


LIMITS: dict[str, Limit] = {
    "max_candidates": Limit("SCALE_SERVER_MAX_CANDIDATES", 16, ("candidates",), "k, decompositions per run"),
    "max_samples": Limit("SCALE_SERVER_MAX_SAMPLES", 16, ("samples",), "majority baseline: samples per run"),
    "max_rounds": Limit("SCALE_SERVER_MAX_ROUNDS", 8, ("rounds",), "inftythink baseline: rounds per run"),
    "max_subproblems": Limit("SCALE_SERVER_MAX_SUBPROBLEMS", 20, ("max_subproblems",),
                             "sub-problems a decomposition keeps"),
    "max_content_retries": Limit("SCALE_SERVER_MAX_CONTENT_RETRIES", 3, ("content_retries",),
                                 "extra tries for an unusable reply"),
    "max_tokens_per_call": Limit("SCALE_SERVER_MAX_TOKENS_PER_CALL", 32768,
                                 ("system1_max_tokens", "system2_max_tokens", "control_max_tokens",
                                  "round_max_tokens"), "completion budget of one model call"),
    "max_tokens_per_problem": Limit("SCALE_SERVER_MAX_TOKENS_PER_PROBLEM", 1_000_000, ("max_tokens_per_problem",),
                                    "a run's token budget"),
    "max_seconds_per_problem": Limit("SCALE_SERVER_MAX_SECONDS_PER_PROBLEM", 3600, ("max_seconds_per_problem",),
                                     "a run's time budget (seconds)"),
    "max_request_timeout": Limit("SCALE_SERVER_MAX_REQUEST_TIMEOUT", 600, ("request_timeout",),
                                 "seconds to wait for one model reply"),
    "tenant_runs": Limit("SCALE_SERVER_TENANT_RUNS", 8, (), "runs in flight (pending or running) per tenant; "
                         "more get 429 with Retry-After"),
    "tenant_model_requests": Limit("SCALE_SERVER_TENANT_MODEL_REQUESTS", 8, ("max_concurrent_requests",),
                                   "model requests in flight per tenant, over all its runs; more wait"),
    "retry_after": Limit("SCALE_SERVER_RETRY_AFTER", 5, (), "the Retry-After (seconds) of a 429"),
    "concurrent_runs": Limit("SCALE_SERVER_CONCURRENT_RUNS", 30, (), "runs this server process executes at once "
                             "(Aegra's WORKER_COUNT x N_JOBS_PER_WORKER, default 3 x 10); more wait in the Redis "
                             "queue for a free place on any server of the database"),
}
"""Every operator limit of ``scale serve`` (docs/serving.md lists them): what clients may set, what one tenant may
use at once, and what this process executes at once. Each is at least 1; a limit on Context fields is at least
each field's default, so a run that sets nothing is always accepted."""


class LimitsError(ValueError):
    """An operator limit cannot be used; the message names the variable."""


@dataclass(frozen=True)
class ServerLimits:
    """The limits in force (:data:`LIMITS` read from the environment)."""

    values: Mapping[str, int]

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerLimits:
        """The limits from ``environ`` (default: the process's), defaults for those unset."""
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        defaults = {f.name: f.default for f in fields(BaselineContext)}  # SCALE's fields and the baselines'
        for name, limit in LIMITS.items():
            raw = env.get(limit.env, "").strip()
            try:
                value = int(raw) if raw else limit.default
            except ValueError:
                raise LimitsError(f"{limit.env}={raw!r} is not a whole number") from None
            if value < 1:
                raise LimitsError(f"{limit.env}={value} must be at least 1")
            for capped in limit.fields:
                default = defaults.get(capped)
                if isinstance(default, int | float) and value < default:
                    raise LimitsError(f"{limit.env}={value} is below the default {capped} ({default:g}), so a run "
                                      "that sets nothing would be refused; raise it")
            values[name] = value
        return cls(values)

    def caps(self) -> dict[str, tuple[int, str]]:
        """Context field → (the most a client may set, the variable that says so)."""
        return {f: (self.values[name], limit.env) for name, limit in LIMITS.items() for f in limit.fields}


@dataclass
class ServerSettings:
    """How ``scale serve`` runs Aegra."""

    langgraph_json: Path = PACKAGED_GRAPHS
    """The LangGraph config whose ``graphs`` are served (default: the package's own, :data:`PACKAGED_GRAPHS`)."""
    host: str = "127.0.0.1"
    port: int = 2026
    database_url: str = field(default_factory=lambda: _env("SCALE_DATABASE_URL", DEFAULT_DATABASE_URL))
    redis_url: str = field(default_factory=lambda: _env("SCALE_REDIS_URL", DEFAULT_REDIS_URL))
    max_body_bytes: int = field(
        default_factory=lambda: int(_env("SCALE_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))))
    auth: str = DEFAULT_AUTH
    """The auth handler Aegra loads: ``module:variable`` or ``./file.py:variable``."""
    limits: ServerLimits | None = None
    """What clients may set, and what one tenant may use at once (None: :meth:`ServerLimits.from_env`, read when
    the server starts, so a bad variable stops ``scale serve`` and no other command)."""
    startup_timeout: float = 120.0
    """Seconds allowed for migrations, start-up and the self-check."""
    log_level: str = "INFO"

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def redis_prefix(self) -> str:
        """Namespace of the server's Redis keys: servers on one database share a queue, others never do."""
        return f"scale:{urlsplit(self.database_url).path.lstrip('/') or 'postgres'}:"


def read_graphs(langgraph_json: Path) -> dict[str, Any]:
    """The ``graphs`` and ``dependencies`` of ``langgraph.json``, with paths made absolute."""
    try:
        config = json.loads(langgraph_json.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {langgraph_json} ({exc.strerror}): pass --config "
                         "PATH/langgraph.json, or no --config to serve the package's own graphs") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{langgraph_json} is not valid JSON: {exc}") from exc
    base = langgraph_json.resolve().parent
    graphs = config.get("graphs") or {}
    if not graphs:
        raise ValueError(f"{langgraph_json} defines no graphs")

    def absolute(spec: str) -> str:
        path, _, export = spec.partition(":")
        if "/" not in path and not path.endswith(".py"):  # module syntax, as langgraph-api reads it
            return f"{module_file(path, langgraph_json)}:{export}"
        return f"{(base / path).resolve()}:{export}"

    return {
        "graphs": {name: absolute(spec if isinstance(spec, str) else spec["path"]) for name, spec in graphs.items()},
        "dependencies": [str((base / dep).resolve()) for dep in config.get("dependencies", [])],
    }


def module_file(module: str, langgraph_json: Path) -> Path:
    """The file of an importable module (Aegra loads graphs from files; langgraph.json may name modules)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"{langgraph_json}: cannot import the graph module {module!r} ({exc})") from exc
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"{langgraph_json}: no Python module {module!r} is installed (a graph is "
                         "'package.module:variable' or './path/file.py:variable')")
    return Path(spec.origin).resolve()


def auth_path(spec: str) -> str:
    """``spec`` with a file path made absolute (against the working directory, where the user gave it)."""
    location, _, variable = spec.rpartition(":")
    if location.endswith(".py") or location.startswith(("./", "../")):
        return f"{Path(location).resolve()}:{variable}"
    return spec


def aegra_config(settings: ServerSettings) -> dict[str, Any]:
    """The Aegra config: the project's graphs plus the auth handler and checkpoint durability."""
    return {
        **read_graphs(settings.langgraph_json),
        "auth": {"path": auth_path(settings.auth)},
        "checkpointer": {"durability": DURABILITY},
    }


def aegra_environment(settings: ServerSettings, config_path: Path) -> dict[str, str]:
    """The environment Aegra reads its settings from (it reads them once, when first imported).

    The runs executed at once (``SCALE_SERVER_CONCURRENT_RUNS``) are one worker loop with that many places, so the
    figure is exact (Aegra's ``WORKER_COUNT`` loops of ``N_JOBS_PER_WORKER`` places each would round it).
    """
    limits = settings.limits or ServerLimits.from_env()
    return {
        "AEGRA_CONFIG": str(config_path),
        "DATABASE_URL": settings.database_url,
        "REDIS_BROKER_ENABLED": "true",
        "REDIS_URL": settings.redis_url,
        "REDIS_CHANNEL_PREFIX": settings.redis_prefix + "run:",
        "WORKER_QUEUE_KEY": settings.redis_prefix + "jobs",
        "WORKER_COUNT": "1",
        "N_JOBS_PER_WORKER": str(limits["concurrent_runs"]),
        "AEGRA_CHECKPOINT_DURABILITY": DURABILITY,
        "HOST": settings.host,
        "PORT": str(settings.port),
        "LOG_LEVEL": settings.log_level,
        "AUTH_TYPE": "custom",
    }
