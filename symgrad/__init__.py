"""symgrad: the command line on top of the compiler (`compiler/`), the runtime (`runtime/`) and the
benchmarks (`benchmarks/`). The compiler never imports this package, the runtime or the benchmarks.

    symgrad compile examples/digits_mlp.py        (or: python -m symgrad compile ...)
"""
from compiler import __version__

__all__ = ["__version__"]
