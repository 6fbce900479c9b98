"""The one error a model call raises for a transport fault, and the retry predicate the graphs use."""

from __future__ import annotations


class EndpointError(RuntimeError):
    """The model endpoint failed at the transport level (unreachable, timeout, 429/5xx, malformed body).

    ``retryable`` tells the node retry policy whether another attempt may help.
    """

    def __init__(self, url: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"model endpoint {url}: {reason}")
        self.url = url
        self.reason = reason
        self.retryable = retryable


def is_retryable(exc: BaseException) -> bool:
    """The retry predicate for model nodes: only transport faults that another try may fix."""
    return isinstance(exc, EndpointError) and exc.retryable
