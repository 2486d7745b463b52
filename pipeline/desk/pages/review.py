"""Cần xử lý: the review queue and its buttons, which call pipeline.desk.actions and pipeline.desk.actionlog.

One queue for every campaign (a person handles everything); each item says its year, and a document is
accepted as one of the forms, and periods, of its own campaign. An action that would change a unit's record
(actions.NeedsConfirmation) shows the change first (``confirmation_page``); the page posts the same fields
back with the change's token, and only that confirmation does it."""
from __future__ import annotations

from typing import Any

from flask import Response, abort, g, redirect, render_template, request, url_for

from pipeline.desk import actionlog, actions, queries
from pipeline.desk.queue import queue
from pipeline.desk.auth import CSRF_FIELD
from pipeline.desk.web import bp, desk, flash, safe_next


@bp.route("/review")
def review_page() -> Any:
    ctx = desk().ctx
    items = queue(ctx)
    history = actionlog.history(ctx, limit=100)
    units_by_id = {u.unit_id: u for u in ctx.units.units}
    by_year: dict[int | None, actions.AcceptChoices] = {}
    choices = {}
    for it in items:
        if "accept" in it.actions:
            if it.campaign not in by_year:
                by_year[it.campaign] = actions.accept_choices(ctx, it.campaign)
            choices[it.target_id] = by_year[it.campaign]
    return render_template("review.html", items=items, history=history,
                           units=queries.sort_units(ctx.units.units), units_by_id=units_by_id, choices=choices)


def confirmation_page(exc: actions.NeedsConfirmation, action_url: str, cancel_url: str) -> Response:
    """The change an action would make, before → after, and a button that does it: the same fields posted
    again with the change's token. Nothing has changed yet (409 when the change is not the one confirmed)."""
    fields = [(k, v) for k, v in request.form.items(multi=True) if k not in (CSRF_FIELD, "confirm")]
    html = render_template("review_confirm.html", plan=exc.plan, stale=exc.stale, fields=fields,
                           action_url=action_url, cancel_url=cancel_url)
    return Response(html, status=409 if exc.stale else 200, mimetype="text/html")


def _sentence(text: str) -> str:
    """The actions' messages start in lower case (they are also used mid-sentence): capitalise for a banner."""
    return text[:1].upper() + text[1:] if text else text


def _int_field(name: str) -> int:
    try:
        return int(request.form.get(name, ""))
    except ValueError:
        abort(400, f"Thiếu hoặc sai trường {name}.")


@bp.route("/review/<action>", methods=["POST"])
def review_action(action: str) -> Any:
    d = desk()
    ctx = d.ctx
    actor = g.account.username
    form = request.form
    now = d.now()
    try:
        if action == "assign":
            unit_id = form.get("unit_id", "")
            if ctx.units.by_id(unit_id) is None:
                flash("error", "Hãy chọn một đơn vị trong danh sách.")
                return redirect(url_for("desk.review_page"))
            result = actions.assign(ctx, _int_field("message_pk"), unit_id, actor=actor,
                                    add_address=form.get("add_address") in ("1", "on", "yes"), now=now,
                                    confirm=form.get("confirm") or None)
        elif action == "release":
            result = actions.release(ctx, _int_field("message_pk"), actor=actor, now=now)
        elif action == "accept":
            kind = form.get("kind", "")
            if not kind:
                flash("error", "Hãy chọn loại văn bản.")
                return redirect(url_for("desk.review_page"))
            # which kinds and periods fit is the document's campaign's business (actions.accept says why not)
            result = actions.accept(ctx, _int_field("document_id"), kind=kind, period=form.get("period") or None,
                                    actor=actor, now=now, confirm=form.get("confirm") or None)
        elif action == "reject":
            reason = (form.get("reason") or "").strip()
            if not reason:
                flash("error", "Cần ghi lý do trả lại để gửi cho đơn vị.")
                return redirect(url_for("desk.review_page"))
            result = actions.reject(ctx, _int_field("document_id"), reason=reason[:2000], actor=actor, now=now)
        elif action == "ignore":
            target = form.get("target", "")
            if target not in ("message", "document", "bounce"):
                abort(400, "Sai loại đối tượng.")
            result = actions.ignore(ctx, target, _int_field("target_id"), actor=actor,
                                    reason=(form.get("reason") or "").strip()[:2000], now=now)
        elif action == "undo":
            result = actionlog.undo(ctx, _int_field("action_id"), actor=actor, now=now)
        else:
            abort(404)
    except actions.NeedsConfirmation as exc:
        return confirmation_page(exc, url_for("desk.review_action", action=action),
                                 safe_next(form.get("back")) if form.get("back") else url_for("desk.review_page"))
    except actions.ReviewError as exc:
        flash("error", _sentence(str(exc)))
    else:
        flash("ok", result.message)
    back = request.form.get("back")
    return redirect(safe_next(back) if back else url_for("desk.review_page"))

