"""intake: the email-intake pipeline of the Long Biên district labour federation."""
from __future__ import annotations

__version__ = "0.1.0"
