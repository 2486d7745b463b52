"""The plan: units, obligations and deadlines, reminders, consolidated reports."""
