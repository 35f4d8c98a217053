"""``/v1/calendar/events`` (with iCalendar import and export) and ``/v1/reminders``."""
