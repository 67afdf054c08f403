"""Dramatiq actors for HL7 v2 feeds: thin doors onto `connectors.hl7v2.services`.

Retry policy: database errors (a lock timeout, a lost connection) back off and retry; a message
that cannot be mapped is not an exception here: the service marks it failed and puts it in triage.
"""

from __future__ import annotations

import dramatiq
from django.db import InterfaceError, OperationalError

from connectors.hl7v2 import services


def _retry_when(retries: int, exception: BaseException) -> bool:
    return retries < 6 and isinstance(exception, OperationalError | InterfaceError)


@dramatiq.actor(queue_name="hl7v2", retry_when=_retry_when, min_backoff=1_000, max_backoff=120_000, time_limit=5 * 60 * 1000)
def apply_hl7_message(*, message_id: int) -> None:
    """Map one received HL7 v2 message into canonical records."""
    services.apply_pending(message_id)


@dramatiq.actor(queue_name="hl7v2", max_retries=0)
def recheck_hl7_message(*, message_id: int) -> None:
    """Triage's retry of a rejected message: read it again, apply it if it is accepted now."""
    services.recheck_message(message_id)
