import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

import _util  # noqa: E402


@pytest.fixture(scope="session")
def ceilings():
    return _util.ceilings()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
