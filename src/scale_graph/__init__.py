"""scale-graph: SCALE (selective test-time compute for math reasoning) as a LangGraph workflow.

Public API: :func:`solve` / :func:`asolve`, :class:`SolveResult`, :class:`Context`, and the graph builders
:func:`build_scale_graph` (uncompiled) and :func:`compile_scale_graph`.
"""

from scale_graph.api import SolveResult, asolve, solve
from scale_graph.context import Context
from scale_graph.graph.scale import build_scale_graph, compile_scale_graph
from scale_graph.problem import InvalidProblem

__all__ = ["Context", "InvalidProblem", "SolveResult", "asolve", "build_scale_graph", "compile_scale_graph", "solve"]
