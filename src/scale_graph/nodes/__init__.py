"""One module per SCALE stage. Each node is a small function of (state, runtime) → state update.

The nodes that call the model (decompose, select, assess, solve_fast, solve_deep) are ``async def`` and await
:func:`~scale_graph.models.acall_model` or :func:`~scale_graph.models.acall_json`. The graphs add them through
:func:`scale_graph.graph.async_nodes.async_node`, which also runs them under the sync API.

Nodes know the state, the prompts and the models; never the CLI, the server or the evaluation harness.
"""

from scale_graph.nodes.assess import assess, plan_assessments
from scale_graph.nodes.decompose import decompose, plan_decompositions
from scale_graph.nodes.finalize import finalize
from scale_graph.nodes.route import next_step, route, select_mode
from scale_graph.nodes.select import select
from scale_graph.nodes.solve import solve_deep, solve_fast, solve_messages
from scale_graph.nodes.start import start

__all__ = [
    "assess",
    "decompose",
    "finalize",
    "next_step",
    "plan_assessments",
    "plan_decompositions",
    "route",
    "select",
    "select_mode",
    "solve_deep",
    "solve_fast",
    "solve_messages",
    "start",
]
