"""What a replayed log identifies: cells by ESS, rows the logging could draw, outcome ranges."""

from __future__ import annotations

import numpy as np
import pytest

from stopbandit.controller.config import ConfigError, load_config
from stopbandit.controller.replay.settings import ReplaySettings
from stopbandit.controller.replay.support import ranges, support


def test_cells_below_min_ess_and_never_observed_cells_are_unidentified(log, config):
    """Conftest's log: every (segment, arm) cell was played once or twice (ESS <= 2)."""
    strict = support(log, ReplaySettings(), config.reward, None)
    assert not strict.cells[False].any()
    loose = support(log, ReplaySettings(min_ess=0.0), config.reward, None)
    assert loose.cells[False].all()
    # Segment a: r1 at 0.5 (1/0.25 = 4), r2 and r6 at 1 (1/0.75, 1/1): ESS (4/3 + 1)^2 / (16/9 + 1).
    a = log.segments.index("a")
    assert loose.ess[False][a, 1] == pytest.approx((4 / 3 + 1) ** 2 / (16 / 9 + 1))


def test_rows_whose_pmf_excluded_an_arm_are_not_drawable(log, config):
    """The fallback row r6 had a pmf of 0 at 0.5; every other row could draw both arms."""
    found = support(log, ReplaySettings(min_ess=0.0), config.reward, None)
    assert found.rows[False].sum(axis=0).tolist() == [4, 5]
    mask = found.mask(traced=False, row_support=True, segment=log.segment, rows=None)
    assert mask[:, 0].tolist() == [True, True, True, True, False]


def test_ranges_are_the_configured_bounds_or_the_observed_tokens(log, config):
    """Tokens 50-400 in the log (segments of < 30 rows take the log's); reward from the ends."""
    observed = ranges(log, ReplaySettings(), config.reward)
    assert observed["tokens"][0].tolist() == [50.0, 50.0]
    assert observed["tokens"][1].tolist() == [400.0, 400.0]
    assert observed["reward"][0].tolist() == [-4.0, -4.0]  # 2·0 - 0.01·400
    assert observed["reward"][1].tolist() == [1.5, 1.5]  # 2·1 - 0.01·50
    configured = ranges(log, ReplaySettings(token_bounds=(0, 1000)), config.reward)
    assert configured["reward"][0].tolist() == [-10.0, -10.0]
    assert np.all(configured["em"][1] == 1.0)


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        ({"token_bounds": [500, 100]}, "low 500.0 is above high 100.0"),
        ({"token_bounds": [-1, 100]}, "tokens cannot be negative"),
        ({"min_ess": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_replay_settings_name_the_field_and_the_reason(section, reason):
    """The config section is validated once, with the field named."""
    with pytest.raises(ConfigError, match=reason) as error:
        load_config(None, replay=section)
    assert error.value.errors[0][0].startswith("replay")
