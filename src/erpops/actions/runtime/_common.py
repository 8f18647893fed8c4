"""What the runtime actions share: the environment's runtime for a step."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from erpops.actions.base import ActionContext

if TYPE_CHECKING:
    from erpops.backends.runtime import Runtime


def runtime_of(ctx: ActionContext) -> AbstractContextManager[Runtime]:
    """The environment's runtime, shared by the steps of the run (one engine client per process)."""
    from erpops.backends.runtime import shared_runtime

    return shared_runtime(ctx.env)
