"""The API-key handler: key configuration, header parsing as Aegra hands it over, and the Auth handler itself."""

from __future__ import annotations

import pytest
from langgraph_sdk import Auth

from scale_graph.server import auth

KEY = "k" * 24
OTHER = "o" * 24


def test_keys_are_named_or_derived_and_validated() -> None:
    keys = auth.parse_keys([f"alice:{KEY}", OTHER, " "])
    assert keys[0] == ("alice", KEY)
    assert keys[1][0].startswith("key-") and keys[1][1] == OTHER
    with pytest.raises(auth.ApiKeyConfigError, match="shorter than 16"):
        auth.parse_keys(["bob:short"])
    with pytest.raises(auth.ApiKeyConfigError, match="twice"):
        auth.parse_keys([KEY, f"x:{KEY}"])


def test_keys_come_from_the_environment_or_a_file(tmp_path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# team keys\nalice:{KEY}\n\nbob:{OTHER}  # rotated monthly\n")
    loaded = auth.load_keys({auth.KEYS_FILE_ENV: str(keys_file)})
    assert sorted(loaded.values()) == ["alice", "bob"]
    assert KEY.encode() not in b"".join(loaded)  # only digests are held
    assert list(auth.load_keys({auth.KEYS_ENV: f"carol:{KEY}"}).values()) == ["carol"]
    with pytest.raises(auth.ApiKeyConfigError, match="no API keys"):
        auth.load_keys({})
    with pytest.raises(auth.ApiKeyConfigError, match="cannot read"):
        auth.load_keys({auth.KEYS_FILE_ENV: str(tmp_path / "missing")})


@pytest.mark.parametrize(("headers", "identity"), [
    ({"authorization": f"Bearer {KEY}"}, "alice"),            # Aegra: lowercase names
    ({"Authorization": f"bearer {KEY}"}, "alice"),            # any case
    ({"x-api-key": KEY}, "alice"),                             # langgraph-sdk / RemoteGraph api_key=
    ({b"authorization": f"Bearer {KEY}".encode()}, "alice"),  # LangGraph's own server: bytes
    ({}, None),
    ({"authorization": f"Basic {KEY}"}, None),
    ({"authorization": "Bearer wrong-key-of-some-length"}, None),
    ({"x-api-key": ""}, None),
])
def test_identify(headers, identity) -> None:
    assert auth.identify(headers, auth.load_keys({auth.KEYS_ENV: f"alice:{KEY}"})) == identity


async def test_the_handler_rejects_with_401_and_accepts_a_key(monkeypatch) -> None:
    monkeypatch.setenv(auth.KEYS_ENV, f"alice:{KEY}")
    auth.configured_keys.cache_clear()
    try:
        user = await auth.authenticate({"authorization": f"Bearer {KEY}", "host": "127.0.0.1"})
        assert user["identity"] == "alice" and user["is_authenticated"] is True
        for headers in ({}, {"authorization": f"Bearer {OTHER}"}):
            with pytest.raises(Auth.exceptions.HTTPException) as caught:
                await auth.authenticate(headers)
            assert caught.value.status_code == 401
    finally:
        auth.configured_keys.cache_clear()
    assert isinstance(auth.auth, Auth) and auth.auth._authenticate_handler is not None
