"""What every command works with, built once from config: the ledger, the archive, the units, the
templates, the rules and the campaigns (the plan of each year).

A Context *looks at* one campaign: ``ctx.year`` (config.yaml's ``year`` unless a command or the desk asks
for another with ``ctx.for_year(y)``); ``ctx.obligations`` and ``ctx.documents()`` are that campaign's.
The pass itself works across campaigns: each mail and document finds its own (mailpass.py)."""
from __future__ import annotations

import copy
import logging
from datetime import datetime, timezone
from typing import Any

import jinja2

from pipeline.config import Config
from pipeline.forms.rules import Rules, load_rules
from pipeline.ledger.migrate import where
from pipeline.ledger.store import Store
from pipeline.mail.archive import Archive
from pipeline.outbox.compose import template_env
from pipeline.errors import ConfigError
from pipeline.ledger.schema import from_iso, iso
from pipeline.model import DocumentRecord
from pipeline.plan.campaigns import Campaign, Campaigns, load_campaigns
from pipeline.plan.reminder_rules import ReminderPolicy, load_reminder_policy
from pipeline.plan.units import UnitDirectory, load_units

log = logging.getLogger(__name__)


MAILBOX_KEY = "mailbox.identity"


def mailbox_identity(cfg: Config) -> str:
    return f"{(cfg.mailbox.username or '').strip().lower()}@{cfg.mailbox.host.strip().lower()}"


def bind_mailbox(store: Store, cfg: Config, *, bind: bool = True) -> None:
    """A ledger serves one mailbox: the first config that reads mail into it binds it (``bind``: the worker, a
    pass), and a config of another mailbox is refused by everything. Two districts that share a database but
    forgot their own ``district:`` (or two configs on one SQLite file) would otherwise share one UID
    high-water mark and skip each other's mail."""
    mine = mailbox_identity(cfg)
    bound = store.setdefault_kv(MAILBOX_KEY, mine, datetime.now(timezone.utc)) if bind else store.get_kv(MAILBOX_KEY)
    if bound and bound != mine:
        raise ConfigError(
            f"{cfg.path}: sổ ghi ({where(cfg.database_url)}, quận '{cfg.district}') đang "
            f"phục vụ hộp thư {bound}, còn cấu hình này đọc hộp thư {mine}. Mỗi quận dùng chung một cơ sở dữ "
            "liệu phải có khoá `district:` riêng. Nếu chính quận này đã đổi hộp thư, chạy: intake db rebind "
            f"/ this ledger serves mailbox {bound}, not {mine}")


