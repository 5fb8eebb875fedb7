"""Shared fixtures: the real data in ../shared/data and small synthetic volumes."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _sessions_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions the widgets start live in a temporary folder, not the user's home."""
    from napari_avan.core.session.session import SESSIONS_ENV

    monkeypatch.setenv(SESSIONS_ENV, str(tmp_path_factory.mktemp("sessions")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real EM data beside the repository (``../shared/data``); CI has it too."""
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"real data not found at {SHARED_DATA}: check out shared/ beside the repository"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def vnc_left_dir(shared_data: Path) -> Path:
    return shared_data / "vnc_stack1_left"
