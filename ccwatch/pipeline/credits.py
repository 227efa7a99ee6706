"""The credit guard (``min_credits``): reads the account's remaining credits from ``users/me``
every ``credits_check_s`` and tells the submission gate, which holds new jobs while they are low.

Reading needs the API key's ``user.read`` scope; without it the guard says so once and stays off.
A read that fails for any other reason is simply tried again at the next check.
"""

from __future__ import annotations

from loguru import logger

from ccwatch.client.api import CloudConvertClient
from ccwatch.clock import Clock
from ccwatch.errors import AccountError, CcwatchError
from ccwatch.pipeline.gate import SubmissionGate
from ccwatch.stages.context import Context


def guard(ctx: Context, gate: SubmissionGate) -> CreditGuard | None:
    """The guard for ``min_credits``, or None when it is off."""
    minimum = ctx.config.daemon.min_credits
    return CreditGuard(ctx.api, gate, ctx.clock, minimum=minimum) if minimum else None


class CreditGuard:
    def __init__(self, api: CloudConvertClient, gate: SubmissionGate, clock: Clock, *,
                 minimum: int) -> None:
        self._api = api
        self._gate = gate
        self._clock = clock
        self.minimum = minimum
        self._off = False

    def check(self) -> None:
        if self._off:
            return
        try:
            credits = self._api.me().get("credits")
        except AccountError as exc:
            self._off = True
            logger.warning("min_credits cannot be enforced: reading the account failed ({}); the "
                           "API key needs the user.read scope", exc.message)
            return
        except CcwatchError as exc:
            logger.warning("could not read the account's credits ({}); trying again later",
                           exc.message)
            return
        if isinstance(credits, int | float) and not isinstance(credits, bool):
            self._gate.credits(credits, self.minimum, wall=self._clock.wall())
