import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests compile into their own cache, never the user's ~/.cache/symgrad."""
    old = os.environ.get("SYMGRAD_CACHE")
    os.environ["SYMGRAD_CACHE"] = str(tmp_path_factory.mktemp("symgrad-cache"))
    yield
    if old is None:
        os.environ.pop("SYMGRAD_CACHE", None)
    else:
        os.environ["SYMGRAD_CACHE"] = old
