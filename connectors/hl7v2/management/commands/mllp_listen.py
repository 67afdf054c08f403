"""`manage.py mllp_listen --tenant SLUG --port 2575`: receive HL7 v2 over MLLP for one tenant."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from connectors.hl7v2 import constants, services
from connectors.hl7v2.listener import MllpServer
from hub.worker import ensure_inprocess_worker
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Listen for HL7 v2 messages over MLLP; ACK each after it is kept, map them in workers."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Slug of the tenant whose feed this is.")
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind (0.0.0.0 for every interface).")
        parser.add_argument("--port", type=int, default=2575)
        parser.add_argument("--idle-timeout", type=float, default=constants.IDLE_TIMEOUT_SECONDS, help="Seconds.")
        parser.add_argument("--max-connections", type=int, default=constants.MAX_CONNECTIONS)
        parser.add_argument("--max-bytes", type=int, default=constants.MAX_MESSAGE_BYTES, help="Largest frame accepted.")

    def handle(self, *args, tenant: str, host: str, port: int, idle_timeout: float, max_connections: int, max_bytes: int, **options):
        found = Tenant.objects.filter(slug=tenant, active=True).first()
        if found is None:
            raise CommandError(f"no active tenant with slug {tenant!r}")
        ensure_inprocess_worker()  # embedded profile: map in this process; a real broker has its workers
        waiting = services.enqueue_pending(found)  # kept and ACKed before a crash, never mapped: map them now
        if waiting:
            self.stdout.write(f"{waiting} received messages were waiting to be mapped; enqueued")
        server = MllpServer((host, port), tenant=found, idle_timeout=idle_timeout, max_connections=max_connections,
                            max_message_bytes=max_bytes)
        self.stdout.write(f"MLLP listening on {host}:{server.server_address[1]} for {found.slug} (connection {server.connection.pk})")

        def stop(*_):
            threading.Thread(target=server.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        server.serve_forever(poll_interval=0.5)
        self.stdout.write("MLLP listener stopped")
