"""Reminder rules: the stages of rules/reminders.yaml and which reminders are due on a given day.

Pure: the only I/O is reading the rules file; ``today`` is a parameter.

Stages "before-7", "before-2", "after-1", then "weekly-1", "weekly-2", ... every 7 days while the
unit still owes the document, up to a cut-off (60 days after the due day by default). Each stage is
counted from the last day that is still on time. Stage k is *current* from its own day until the
day before stage k+1 (the last stage until the cut-off). On a given ``today`` only the current stage
can be sent, and only if it was never sent: so a worker that missed days catches up with the stage
it missed as long as the next stage has not come, and a unit never gets two reminders for the same
obligation on the same day. Earlier stages that were never sent are returned with
``superseded=True`` so that the caller records them as "sent-not-needed" and never sends them later.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Strict, field_validator

from pipeline.model import Unit
from pipeline.plan.deadlines import ObligationState
from pipeline.plan.obligations import Obligation
from pipeline.schema import read_mapping, validate


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError(f"phải là số ngày dương, đang là {value!r} / must be a positive number of days")
    return value


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError(f"phải là số nguyên không âm, đang là {value!r} / must be a non-negative integer")
    return value


def _none_is_empty(value: object) -> object:
    # `after_days:` left empty (null) means no such stages.
    return () if value is None else value


_Days = Annotated[tuple[Annotated[int, Strict(), AfterValidator(_positive)], ...], BeforeValidator(_none_is_empty)]
_Count = Annotated[int, Strict(), AfterValidator(_non_negative)]


class ReminderPolicy(BaseModel):
    """rules/reminders.yaml as checked; a key left out takes the default below."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    before_days: _Days = (7, 2)
    after_days: _Days = (1,)
    weekly_every_days: _Count = 7  # 0: no weekly stages
    cutoff_days_after: _Count = 60
    remind_under_review: Annotated[bool, Strict()] = False

    @field_validator("before_days")
    @classmethod
    def _earliest_stage_first(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value), reverse=True))

    @field_validator("after_days")
    @classmethod
    def _in_stage_order(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))


@dataclass(frozen=True)
class ReminderDue:
    """One stage of one obligation for one unit. ``superseded``: record as sent-not-needed, don't send."""

    unit_id: str
    obligation_id: str
    stage: str
    stage_date: date
    superseded: bool = False


def load_reminder_policy(path: Path) -> ReminderPolicy:
    """Read rules/reminders.yaml; missing keys take the defaults of ReminderPolicy.

    Errors are ConfigErrors naming the file and the key (``before_days[1]``); unknown keys are refused.
    """
    path = Path(path)
    # A reminders.yaml holding only comments means "all defaults".
    return validate(ReminderPolicy, read_mapping(path, empty_ok=True), path)


def reminder_schedule(obligation: Obligation, policy: ReminderPolicy) -> tuple[tuple[str, date], ...]:
    """Every stage of an obligation and its day, in order; empty when the obligation has no date."""
    due = obligation.due_date
    if due is None:
        return ()
    cutoff = policy.cutoff_days_after
    stages: list[tuple[str, date]] = []
    for days in sorted(policy.before_days, reverse=True):
        stages.append((f"before-{days}", due - timedelta(days=days)))
    after = [d for d in sorted(policy.after_days) if d <= cutoff]
    for days in after:
        stages.append((f"after-{days}", due + timedelta(days=days)))
    if policy.weekly_every_days > 0:
        offset = (after[-1] if after else 0) + policy.weekly_every_days
        number = 1
        while offset <= cutoff:
            stages.append((f"weekly-{number}", due + timedelta(days=offset)))
            offset += policy.weekly_every_days
            number += 1
    return tuple(stages)


def current_stage(obligation: Obligation, policy: ReminderPolicy, today: date) -> str | None:
    """The stage of an obligation that may be sent ``today``: the latest whose day has come, up to the
    cut-off; None before the first stage and after the cut-off."""
    if obligation.due_date is None or today > obligation.due_date + timedelta(days=policy.cutoff_days_after):
        return None
    passed = [stage for stage, day in reminder_schedule(obligation, policy) if day <= today]
    return passed[-1] if passed else None


def reminders_due(
    obligations: Iterable[Obligation],
    policy: ReminderPolicy,
    states: Mapping[tuple[str, str], ObligationState],
    units: Iterable[Unit],
    today: date,
    already_sent: set[tuple[str, str, str]] | frozenset[tuple[str, str, str]],
) -> list[ReminderDue]:
    """Reminders to send ``today`` and the stages they supersede.

    Only units in state missing or rejected (a unit absent from ``states`` counts as missing).
    ``already_sent`` holds (unit_id, obligation_id, stage) of everything recorded before, whether
    sent or superseded. At most one non-superseded item per unit and obligation: the current stage
    (see the module docstring). Items with ``superseded=True`` must be recorded, not sent.
    Order: obligations as given, then unit_id, then stage order.
    """
    units = sorted(units, key=lambda u: u.unit_id)
    result: list[ReminderDue] = []
    for obligation in obligations:
        schedule = reminder_schedule(obligation, policy)
        if not schedule or obligation.due_date is None:
            continue
        last_day = obligation.due_date + timedelta(days=policy.cutoff_days_after)
        passed = [(i, stage, day) for i, (stage, day) in enumerate(schedule) if day <= today]
        if not passed:
            continue
        current_index = passed[-1][0]
        current_open = today <= last_day
        for unit in units:
            if not obligation.applies_to(unit):
                continue
            state = states.get((unit.unit_id, obligation.id))
            if state is not None:
                if not state.owes:
                    continue
                if state.under_review_document_id is not None and not policy.remind_under_review:
                    continue
            for index, stage, day in passed:
                if (unit.unit_id, obligation.id, stage) in already_sent:
                    continue
                send = index == current_index and current_open
                result.append(ReminderDue(unit.unit_id, obligation.id, stage, day, superseded=not send))
    return result


__all__ = ["ReminderPolicy", "ReminderDue", "current_stage", "load_reminder_policy", "reminder_schedule",
           "reminders_due"]
