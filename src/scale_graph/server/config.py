"""The production server's settings, and the Aegra configuration and environment derived from them.

The graphs come from the project's ``langgraph.json`` (the same file ``langgraph dev`` serves); ``scale serve``
adds the parts Aegra needs for production and writes the result to a private file for the server's lifetime:
the auth handler, checkpoint durability ``sync``, PostgreSQL, and the Redis broker.

Settings default from the environment (flags of ``scale serve`` win):

============================== ===================================================
``SCALE_DATABASE_URL``         PostgreSQL for threads, runs and checkpoints
                               (default ``postgresql://postgres@127.0.0.1:5432/scale``; created if missing)
``SCALE_REDIS_URL``            Redis for the broker and the job queue (default ``redis://127.0.0.1:6379/0``)
``SCALE_MAX_BODY_BYTES``       largest request body accepted (default 1 MiB)
``SCALE_SERVER_API_KEYS``      the API keys (see :mod:`scale_graph.server.auth`)
============================== ===================================================
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scale_graph.checkpoint import DURABILITY

DEFAULT_AUTH = "scale_graph.server.auth:auth"
"""The API-key handler (module form, so it does not depend on the working directory)."""
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/scale"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MAX_BODY_BYTES = 1 << 20


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass
class ServerSettings:
    """How ``scale serve`` runs Aegra."""

    langgraph_json: Path = Path("langgraph.json")
    """The project's LangGraph config: its ``graphs`` are served."""
    host: str = "127.0.0.1"
    port: int = 2026
    database_url: str = field(default_factory=lambda: _env("SCALE_DATABASE_URL", DEFAULT_DATABASE_URL))
    redis_url: str = field(default_factory=lambda: _env("SCALE_REDIS_URL", DEFAULT_REDIS_URL))
    max_body_bytes: int = field(
        default_factory=lambda: int(_env("SCALE_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))))
    auth: str = DEFAULT_AUTH
    """The auth handler Aegra loads: ``module:variable`` or ``./file.py:variable``."""
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
        raise ValueError(f"cannot read {langgraph_json} ({exc.strerror}): run `scale serve` in the project "
                         "directory or pass --config PATH/langgraph.json") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{langgraph_json} is not valid JSON: {exc}") from exc
    base = langgraph_json.resolve().parent
    graphs = config.get("graphs") or {}
    if not graphs:
        raise ValueError(f"{langgraph_json} defines no graphs")

    def absolute(spec: str) -> str:
        path, _, export = spec.partition(":")
        return f"{(base / path).resolve()}:{export}"

    return {
        "graphs": {name: absolute(spec if isinstance(spec, str) else spec["path"]) for name, spec in graphs.items()},
        "dependencies": [str((base / dep).resolve()) for dep in config.get("dependencies", [])],
    }


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
    """The environment Aegra reads its settings from (it reads them once, when first imported)."""
    return {
        "AEGRA_CONFIG": str(config_path),
        "DATABASE_URL": settings.database_url,
        "REDIS_BROKER_ENABLED": "true",
        "REDIS_URL": settings.redis_url,
        "REDIS_CHANNEL_PREFIX": settings.redis_prefix + "run:",
        "WORKER_QUEUE_KEY": settings.redis_prefix + "jobs",
        "AEGRA_CHECKPOINT_DURABILITY": DURABILITY,
        "HOST": settings.host,
        "PORT": str(settings.port),
        "LOG_LEVEL": settings.log_level,
        "AUTH_TYPE": "custom",
    }
