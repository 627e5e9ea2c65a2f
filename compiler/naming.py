"""Moved to compiler/emit/naming.py; kept so that `from compiler import naming` still works."""
from .emit.naming import RESERVED, Namer, adjoint, ident, op_name, temp_name, value_names

__all__ = ["RESERVED", "Namer", "adjoint", "ident", "op_name", "temp_name", "value_names"]
