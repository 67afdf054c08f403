"""Dramatiq middleware: a message that fails for the last time becomes a FailedJob for triage."""

from __future__ import annotations

import gc
import logging
import traceback

from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)


class FailedJobMiddleware(Middleware):
    def before_process_message(self, broker, message):
        # Count this attempt now: by the time our after-hook runs, Retries has already bumped
        # `retries` when it gave up, but not when the actor `throws` a final error.
        message._switchboard_attempt = message.options.get("retries", 0) + 1

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if exception is None or not message.failed:
            return  # succeeded, or Retries will try again
        from connectors.triage import record_failed_job

        try:
            record_failed_job(
                actor=message.actor_name,
                args=list(message.args),
                kwargs=dict(message.kwargs),
                exception=exception,
                traceback_text="".join(traceback.format_exception(exception, limit=30)),
                attempts=getattr(message, "_switchboard_attempt", message.options.get("retries", 0) + 1),
            )
        except Exception:  # triage must never take the worker down; the failure is still logged
            logger.exception("could not record failed job for %s", message.actor_name)
        self._continue_chain(message, exception)
        if message.actor_name == "perform_write" and "write_id" in message.kwargs:
            from connectors.writes import give_up

            give_up(message.kwargs["write_id"], f"gave up after retries: {exception}")

    @staticmethod
    def _continue_chain(message, exception) -> None:
        """A sync run that ran out of retries still hands over to the next resource of its chain
        (one that failed with a final error handed over itself, in the actor)."""
        from connectors.errors import FinalError

        then = message.kwargs.get("then") if message.actor_name == "sync_resource" else None
        if then and not isinstance(exception, FinalError):
            from connectors.tasks import sync_resource

            sync_resource.send(run_id=then[0], then=then[1:])

    def after_skip_message(self, broker, message):
        return None


class FreezeHeapAfterBoot(Middleware):
    """Once a worker has booted (Django, the actors and their imports loaded), move every object
    alive then out of the cyclic garbage collector's sight (`gc.freeze`). A sync page allocates
    tens of thousands of objects, and each full collection otherwise walks the whole framework
    too: a first sync runs ~25% faster. Those boot-time objects live as long as the process."""

    def after_worker_boot(self, broker, worker) -> None:
        gc.collect()
        gc.freeze()
