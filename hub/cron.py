"""Standard five-field cron schedules on APScheduler, with cron's weekday numbering."""

from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron numbers them 0 (or 7) = Sunday


def _day(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    if token[:3] in _DAY_NAMES:
        return _DAY_NAMES.index(token[:3])
    raise ValueError(f"{token!r} is not a weekday (0-7 or sun-sat)")


def _weekdays(field: str) -> str:
    """A cron weekday field as APScheduler 3 day names. APScheduler numbers days from Monday = 0,
    so passing cron's numbers through (as CronTrigger.from_crontab does) shifts '1-5' to Tue-Sat."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            low, high = (_day(end) for end in span.split("-", 1))
        else:
            low = _day(span)
            high = 6 if step else low
        if low > high:
            raise ValueError(f"the weekday range {span!r} runs backwards")
        days.update(day % 7 for day in range(low, high + 1, int(step) if step else 1))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def cron_trigger(schedule: str, timezone: str) -> CronTrigger:
    """A standard five-field cron schedule (minute hour day month weekday) in `timezone`."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"a cron schedule has five fields, not {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday), timezone=timezone)
