"""Moved to compiler/emit/printer.py; kept so that `from compiler.printer import Printer` still works."""
from .emit.printer import Printer

__all__ = ["Printer"]
