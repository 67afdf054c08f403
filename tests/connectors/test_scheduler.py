"""Periodic syncs: refresh_jobs keeps one APScheduler job per scheduled, enabled connection, in
its tenant's time zone, and the job enqueues sync_connection."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from dramatiq.brokers.stub import StubBroker

from connectors.scheduler import _enqueue, cron_trigger, refresh_jobs
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

JANUARY = datetime(2026, 1, 10, 0, 0, tzinfo=UTC)  # winter: Chicago is UTC-6, Berlin UTC+1


@pytest.fixture
def scheduler():
    scheduler = BackgroundScheduler(timezone="UTC")  # never started: jobs stay pending, nothing runs
    yield scheduler
    assert not scheduler.running


@pytest.fixture
def setup(tenant_a, tenant_b):
    tenant_b.timezone = "Europe/Berlin"
    tenant_b.save()
    return {
        "quarter_hourly": ConnectionFactory(tenant=tenant_a, display_name="A every 15", sync_schedule="*/15 * * * *"),
        "manual": ConnectionFactory(tenant=tenant_a, display_name="A manual", sync_schedule=""),
        "disabled": ConnectionFactory(tenant=tenant_a, display_name="A off", sync_schedule="0 * * * *", enabled=False),
        "morning": ConnectionFactory(tenant=tenant_b, display_name="B mornings", sync_schedule="0 6 * * *"),
    }


def sync_jobs(scheduler) -> dict[str, object]:
    jobs = [job for job in scheduler.get_jobs() if job.id.startswith("sync-")]
    assert len(jobs) == len({job.id for job in jobs}), "one job per connection"
    return {job.id: job for job in jobs}


def next_fire(job, after=JANUARY):
    return job.trigger.get_next_fire_time(None, after)


def test_one_job_per_enabled_scheduled_connection_in_the_tenants_time_zone(scheduler, setup):
    quarter, morning = setup["quarter_hourly"], setup["morning"]

    wanted = refresh_jobs(scheduler)

    assert wanted == {f"sync-{quarter.pk}": "*/15 * * * *", f"sync-{morning.pk}": "0 6 * * *"}
    jobs = sync_jobs(scheduler)
    assert set(jobs) == set(wanted)
    job = jobs[f"sync-{morning.pk}"]
    assert (job.func, job.args, job.name, job.max_instances, job.coalesce) == (_enqueue, (morning.pk,), "0 6 * * * Europe/Berlin", 1, True)
    assert job.trigger.timezone == ZoneInfo("Europe/Berlin")
    assert next_fire(job) == datetime(2026, 1, 10, 5, 0, tzinfo=UTC)  # 06:00 in Berlin
    quarter_job = jobs[f"sync-{quarter.pk}"]
    assert quarter_job.trigger.timezone == ZoneInfo("America/Chicago")
    assert next_fire(quarter_job, datetime(2026, 1, 10, 0, 1, tzinfo=UTC)) == datetime(2026, 1, 10, 0, 15, tzinfo=UTC)


def test_a_changed_schedule_or_time_zone_replaces_the_job(scheduler, setup, tenant_b):
    morning = setup["morning"]
    refresh_jobs(scheduler)

    morning.sync_schedule = "30 7 * * 1-5"
    morning.save()
    refresh_jobs(scheduler)
    job = sync_jobs(scheduler)[f"sync-{morning.pk}"]
    assert job.name == "30 7 * * 1-5 Europe/Berlin"
    assert next_fire(job) == datetime(2026, 1, 12, 6, 30, tzinfo=UTC)  # Saturday the 10th → Monday 07:30 Berlin

    tenant_b.timezone = "America/Los_Angeles"
    tenant_b.save()
    refresh_jobs(scheduler)
    job = sync_jobs(scheduler)[f"sync-{morning.pk}"]
    assert job.name == "30 7 * * 1-5 America/Los_Angeles"
    assert next_fire(job) == datetime(2026, 1, 12, 15, 30, tzinfo=UTC)
    assert len(sync_jobs(scheduler)) == 2


def test_an_unchanged_connection_keeps_its_job(scheduler, setup):
    refresh_jobs(scheduler)
    before = sync_jobs(scheduler)

    refresh_jobs(scheduler)

    after = sync_jobs(scheduler)
    assert set(after) == set(before)
    assert all(after[job_id] is before[job_id] for job_id in after)


def test_disabling_unscheduling_or_deactivating_removes_the_job(scheduler, setup, tenant_b):
    quarter, morning = setup["quarter_hourly"], setup["morning"]
    refresh_jobs(scheduler)
    scheduler.add_job(print, "interval", seconds=60, id="refresh")  # not ours: left alone

    quarter.enabled = False
    quarter.save()
    assert set(refresh_jobs(scheduler)) == {f"sync-{morning.pk}"}
    assert set(sync_jobs(scheduler)) == {f"sync-{morning.pk}"}

    tenant_b.active = False
    tenant_b.save()
    assert refresh_jobs(scheduler) == {}
    assert sync_jobs(scheduler) == {}

    quarter.enabled = True
    quarter.sync_schedule = ""
    quarter.save()
    assert refresh_jobs(scheduler) == {}
    assert [job.id for job in scheduler.get_jobs()] == ["refresh"]


def test_the_job_enqueues_a_scheduled_sync_of_its_connection(scheduler, setup, broker, sent):
    quarter = setup["quarter_hourly"]
    refresh_jobs(scheduler)
    job = sync_jobs(scheduler)[f"sync-{quarter.pk}"]

    job.func(*job.args, **job.kwargs)

    assert sent == [("sync_connection", {"connection_id": quarter.pk, "trigger": "schedule"})]
    if isinstance(broker, StubBroker):  # it holds the message in memory, for the in-process worker
        assert broker.queues["sync"].qsize() == 1


@pytest.mark.parametrize(("weekday", "days"), [
    ("*", "*"),
    ("1-5", "mon,tue,wed,thu,fri"),  # cron's weekdays, not APScheduler's Tue-Sat
    ("0", "sun"),
    ("7", "sun"),
    ("5-7", "sun,fri,sat"),
    ("1,3,5", "mon,wed,fri"),
    ("*/2", "sun,tue,thu,sat"),
    ("mon-fri", "mon,tue,wed,thu,fri"),
    ("sat,sun", "sun,sat"),
])
def test_cron_weekdays_mean_what_cron_means(weekday, days):
    trigger = cron_trigger(f"0 9 * * {weekday}", "America/Chicago")
    assert str(trigger.fields[4]) == days  # fields: year, month, day, week, day_of_week, …


def test_weekdays_fire_on_weekdays():
    trigger = cron_trigger("30 7 * * 1-5", "UTC")
    fires, after = [], JANUARY
    for _ in range(6):
        after = trigger.get_next_fire_time(None, after)
        fires.append(after.strftime("%a %d"))
        after = after.replace(minute=31)
    assert fires == ["Mon 12", "Tue 13", "Wed 14", "Thu 15", "Fri 16", "Mon 19"]


@pytest.mark.parametrize("schedule", ["* * * *", "0 9 * * 8", "0 9 * * fri-mon", "0 9 * * funday"])
def test_bad_cron_schedules_are_refused(schedule):
    with pytest.raises(ValueError):
        cron_trigger(schedule, "UTC")
