"""Graph builders: one per method. Each is exported uncompiled (``build_*``) and compiled (``graph``)."""

from scale_graph.graph.scale import build_scale_graph, compile_scale_graph

__all__ = ["build_scale_graph", "compile_scale_graph"]
