"""The evaluation harness: data sets, resumable runs, the paper's metrics, reports, traces, Table 1 reproduction.

It drives the graphs only through their public interface (``eval.methods.METHODS``, ``invoke``, the output
schemas) and grades with :mod:`scale_graph.grading`.
"""
