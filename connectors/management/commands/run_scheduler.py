import logging

from apscheduler.schedulers.blocking import BlockingScheduler
from django.core.management.base import BaseCommand

from connectors.scheduler import refresh_jobs

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the one scheduler process: enqueue each connection's sync on its cron schedule."

    def add_arguments(self, parser):
        parser.add_argument("--refresh-seconds", type=int, default=60, help="how often to re-read connection schedules")

    def handle(self, refresh_seconds, **options):
        scheduler = BlockingScheduler(timezone="UTC")
        refresh_jobs(scheduler)
        scheduler.add_job(refresh_jobs, "interval", seconds=refresh_seconds, args=[scheduler], id="refresh", max_instances=1)
        self.stdout.write(f"Scheduler running; schedules re-read every {refresh_seconds}s.")
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            scheduler.shutdown(wait=False)
