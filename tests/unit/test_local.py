"""The embedded model's file handling: assembly, verification, refusal of corrupt or wrong files."""

from __future__ import annotations

import hashlib

import pytest

from scale_graph import local


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Six small part files standing in for the PyPI chunks, with the expected hash patched to match."""
    parts = []
    for i in range(1, 7):
        p = tmp_path / "parts" / f"part{i:02d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes((b"GGUF" if i == 1 else b"") + bytes([i]) * 1000)
        parts.append(p)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    monkeypatch.setattr(local, "_part_files", lambda: parts)
    monkeypatch.setattr(local, "DEFAULT_MODEL_SHA256", digest)
    monkeypatch.setenv("SCALE_CACHE_DIR", str(tmp_path / "cache"))
    return parts


def test_assembles_once_and_verifies(fake_parts, tmp_path) -> None:
    path = local.default_model_path()
    assert path == tmp_path / "cache" / local.DEFAULT_MODEL_FILE
    assert path.read_bytes() == b"".join(p.read_bytes() for p in fake_parts)
    assert not list(path.parent.glob("*.part-*"))  # no temp file left behind
    assert local.default_model_path() == path  # second call: stamp matches, no re-assembly


def test_corrupted_cache_is_refused_with_a_fix(fake_parts) -> None:
    path = local.default_model_path()
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    with pytest.raises(local.LocalModelError, match=r"corrupted.*delete it"):
        local.default_model_path()


def test_mismatching_parts_are_refused(fake_parts, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(local, "DEFAULT_MODEL_SHA256", "0" * 64)
    with pytest.raises(local.LocalModelError, match="reinstall"):
        local.default_model_path()
    assert not (tmp_path / "cache" / local.DEFAULT_MODEL_FILE).exists()


def test_missing_part_package_says_how_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SCALE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(local.LocalModelError, match=r"pip install 'scale-graph\[local\]'"):
        local.default_model_path()


def test_explicit_model_path_must_be_gguf(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SCALE_MODEL_PATH", raising=False)
    with pytest.raises(local.LocalModelError, match="does not exist"):
        local.model_path(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 10)
    with pytest.raises(local.LocalModelError, match="not a GGUF"):
        local.model_path(bad)
    good = tmp_path / "good.gguf"
    good.write_bytes(b"GGUF" + b"\0" * 10)
    assert local.model_path(good) == good
    monkeypatch.setenv("SCALE_MODEL_PATH", str(good))
    assert local.model_path() == good
