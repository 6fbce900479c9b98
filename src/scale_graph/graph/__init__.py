"""Graph builders: one per method. Each is exported uncompiled (``build_*``) and compiled (``graph``).

``methods.METHODS`` names them all, including the ``all-fast`` / ``all-deep`` ablations (SCALE with τ forced).
"""

from scale_graph.graph.cot import build_cot_graph, compile_cot_graph
from scale_graph.graph.inftythink import build_inftythink_graph, compile_inftythink_graph
from scale_graph.graph.majority import build_majority_graph, compile_majority_graph
from scale_graph.graph.scale import build_scale_graph, compile_scale_graph

__all__ = [
    "build_cot_graph",
    "build_inftythink_graph",
    "build_majority_graph",
    "build_scale_graph",
    "compile_cot_graph",
    "compile_inftythink_graph",
    "compile_majority_graph",
    "compile_scale_graph",
]
