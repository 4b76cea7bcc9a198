"""Shared fixtures. Real test material lives in ../shared (or $KPRTRACK_SHARED)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_root() -> Path:
    return Path(os.environ.get("KPRTRACK_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared real-data folder; tests that need it skip with a reason where it is absent."""
    root = shared_root()
    if not (root / "data").is_dir():
        pytest.skip(f"real test material not found at {root} (set KPRTRACK_SHARED to its folder)")
    return root


def shared_file(relative: str) -> Path:
    """A file under the shared folder, or skip the calling test naming what is missing."""
    path = shared_root() / relative
    if not path.exists():
        pytest.skip(f"shared test material missing: {path} (set KPRTRACK_SHARED)")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """No test touches the user's weight cache."""
    monkeypatch.setenv("KPRTRACK_HOME", str(tmp_path_factory.mktemp("kprtrack_home")))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny forwards: with 2 threads on a busy 2-core CI box, thread hand-offs cost more than the math."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
