"""The one error a model call raises for a transport fault, and the retry predicate the graphs use."""

from __future__ import annotations


class EndpointError(RuntimeError):
    """The model endpoint failed at the transport level.

    Unreachable, timed out, 429/5xx, a malformed body, a reply cut off or without choices, or usage that is not a
    token count. ``retryable`` tells the node retry policy whether another attempt may help; ``retry_after`` is
    the wait the server asked for (``Retry-After`` on a 429 or 503, already bounded), which the model client
    spends before it raises the error.
    """

    def __init__(self, url: str, reason: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(f"model endpoint {url}: {reason}")
        self.url = url
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


def is_retryable(exc: BaseException) -> bool:
    """The retry predicate for model nodes: only transport faults that another try may fix."""
    return isinstance(exc, EndpointError) and exc.retryable
