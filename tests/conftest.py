import os
import sys

# One BLAS thread per process, set before NumPy loads (an explicit setting in the environment wins).
# On a busy machine with few cores OpenBLAS's spinning worker threads fight the test process for
# the cores: the training tests took 3-10x longer with two threads than with one on a 2-core box
# with one other job running, and the matrices here are too small to gain from more threads.
# (runtime.distributed starts its Dask workers the same way.)
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# The numba backend's kernels compiled without LLVM's optimisations: twice as fast to compile, the
# same numbers (without fastmath no optimisation level may reorder floating-point arithmetic).
os.environ.setdefault("NUMBA_OPT", "0")

import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _limit_blas_threads_if_numpy_was_already_loaded():
    """A plugin that imported NumPy first makes the variables above too late; threadpoolctl
    (installed with scikit-learn) can still lower the thread count then."""
    if "numpy" not in sys.modules:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")


_limit_blas_threads_if_numpy_was_already_loaded()


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