class Context:
    """Everything a pass needs, built once from config."""

    def __init__(self, cfg: Config, *, units: UnitDirectory | None = None) -> None:
        self.cfg = cfg
        self.store = Store(cfg.database_url, cfg.storage)
        bind_mailbox(self.store, cfg, bind=False)  # reading is checked; the pass binds (mailpass.py)
        self.archive = Archive(cfg.archive_dir)
        self._fixed_units = units
        self._units: UnitDirectory | None = None
        self._units_stamp: tuple[int, int] | None = None
        self.units  # load (and check) now: a bad units file fails at start, not mid-pass
        self.env: jinja2.Environment = template_env(cfg.templates_dir)
        self.env.globals.update(office_phone=cfg.phone, office_place=cfg.place)
        self.rules = load_rules(cfg.rules_dir)
        self.campaigns = campaigns_of(cfg, self.rules)
        self.year = cfg.year
        self._horizon: datetime | None = None

    # -- the campaign in view ----------------------------------------------------------------------------

    @property
    def campaign(self) -> Campaign:
        return self.campaigns[self.year]

    @property
    def obligations(self) -> tuple[Any, ...]:
        return self.campaign.obligations

    def for_year(self, year: int | None) -> Context:
        """This context looking at another campaign (same ledger, units and rules)."""
        if year is None or year == self.year:
            return self
        if self.campaigns.get(year) is None:
            raise ConfigError(f"năm {year}: không có kế hoạch nào cho năm này (kế hoạch đầu tiên: năm "
                              f"{self.campaigns.first_year}) / no campaign for that year")
        other = copy.copy(self)
        other.year = year
        return other

    def documents(self) -> list[DocumentRecord]:
        """The documents of the campaign in view, as the deadline logic sees them."""
        return self.store.document_records(campaign=self.year)

    def years(self) -> list[int]:
        """The campaigns one can look at: the first one up to the latest of the configured year and the
        years the ledger holds documents for."""
        upto = max([self.cfg.year, *self.store.campaign_years()])
        return self.campaigns.years(upto)

    def reminded_years(self) -> list[int]:
        """The campaigns whose reminders run: the configured one, and the one before while the pipeline was
        collecting when it opened (its late documents are reminded up to the cut-off; a fresh install never
        reminds units of a year it did not collect)."""
        years = [self.cfg.year]
        before = self.campaigns.get(self.cfg.year - 1)
        if before is not None and before.opens_at >= self.horizon():
            years.insert(0, before.year)
        return years

    # -- first contact with a mailbox ---------------------------------------------------------------------

    def horizon(self, now: datetime | None = None) -> datetime:
        """Mail received before this instant is neither answered nor counted.

        ``mailbox.since`` when set; else what was fixed before (the last ``since``, or at the first pass the
        opening of the campaign current then), so that changing ``year`` later does not hide last year's late mail.
        """
        if self._horizon is not None:
            return self._horizon
        since = self.cfg.mailbox.since
        if since is not None:
            start = datetime.combine(since, datetime.min.time(), tzinfo=self.cfg.tz)
            # kept, so that taking `since` out of the config later leaves the horizon where it was
            if self.store.get_kv("mailbox.horizon") != iso(start):
                self.store.set_kv("mailbox.horizon", iso(start), now or datetime.now(timezone.utc))
        else:
            fixed = self.store.get_kv("mailbox.horizon")
            if fixed:
                start = from_iso(fixed)
            else:
                start = self.campaigns[self.cfg.year].opens_at
                # A ledger made before horizons were kept (upgraded from the first release) was collecting
                # since its first mail: its late mail must not turn "too early" because `year` moved meanwhile.
                oldest = self.store.first_received_at_any()
                if oldest is not None:
                    was_open = self.campaigns.open_at(oldest, upto=self.cfg.year)
                    start = min(start, was_open.opens_at if was_open is not None else oldest)
                self.store.set_kv("mailbox.horizon", iso(start), now or datetime.now(timezone.utc))
        self._horizon = start
        return start

    def arrival_campaign(self, received_at: datetime) -> Campaign | None:
        """The campaign a mail received then belongs to; None when before the horizon or any campaign."""
        if received_at < self.horizon():
            return None
        return self.campaigns.open_at(received_at, upto=self.cfg.year)

    def too_early(self, received_at: datetime) -> str:
        """Why a mail received then is neither answered nor counted (shown to staff)."""
        start = max(self.horizon(), self.campaigns[self.campaigns.first_year].opens_at)
        return (f"thư nhận ngày {received_at.astimezone(self.cfg.tz):%d/%m/%Y}, trước khi bắt đầu thu nhận "
                f"({start.astimezone(self.cfg.tz):%d/%m/%Y}): không trả lời, không tính")

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


def reminder_policy_of(cfg: Config) -> ReminderPolicy:
    path = cfg.rules_dir / "reminders.yaml"
    return load_reminder_policy(path) if path.is_file() else ReminderPolicy()


def campaigns_of(cfg: Config, rules: Rules | None = None) -> Campaigns:
    """The campaigns of rules/campaigns/, checked up to the configured year against the form definitions of
    ``rules`` (read from the config's rules folder when not given): a mistake stops the start."""
    rules = rules or load_rules(cfg.rules_dir)
    campaigns = load_campaigns(cfg.rules_dir, cfg.timezone, policy=reminder_policy_of(cfg),
                               form_ids=frozenset(rules.forms),
                               report_ids=frozenset(k for k, f in rules.forms.items() if f.is_report))
    if campaigns.get(cfg.year) is None:
        raise ConfigError(f"config.yaml: year: {cfg.year}: chưa có kế hoạch cho năm này; kế hoạch đầu tiên trong "
                          f"{cfg.rules_dir / 'campaigns'} là năm {campaigns.first_year} / no campaign covers this year")
    campaigns.check(cfg.year)
    return campaigns


