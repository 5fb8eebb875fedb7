from __future__ import annotations

from pathlib import Path

import pytest
from bulk_cases import small_detector


@pytest.fixture(scope="session")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real detector saved in a model folder (see bulk_cases.small_detector)."""
    return small_detector(tmp_path_factory.mktemp("det") / "detector")
