"""Per-tenant model requests in flight: one tenant waits for its own requests, never for another tenant's."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.runnables.config import var_child_runnable_config

from scale_graph.models import client
from scale_graph.server import tenancy
from scale_graph.server.tenancy import TenantSlots, current_tenant


def as_tenant(identity: str | None) -> None:
    """Run the rest of this task as if inside a graph run of ``identity`` (Aegra puts the user in the config)."""
    configurable = {"langgraph_auth_user": {"identity": identity}} if identity else {}
    var_child_runnable_config.set({"configurable": configurable})


async def test_the_tenant_is_read_from_the_run_config_not_from_client_fields() -> None:
    assert current_tenant() is None  # outside a run
    var_child_runnable_config.set({"configurable": {"user_id": "someone-else", "langgraph_auth_user": None}})
    assert current_tenant() is None  # the client-settable user_id is not trusted
    as_tenant("alice")
    assert current_tenant() == "alice"

    class User:
        identity = "bob"

    var_child_runnable_config.set({"configurable": {"langgraph_auth_user": User()}})
    assert current_tenant() == "bob"


async def test_a_tenant_at_its_limit_waits_and_another_tenant_does_not() -> None:
    slots = TenantSlots(2)

    async def request(identity: str, seconds: float) -> float:
        as_tenant(identity)
        started = time.monotonic()
        async with slots.ahold():
            await asyncio.sleep(seconds)
        return time.monotonic() - started

    flood = [asyncio.create_task(request("a", 0.2)) for _ in range(8)]  # 8 requests at a limit of 2: 4 rounds
    await asyncio.sleep(0.01)
    other = await request("b", 0.05)
    assert other < 0.15  # b did not queue behind a's requests
    waited = await asyncio.gather(*flood)
    assert max(waited) >= 0.75 and slots.peak["a"] == 2 and slots.peak["b"] == 1
    assert slots.in_flight == {"a": 0, "b": 0}


async def test_requests_outside_a_tenant_run_are_not_limited() -> None:
    slots = TenantSlots(1)
    as_tenant(None)

    async def request() -> None:
        async with slots.ahold():
            await asyncio.sleep(0.05)

    started = time.monotonic()
    await asyncio.gather(*(request() for _ in range(5)))
    assert time.monotonic() - started < 0.2


def test_the_sync_slot_limits_per_tenant_too() -> None:
    import threading

    slots = TenantSlots(1)
    order: list[str] = []

    def request(identity: str) -> None:
        as_tenant(identity)
        with slots.hold():
            order.append(f"{identity}+")
            time.sleep(0.05)
            order.append(f"{identity}-")

    threads = [threading.Thread(target=request, args=("a",)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order == ["a+", "a-"] * 3 and slots.peak["a"] == 1


@pytest.fixture
def installed():
    slots = TenantSlots(1)
    tenancy.install(slots)
    try:
        yield slots
    finally:
        tenancy.uninstall()


async def test_install_puts_the_tenant_slot_around_the_model_clients_endpoint_slot(installed) -> None:
    original = client._untenanted_aendpoint_slot
    tenancy.install(installed)  # twice: still wraps the original once
    assert client._untenanted_aendpoint_slot is original
    as_tenant("alice")
    async with client.aendpoint_slot("http://x/v1", None):
        assert installed.in_flight["alice"] == 1
    with client.endpoint_slot("http://x/v1", 4):
        assert installed.in_flight["alice"] == 1
    assert installed.in_flight["alice"] == 0 and installed.peak["alice"] == 1


def test_uninstall_restores_the_model_client() -> None:
    before = (client.endpoint_slot, client.aendpoint_slot)
    tenancy.install(TenantSlots(3))
    assert client.aendpoint_slot is not before[1]
    tenancy.uninstall()
    assert (client.endpoint_slot, client.aendpoint_slot) == before
