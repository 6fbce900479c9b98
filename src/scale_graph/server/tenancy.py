"""Per-tenant limits of the production server, so that one API key cannot starve the others.

A **tenant** is an API key's identity (``name`` of a ``name:key`` entry, see :mod:`scale_graph.server.auth`); it
is what Aegra records as a run's ``user_id``.

- **Runs in flight** (``SCALE_SERVER_TENANT_RUNS``): checked by the guard when a request would create runs.
  :class:`RunLimit` counts the tenant's runs that are ``pending`` or ``running`` in Aegra's ``runs`` table (so
  runs queued before a restart, or by another server on the same database, count too); one more than the limit
  gets ``429`` with ``Retry-After``. The guard holds a per-tenant lock from the count until Aegra has answered
  (the run row is committed by then), so one process never admits two runs into the last place.
- **Model requests in flight** (``SCALE_SERVER_TENANT_MODEL_REQUESTS``): :class:`TenantSlots` is a semaphore per
  tenant held around every model request of that tenant's runs, over all of them, before the per-endpoint slot
  (``Context.max_concurrent_requests``). A tenant at its limit waits for its own requests to finish; other
  tenants' requests do not wait behind it. :func:`install` sets it as the model client's request gate
  (:func:`scale_graph.models.client.set_request_gate`, held before the endpoint's slot) in the server process only
  (the tenant is read from the run's config, where Aegra puts the authenticated user as ``langgraph_auth_user``; a
  client cannot set it).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

ACTIVE_STATES = ("pending", "running")
"""Aegra's run states that count as in flight."""


def current_tenant() -> str | None:
    """The identity of the user whose run is executing here (None outside a server run)."""
    from langgraph.config import get_config

    try:
        config = get_config()
    except RuntimeError:  # not inside a graph run
        return None
    user = (config.get("configurable") or {}).get("langgraph_auth_user")
    identity = user.get("identity") if isinstance(user, Mapping) else getattr(user, "identity", None)
    return identity if isinstance(identity, str) and identity else None


class TenantSlots:
    """At most ``limit`` model requests in flight per tenant (requests outside a tenant's run are not limited)."""

    def __init__(self, limit: int, tenant: Callable[[], str | None] = current_tenant) -> None:
        self.limit = limit
        self.tenant = tenant
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
            weakref.WeakKeyDictionary())
        self._sync: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        """The most requests each tenant had in flight at once (for checks and the log)."""

    def _enter(self, tenant: str) -> None:
        with self._lock:
            self.in_flight[tenant] += 1
            self.peak[tenant] = max(self.peak[tenant], self.in_flight[tenant])

    def _leave(self, tenant: str) -> None:
        with self._lock:
            self.in_flight[tenant] -= 1

    @asynccontextmanager
    async def ahold(self) -> AsyncIterator[None]:
        """Hold one of the current tenant's slots for a request (waiting, in order, while it has none free)."""
        tenant = self.tenant()
        if tenant is None:
            yield
            return
        with self._lock:
            slots = self._async.setdefault(asyncio.get_running_loop(), {})
            slot = slots.setdefault(tenant, asyncio.Semaphore(self.limit))
        async with slot:
            self._enter(tenant)
            try:
                yield
            finally:
                self._leave(tenant)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """:meth:`ahold` for a model call made from a thread."""
        tenant = self.tenant()
        if tenant is None:
            yield
            return
        with self._lock:
            slot = self._sync.setdefault(tenant, threading.BoundedSemaphore(self.limit))
        with slot:
            self._enter(tenant)
            try:
                yield
            finally:
                self._leave(tenant)


class TenancyError(RuntimeError):
    """The per-tenant limit cannot be installed: another request gate is already set in this process."""


def install(slots: TenantSlots) -> None:
    """Make every model request of this process hold a tenant slot (then the endpoint's slot, as before).

    Sets ``slots.ahold`` as the model client's request gate. Installing again replaces the slots of an earlier
    install; :class:`TenancyError` when a gate that is not a tenant limit is set (it would be dropped silently),
    so the server refuses to start rather than lose a limit.
    """
    from scale_graph.models import client

    current = client.request_gate()
    if current is not None and not isinstance(getattr(current, "__self__", None), TenantSlots):
        raise TenancyError(f"cannot limit model requests per tenant: another request gate is set ({current!r})")
    client.set_request_gate(slots.ahold)


def uninstall() -> None:
    """Undo :func:`install` (for tests): no request gate."""
    from scale_graph.models import client

    if isinstance(getattr(client.request_gate(), "__self__", None), TenantSlots):
        client.set_request_gate(None)


class RunLimit:
    """How many runs each tenant may have in flight, and how to count them."""

    def __init__(self, limit: int, retry_after: int, count: Callable[[str], Awaitable[int]],
                 tenant_of: Callable[[Mapping[bytes, bytes]], str | None]) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.count = count
        """The tenant's runs in flight now."""
        self.tenant_of = tenant_of
        """The tenant a request's headers authenticate as (None: not one of ours; Aegra answers it)."""
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, tenant: str) -> asyncio.Lock:
        """The lock that serialises the tenant's run creation in this process."""
        return self._locks.setdefault(tenant, asyncio.Lock())


class RunCounter:
    """Counts a tenant's runs in flight in Aegra's ``runs`` table (a small connection pool, opened on first use)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def __call__(self, tenant: str) -> int:
        """The tenant's runs that are pending or running."""
        pool = await self._open()
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT count(*) FROM runs WHERE user_id = %s AND status = ANY(%s)",
                                        (tenant, list(ACTIVE_STATES)))
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _open(self) -> Any:
        async with self._opening:
            if self._pool is None:
                from psycopg_pool import AsyncConnectionPool

                pool = AsyncConnectionPool(self.database_url, min_size=1, max_size=4, open=False,
                                           kwargs={"autocommit": True})
                await pool.open(wait=True, timeout=30)
                self._pool = pool
        return self._pool

    async def close(self) -> None:
        """Close the pool (if it was opened)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
