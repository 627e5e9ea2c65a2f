"""Lower the ops that reverse mode kept whole to the simpler ops they run as.

An op with a `lower` rule (conv2d) is differentiated by its own VJP, which may compute a gradient
another way than the chain rule through its pieces would (a convolution's input gradient as a
convolution, not as the adjoint of im2col). Once every adjoint exists, the op is replaced, in the
forward and in every adjoint alike, by its pieces; equal pieces (the forward's patches, which the
kernel's gradient reads too) are then one expression, which CSE computes once.
"""
from __future__ import annotations

from dataclasses import replace

from .ad import Backward
from .canonical import rebuild
from .graph import Graph
from .ops import rule_for


def lower(graph: Graph, bw: Backward) -> Backward:
    def lowered(node, graph_, line):
        rule = rule_for(node)
        return rule.lower(node, graph.shapes) if rule is not None and rule.lower is not None else None
    new = rebuild(graph, lowered, tuple(adj.expr for adj in bw.adjoints))
    adjoints = [replace(adj, expr=new.get(adj.expr, adj.expr), node=new.get(adj.node, adj.node),
                        source=None if adj.source is None else new.get(adj.source, adj.source))
                for adj in bw.adjoints]
    return Backward(adjoints, bw.grads)
