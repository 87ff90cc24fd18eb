"""Where the REST API lives; apart from dispatch/http/deps.py so authentication can name it too."""

from __future__ import annotations

API_PREFIX = "/api/v1"
