"""The `replay` config section: when an arm counts as barely observed, and the outcomes' range.

    replay:
      min_ess: 30            # a (segment, arm) cell with a smaller ESS is bounded, not estimated
      em_bounds: [0, 1]      # the range of a mean EM on an unobserved arm
      token_bounds: null     # [low, high] tokens; default: the range the log observed
      warnings_shown: 3      # warnings printed per policy; the rest are counted

`controller.ope.bounds` says what the bounds are and why.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stopbandit.controller.ope.bounds import DEFAULT_MIN_ESS

_Finite = Annotated[float, Field(allow_inf_nan=False)]


class ReplaySettings(BaseModel):
    """How replay tells estimates from bounds, and how many warnings it shows.

    Attributes:
        min_ess: The least effective sample size of a (segment, arm) cell's
            observation weights for the cell's outcomes to be estimated; a
            target's mass on a cell below it gets partial-identification bounds.
        em_bounds: The lowest and highest mean EM an arm can have.
        token_bounds: The same for tokens; None for the range the log observed
            (every played and traced outcome).
        warnings_shown: How many warnings the table and the report show per
            policy, most important first; the JSON document keeps them all.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_ess: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = DEFAULT_MIN_ESS
    em_bounds: tuple[_Finite, _Finite] = (0.0, 1.0)
    token_bounds: tuple[_Finite, _Finite] | None = None
    warnings_shown: Annotated[int, Field(ge=0)] = 3

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        for name in ("em_bounds", "token_bounds"):
            pair = getattr(self, name)
            if pair is not None and pair[0] > pair[1]:
                raise ValueError(f"{name}: low {pair[0]} is above high {pair[1]}")
        if self.token_bounds is not None and self.token_bounds[0] < 0.0:
            raise ValueError("token_bounds: tokens cannot be negative")
        return self
