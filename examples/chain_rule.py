"""The chain rule on a DAG: e(a, b) = (a + b)(b + 1).

At a = 2, b = 1: e = 6, de/da = b + 1 = 2, de/db = (b + 1) + (a + b) = 5 (a sum over two paths).
"""
from compiler.dsl import Param

a = Param("a", (), init=2.0)
b = Param("b", (), init=1.0)

c = a + b
d = b + 1
e = c * d

loss = e
outputs = {"e": e}
