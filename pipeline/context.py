"""What every command works with, built once from config: the ledger, the archive, the units, the
templates, the rules and the plan's obligations."""
from __future__ import annotations

import logging
from typing import Any

import jinja2

from pipeline.config import Config
from pipeline.forms.rules import load_rules
from pipeline.ledger.store import Store
from pipeline.mail.archive import Archive
from pipeline.outbox.compose import template_env
from pipeline.plan.obligations import load_obligations
from pipeline.plan.units import UnitDirectory, load_units

log = logging.getLogger(__name__)


class Context:
    """Everything a pass needs, built once from config."""

    def __init__(self, cfg: Config, *, units: UnitDirectory | None = None) -> None:
        self.cfg = cfg
        self.store = Store(cfg.database_url)
        self.archive = Archive(cfg.archive_dir)
        self._fixed_units = units
        self._units: UnitDirectory | None = None
        self._units_stamp: tuple[int, int] | None = None
        self.units  # load (and check) now: a bad units file fails at start, not mid-pass
        self.env: jinja2.Environment = template_env(cfg.templates_dir)
        self.rules = load_rules(cfg.rules_dir)
        self.obligations = obligations_of(cfg)

    @property
    def units(self) -> UnitDirectory:
        """The unit list, re-read when its file changes (the desk replaces it while the worker runs)."""
        if self._fixed_units is not None:
            return self._fixed_units
        try:
            st = self.cfg.units_file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if self._units is None or (stamp is not None and stamp != self._units_stamp):
            try:
                self._units = load_units(self.cfg.units_file)
                self._units_stamp = stamp
            except Exception:
                if self._units is None:
                    raise
                log.exception("units file changed but could not be read; keeping the previous list")
        assert self._units is not None
        return self._units


def obligations_of(cfg: Config) -> tuple[Any, ...]:
    path = cfg.rules_dir / "deadlines.yaml"
    return load_obligations(path, cfg.year, cfg.timezone) if path.is_file() else ()


