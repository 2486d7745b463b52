"""The district office's web desk (`intake desk`, and inside `intake run` when desk.enabled)."""
from __future__ import annotations

from pipeline.desk.app import create_app
from pipeline.desk.server import DeskServer

__all__ = ["create_app", "DeskServer"]
