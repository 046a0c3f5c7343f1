"""Outcomes bounded to a plausible range before anything learns from them.

A schema-valid outcome may still be absurd: tokens = 2^63 - 1 is a valid
wire integer, and one of them moved its segment's mean tokens (and the `*`
fallback's, which pools every segment) past any real difference between
arms (issue 14). A request cannot generate more tokens than its model's
generation limit, so an outcome above `limits.max_tokens` is a producer
fault: it is dead-lettered with kind `range`, like any unusable event
(the daemon counts it in its dead-letter metric by kind, replay in its
invalid counts), and never clipped: a clipped value would still be learned
as the largest plausible one, which is not what the request did.

Counterfactual traces need no check of their own: the decoder already
drops a trace whose tokens exceed the outcome's (`streams.events`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stopbandit.streams.codec import InvalidEventError
from stopbandit.streams.events import Outcome

if TYPE_CHECKING:
    from stopbandit.streams.events import Event

RANGE_KIND = "range"


def check_outcome_bounds(event: Event, max_tokens: int) -> None:
    """Raise if `event` is an outcome outside the plausible range.

    Raises:
        InvalidEventError: kind `range`, naming the field and the limit.
    """
    if isinstance(event, Outcome) and event.tokens > max_tokens:
        raise InvalidEventError(
            RANGE_KIND,
            f"outcome.tokens: {event.tokens} is above limits.max_tokens ({max_tokens})",
        )
