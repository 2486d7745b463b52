"""Mail that leaves: composing it, the outbox rows, SMTP."""
