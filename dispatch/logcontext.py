"""What a log line needs to know about the request it was written in (standard library only).

The HTTP middleware (dispatch/ops.py) sets the request id; the JSON log formatter
(civicwatch/logformat.py) reads it, so every line written while serving a request carries it.
"""

from __future__ import annotations

from contextvars import ContextVar

current_request_id: ContextVar[str | None] = ContextVar("civicwatch_request_id", default=None)
