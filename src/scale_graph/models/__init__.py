"""The model layer: one room per job, imported through this package's public names.

- :mod:`~scale_graph.models.profiles`: presets → the System 1 / System 2 / control :class:`ModeProfile`\\ s.
- :mod:`~scale_graph.models.endpoint`: what an endpoint says about itself (model, context length, token counts).
- :mod:`~scale_graph.models.budget`: fitting a request's completion budget into the endpoint's context.
- :mod:`~scale_graph.models.chat`: the chat model of a profile, per event loop, and the loop's connection pools.
- :mod:`~scale_graph.models.client`: :func:`acall_model`, the one helper every model call goes through (from sync
  code: ``asyncio.run(acall_model(...))``).
- :mod:`~scale_graph.models.structured`: :func:`acall_json`, JSON replies with bounded content retries.
- :mod:`~scale_graph.models.errors`: :class:`EndpointError` and the retry predicate.

Nothing here knows graphs, nodes, the CLI or the server.
"""

from scale_graph.models.client import CONTEXT_FULL, ModelReply, acall_model, messages_for
from scale_graph.models.endpoint import check_endpoint, endpoint_info, is_qwen3_hybrid, served_model_name
from scale_graph.models.errors import EndpointError, is_retryable
from scale_graph.models.profiles import ModeProfile, Profiles, build_profiles, resolve_profiles
from scale_graph.models.structured import JsonResult, acall_json

__all__ = [
    "CONTEXT_FULL",
    "EndpointError",
    "JsonResult",
    "ModeProfile",
    "ModelReply",
    "Profiles",
    "acall_json",
    "acall_model",
    "build_profiles",
    "check_endpoint",
    "endpoint_info",
    "is_qwen3_hybrid",
    "is_retryable",
    "messages_for",
    "resolve_profiles",
    "served_model_name",
]
