"""The paper's baselines, in a room of their own: zero-shot CoT, majority voting and InftyThink.

- :mod:`~scale_graph.baselines.context`: :class:`BaselineContext`, the knobs only the baselines read.
- :mod:`~scale_graph.baselines.state`: their states and records.
- :mod:`~scale_graph.baselines.sampling`: the ``cot`` / ``majority`` nodes (sample, vote).
- :mod:`~scale_graph.baselines.inftythink`: the ``inftythink`` nodes (think, summarize, conclude).
- :mod:`~scale_graph.baselines.graphs`: the three graph builders and their compiled graphs.

They share SCALE's models, prompts, policies and grading; SCALE knows nothing of them.
"""
