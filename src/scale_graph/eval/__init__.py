"""The evaluation harness: data sets, the resumable runner, the paper's metrics, reports, plots, traces.

It drives the graphs only through their public interface (``graph.methods.METHODS``, ``invoke``, the output
schemas) and grades with :mod:`scale_graph.grading`.
"""
