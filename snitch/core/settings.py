"""Settings shared by the host (which chooses them) and the gateway (which applies them).

For now the run's defaults; the typed settings model grows here.
"""

from __future__ import annotations

DEFAULT_MAX_PENDING = 50  # ask mode: items waiting for a person at once (--max-pending)
PROMPT_RATE = 10.0  # ask mode: new items per second, once a burst of max_pending is used
