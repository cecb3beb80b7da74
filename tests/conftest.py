"""Shared pytest fixtures: the tiny dataset trees under tests/fixtures/ (see tests/fixtures/make_fixtures.py)."""
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """The folder holding the fixture trees (market1501/, dukemtmc/, msmt17_v1/, msmt17_v2/, veri/, synth/)."""
    return FIXTURES


@pytest.fixture
def copy_tree(tmp_path):
    """copy_tree('market1501/Market-1501-v15.09.15') -> a writable copy under tmp_path, to damage in a test."""
    def copy(rel: str) -> Path:
        return Path(shutil.copytree(FIXTURES / rel, tmp_path / Path(rel).name))
    return copy
