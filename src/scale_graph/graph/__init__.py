"""SCALE's graph and what every graph shares.

- :mod:`~scale_graph.graph.scale`: the SCALE builder (``build_scale_graph``) and its compiled ``graph``.
- :mod:`~scale_graph.eval.methods`: every method by name (SCALE, its ``all-fast``/``all-deep`` ablations and the
  baselines of :mod:`scale_graph.baselines`), for the evaluation harness and the CLI.
- :mod:`~scale_graph.graph.policies`: the transport retry and the recursion limit.
- :mod:`~scale_graph.graph.async_nodes`: how the ``async def`` model nodes also run under the sync API.

Nothing is imported here, so importing one module compiles no other graph.
"""
