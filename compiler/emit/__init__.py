"""Emit: scheduled statements -> one readable, standalone NumPy module.

    naming.py    every name the generated code uses (leaves, `<stem>_<temp>` temporaries, d_<name>)
    inplace.py   a pass over the schedule deciding, as data, how each statement's array comes to be
    printer.py   the NumPy printer (each op prints itself)
    function.py  one function, printed from its schedule and that plan
    prologue.py  the input checks, written once per module (`_arrays`)
    module.py    the module around them: template, header numbers; render_module, render_snippet
"""
from .function import FunctionCode, emit_function
from .module import render_module, render_snippet
from .naming import value_names

__all__ = ["render_module", "render_snippet", "value_names", "emit_function", "FunctionCode"]
