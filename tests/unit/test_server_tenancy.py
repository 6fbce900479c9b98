"""Per-tenant model requests in flight: one tenant waits for its own requests, never for another tenant's."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest
from langchain_core.runnables.config import var_child_runnable_config

from scale_graph.context import Context
from scale_graph.models import acall_model, build_profiles, client, messages_for
from scale_graph.models.chat import aclose_chat_models
from scale_graph.server import tenancy
from scale_graph.server.tenancy import TenantSlots, current_tenant
from scale_graph.testing import FakeOpenAIServer, Reply


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


async def test_install_sets_the_tenant_slot_as_the_model_clients_request_gate(installed) -> None:
    before = client.aendpoint_slot
    tenancy.install(installed)  # twice: still one gate, the tenant slot
    assert client.aendpoint_slot is before  # the client's functions are not replaced or wrapped
    assert client.request_gate() == installed.ahold
    as_tenant("alice")
    async with client.aendpoint_slot("http://x/v1", None):
        assert installed.in_flight["alice"] == 1
    async with client.aendpoint_slot("http://x/v1", 4):
        assert installed.in_flight["alice"] == 1
    assert installed.in_flight["alice"] == 0 and installed.peak["alice"] == 1


async def test_a_model_request_holds_the_tenant_slot_then_the_endpoint_slot(installed) -> None:
    """Through the real client: a second request of the same tenant waits for the first; another tenant's does
    not, and the endpoint slot is taken only once the tenant slot is held."""
    with FakeOpenAIServer(lambda body: Reply(content="ok", delay=0.3)) as server:
        profile = build_profiles(Context(max_concurrent_requests=2), server.base_url, "fake-model").system1

        async def request(identity: str) -> float:
            as_tenant(identity)
            started = time.monotonic()
            await acall_model(profile, messages_for(profile, None, "x"))
            return time.monotonic() - started

        a1, a2, b = await asyncio.gather(request("a"), request("a"), request("b"))
        await aclose_chat_models()
    assert max(a1, a2) >= 0.55 and b < 0.5  # a's two requests one after the other (limit 1); b alongside
    assert installed.peak == {"a": 1, "b": 1}


def test_uninstall_removes_the_gate_and_a_foreign_gate_is_not_replaced() -> None:
    tenancy.install(TenantSlots(3))
    tenancy.uninstall()
    assert client.request_gate() is None

    def other_gate():
        return contextlib.nullcontext()

    previous = client.set_request_gate(other_gate)
    try:
        with pytest.raises(tenancy.TenancyError, match="another request gate"):
            tenancy.install(TenantSlots(3))
        tenancy.uninstall()  # leaves a gate it did not set alone
        assert client.request_gate() is other_gate
    finally:
        client.set_request_gate(previous)
