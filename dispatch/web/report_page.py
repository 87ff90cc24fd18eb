"""The resident's pages: /report (the form, no account), the done page with the tracking code,
and /report/t/<code> (the report's state and the department's public replies).

No login, so the form is protected by a double-submit CSRF token: a random cookie the page
echoes in a hidden field; a POST whose field does not match its cookie is refused. Knowing a
tracking code is the only access to the tracking page, so lookups are rate-limited per client
address and the page shows only the case's state and PUBLIC replies (action ``reply`` with
``detail.public``): never notes, phones or other reporters.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from datetime import datetime
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.kinds import ViolationKind
from dispatch.http.deps import ApiContext, SessionDep, get_context
from dispatch.residents.codes import normalise_tracking_code, tracking_path
from dispatch.residents.followup import (
    COMMENT_CHARS,
    Rating,
    living_case,
    may_rate,
    may_request_mediation,
    mediation_requested,
    rate_report,
    request_mediation,
)
from dispatch.residents.intake import (
    Channel,
    IntakeDeps,
    ReportReceipt,
    ReportRefused,
    ReportSubmission,
    known_buildings,
)
from dispatch.residents.limits import ReportLimited, check_and_count_lookup
from dispatch.residents.refusals import (
    INVALID_FORM,
    TRACKING_CHANNEL,
    count_refusal,
    counting_route,
    submit_counted,
)
from dispatch.residents.tokens import QrPayload, QrSigner, TokenProblem, TokenRefused
from dispatch.web.i18n import pick_language, translator
from dispatch.web.rendering import render
from dispatch.workflow import WorkflowError
from storage.tables import Case, CaseTransition, ResidentReport, utcnow

CSRF_COOKIE = "cw_report_csrf"
# Reports taken in at once per API process (photo checks and the case's writes, in threads).
REPORTS_IN_FLIGHT = 4
CSRF_FIELD = "csrf"
# Unfinished states, shown to the resident as "being handled".
_CLOSED_STATES = frozenset({"resolved", "closed"})

router = APIRouter(include_in_schema=False)


def _refusals(request: Request) -> Counter:
    """civicwatch_qr_token_refusals_total{reason}, registered once per app."""
    counter = getattr(request.app.state, "qr_token_refusals", None)
    if not isinstance(counter, Counter):
        counter = Counter(
            "civicwatch_qr_token_refusals",
            "QR poster tokens refused on the report page, by reason",
            ["reason"],
            registry=get_context(request).metrics_registry,
        )
        request.app.state.qr_token_refusals = counter
    return counter


def _poster(request: Request, token: str) -> QrPayload:
    """The verified poster behind ``token``; refused (and counted) with the reason."""
    secret = get_context(request).qr_secret
    if secret is None:
        _refusals(request).labels(reason="disabled").inc()
        raise TokenRefused(TokenProblem.GARBLED)
    try:
        payload = QrSigner(secret).verify(token, time.time())
    except TokenRefused as exc:
        _refusals(request).labels(reason=exc.reason.value).inc()
        raise
    if payload.site not in {site.id for site in get_context(request).registry.sites}:
        _refusals(request).labels(reason="unknown_site").inc()
        raise TokenRefused(TokenProblem.GARBLED)
    return payload


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _context(request: Request) -> ApiContext:
    context = get_context(request)
    if context.intake is None:
        # Without the intake (a deployment or test without residents) there is no report page.
        raise ReportRefused("report_unknown_site", {"site_id": ""}, status.HTTP_404_NOT_FOUND)
    return context


def _form_values(request: Request, context: ApiContext) -> dict[str, Any]:
    """What the form offers: every category, the sites and their known buildings."""
    assert context.intake is not None
    sites = [
        {
            "id": site.id,
            "name": site.name or site.id,
            "buildings": known_buildings(context.registry, context.residents, site.id),
        }
        for site in context.registry.sites
    ]
    return {
        "kinds": [kind.value for kind in ViolationKind],
        "sites": sites,
        "max_photos": context.residents.photos.max_photos,
        "description_chars": context.residents.text.description_chars,
    }


def _show_form(
    request: Request,
    *,
    error: str = "",
    status_code: int = status.HTTP_200_OK,
    entered: dict[str, str] | None = None,
    poster: QrPayload | None = None,
    token: str = "",
) -> Response:
    context = _context(request)
    csrf_token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "report_form.html",
        None,
        status_code=status_code,
        csrf=csrf_token,
        error=error,
        entered=entered or {},
        poster=poster,
        token=token,
        **_form_values(request, context),
    )
    # Lax: the form posts to its own origin; HttpOnly: no script needs the cookie, the page
    # carries the token in its hidden field.
    response.set_cookie(CSRF_COOKIE, csrf_token, samesite="strict", httponly=True, path="/report")
    return response


@router.get("/report")
def report_form(request: Request, t: Annotated[str, Query(max_length=600)] = "") -> Response:
    if not t:
        return _show_form(request)
    try:
        poster = _poster(request, t)
    except TokenRefused as exc:
        # The plain form still works: the resident picks the place themselves.
        return _show_form(
            request,
            error=_token_text(request, exc),
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    return _show_form(request, poster=poster, token=t)


def _token_text(request: Request, exc: TokenRefused) -> str:
    return translator(pick_language(request)[0])(f"report_page.token_{exc.reason.value}")


def _refusal_text(request: Request, exc: ReportRefused) -> str:
    say = translator(pick_language(request)[0])
    params = dict(exc.params or {})
    if "key_kind" in params:  # a limit: name what was limited in the page's language
        params["key"] = say(f"residents.limit_key.{params['key_kind']}")
    # Not say(key, **params): a param named "key" (the limits') would collide with its argument.
    return say.messages.get(f"error.{exc.code}", exc.code).format(**params)


async def report_submit(
    request: Request,
    session: SessionDep,
    category: Annotated[str, Form(max_length=64)],
    site_id: Annotated[str, Form(max_length=64)],
    csrf: Annotated[str, Form(max_length=128)] = "",
    building: Annotated[str, Form(max_length=256)] = "",
    unit: Annotated[str, Form(max_length=256)] = "",
    description: Annotated[str, Form(max_length=20_000)] = "",
    phone: Annotated[str, Form(max_length=64)] = "",
    contact_consent: Annotated[str, Form(max_length=8)] = "",
    photos: Annotated[list[UploadFile] | None, File()] = None,
    t: Annotated[str, Form(max_length=600)] = "",
) -> Response:
    context = _context(request)
    assert context.intake is not None
    say = translator(pick_language(request)[0])
    entered = {
        "category": category,
        "site_id": site_id,
        "building": building,
        "unit": unit,
        "description": description,
        "phone": phone,
    }
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf.encode()):
        count_refusal(request, (Channel.QR if t else Channel.WEB).value, "report_csrf")
        return _show_form(
            request,
            error=say("report_page.error_csrf"),
            status_code=status.HTTP_403_FORBIDDEN,
            entered=entered,
        )
    poster: QrPayload | None = None
    if t:
        try:
            poster = _poster(request, t)
        except TokenRefused as exc:
            count_refusal(request, Channel.QR.value, "report_bad_token")
            return _show_form(
                request,
                error=_token_text(request, exc),
                status_code=status.HTTP_400_BAD_REQUEST,
                entered=entered,
            )
        # A poster's report arrives located: its site and building, whatever the form said.
        site_id = poster.site
        building = poster.building or building
    max_bytes = context.residents.photos.max_bytes
    contents: list[bytes] = []
    for upload in photos or []:
        if not upload.filename and not upload.size:
            continue  # an empty file input still sends a nameless empty part
        # Read one byte past the limit: enough for the intake to refuse it as too large.
        contents.append(await upload.read(max_bytes + 1))
    try:
        submission = ReportSubmission(
            category=category,  # pydantic checks the kind
            site_id=site_id,
            building=building or None,
            unit=unit or None,
            description=description,
            phone=phone or None,
            contact_consent=contact_consent == "on",
            photos=contents,
            channel=Channel.QR if poster else Channel.WEB,
            token_id=poster.kid if poster else None,
            client_address=_address(request)[:64],
        )
    except ValidationError:
        channel = Channel.QR if poster else Channel.WEB
        count_refusal(request, channel.value, INVALID_FORM)
        return _show_form(
            request,
            error=say("report_page.error_invalid"),
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            entered=entered,
            poster=poster,
            token=t if poster else "",
        )
    try:
        # In a worker thread: checking photos and writing the case must not hold the event
        # loop, which every other request of this process waits on. At most a few at once: a
        # burst waits its turn here instead of 40 threads taking turns at one interpreter.
        receipt = await anyio.to_thread.run_sync(
            functools.partial(_take_in, request, session, submission, context.intake),
            limiter=_intake_limiter(request),
        )
    except ReportRefused as exc:
        session.rollback()
        response = _show_form(
            request,
            error=_refusal_text(request, exc),
            status_code=exc.status_code,
            entered=entered,
            poster=poster,
            token=t if poster else "",
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    return RedirectResponse(
        f"/report/done/{receipt.tracking_code}", status_code=status.HTTP_303_SEE_OTHER
    )


router.add_api_route(
    "/report",
    report_submit,
    methods=["POST"],
    route_class_override=counting_route(APIRoute, lambda _request: Channel.WEB.value),
)


def _intake_limiter(request: Request) -> anyio.CapacityLimiter:
    """This app's cap on intakes in flight, made on first use (in the event loop, so two
    requests cannot both make one); a process's other thread-pool work is not counted."""
    limiter = getattr(request.app.state, "report_intake_limiter", None)
    if not isinstance(limiter, anyio.CapacityLimiter):
        limiter = anyio.CapacityLimiter(REPORTS_IN_FLIGHT)
        request.app.state.report_intake_limiter = limiter
    return limiter


def _take_in(
    request: Request, session: Session, submission: ReportSubmission, intake: IntakeDeps
) -> ReportReceipt:
    receipt = submit_counted(request, session, submission, deps=intake)
    session.commit()
    return receipt


def _report(request: Request, session: SessionDep, code: str) -> ResidentReport | None:
    """The report with this code, counting the lookup against the address's limit (in the
    database, so every API worker counts against the same one; committed at once, so a
    refused rating after it still counts the lookup)."""
    context = _context(request)
    try:
        check_and_count_lookup(session, _address(request), context.residents.limits, _now(context))
        session.commit()
    except ReportLimited as exc:
        session.rollback()
        count_refusal(request, TRACKING_CHANNEL, exc.code)
        raise ReportRefused(
            exc.code,
            {"key": "address", "key_kind": "address", "retry_after": exc.retry_after},
            status.HTTP_429_TOO_MANY_REQUESTS,
            {"Retry-After": str(exc.retry_after)},
        ) from None
    normal = normalise_tracking_code(code)
    if normal is None:
        return None
    return session.scalar(select(ResidentReport).where(ResidentReport.tracking_code == normal))


def _not_found(request: Request) -> Response:
    return render(
        request, "report_track.html", None, status_code=status.HTTP_404_NOT_FOUND, report=None
    )


@router.get("/report/done/{code}")
def report_done(request: Request, session: SessionDep, code: str) -> Response:
    report = _report(request, session, code)
    if report is None:
        return _not_found(request)
    path = tracking_path(report.tracking_code)
    return render(
        request,
        "report_done.html",
        None,
        code=report.tracking_code,
        path=path,
        link=str(request.base_url).rstrip("/") + path,
    )


def _replies(session: SessionDep, case_ids: list[int], language: str) -> list[dict[str, Any]]:
    """The PUBLIC replies on the report's case (and the case it lives on in), oldest first:
    the intake's guidance and every ``reply`` a person or the system made through the
    workflow. Notes, ratings and other entries never reach the resident."""
    replies = []
    for entry in session.scalars(
        select(CaseTransition)
        .where(CaseTransition.case_id.in_(case_ids), CaseTransition.action == "reply")
        .order_by(CaseTransition.at, CaseTransition.id)
    ):
        detail = entry.detail or {}
        if detail.get("public") is not True:
            continue
        body = detail.get("body_en") if language == "en" else detail.get("body_zh")
        replies.append({"at": entry.at, "text": body if isinstance(body, str) else entry.reason})
    return replies


def _show_track(
    request: Request,
    session: SessionDep,
    report: ResidentReport,
    *,
    error: str = "",
    notice: str = "",
    status_code: int = status.HTTP_200_OK,
    comment: str = "",
) -> Response:
    own = session.get(Case, report.case_id)
    assert own is not None  # every report belongs to a case (foreign key)
    case = living_case(session, own)
    language, _ = pick_language(request)
    csrf_token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "report_track.html",
        None,
        status_code=status_code,
        report=report,
        state=case.state,
        finished=case.state in _CLOSED_STATES,
        replies=_replies(session, sorted({own.id, case.id}), language),
        may_rate=may_rate(session, report),
        may_mediate=may_request_mediation(session, report),
        mediation_requested=mediation_requested(session, report),
        csrf=csrf_token,
        error=error,
        notice=notice,
        comment=comment,
        comment_chars=COMMENT_CHARS,
        ratings=[rating.value for rating in Rating],
        path=tracking_path(report.tracking_code),
    )
    response.set_cookie(CSRF_COOKIE, csrf_token, samesite="strict", httponly=True, path="/report")
    return response


@router.get("/report/t/{code}")
def report_track(
    request: Request,
    session: SessionDep,
    code: str,
    done: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    report = _report(request, session, code)
    if report is None:
        return _not_found(request)
    say = translator(pick_language(request)[0])
    notice = {"rated": "report_page.rated_thanks", "mediation": "report_page.mediation_sent"}
    return _show_track(request, session, report, notice=say(notice[done]) if done in notice else "")


def _csrf_ok(request: Request, field_value: str) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), field_value.encode())


def _back(request: Request, report: ResidentReport, done: str) -> Response:
    language, _ = pick_language(request)
    suffix = "&lang=en" if language == "en" else ""
    return RedirectResponse(
        f"{tracking_path(report.tracking_code)}?done={done}{suffix}",
        status_code=status.HTTP_303_SEE_OTHER,
    )


def _csrf_refused(
    request: Request, session: Session, report: ResidentReport, comment: str = ""
) -> Response:
    """The tracking page again, 403, for a form POST whose token does not match its cookie."""
    say = translator(pick_language(request)[0])
    return _show_track(
        request,
        session,
        report,
        error=say("report_page.error_csrf"),
        status_code=status.HTTP_403_FORBIDDEN,
        comment=comment,
    )


@router.post("/report/t/{code}/rate")
def report_rate(
    request: Request,
    session: SessionDep,
    code: str,
    csrf: Annotated[str, Form(max_length=128)] = "",
    rating: Annotated[str, Form(max_length=32)] = "",
    comment: Annotated[str, Form(max_length=4 * COMMENT_CHARS)] = "",
) -> Response:
    """满意 / 基本满意 / 不满意, once per report (dispatch/residents/followup.py)."""
    report = _report(request, session, code)
    if report is None:
        return _not_found(request)
    if not _csrf_ok(request, csrf):
        return _csrf_refused(request, session, report, comment[:COMMENT_CHARS])
    context = get_context(request)
    try:
        rate_report(
            session,
            report,
            rating,
            comment,
            workflow=context.workflow,
            now=_now(context),
            router=context.intake.router if context.intake is not None else None,
        )
    except (ReportRefused, WorkflowError) as exc:
        session.rollback()
        return _refused_track(request, session, code, exc, comment[:COMMENT_CHARS])
    session.commit()
    return _back(request, report, "rated")


@router.post("/report/t/{code}/mediate")
def report_mediate(
    request: Request,
    session: SessionDep,
    code: str,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """申请调解: a household matter the resident could not settle goes to 小事协商."""
    report = _report(request, session, code)
    if report is None:
        return _not_found(request)
    if not _csrf_ok(request, csrf):
        return _csrf_refused(request, session, report)
    context = _context(request)
    assert context.intake is not None
    try:
        request_mediation(
            session, report, workflow=context.workflow, deps=context.intake, now=_now(context)
        )
    except (ReportRefused, WorkflowError) as exc:
        session.rollback()
        return _refused_track(request, session, code, exc)
    session.commit()
    return _back(request, report, "mediation")


def _now(context: ApiContext) -> datetime:
    return context.intake.clock() if context.intake is not None else utcnow()


def _refused_track(
    request: Request,
    session: SessionDep,
    code: str,
    exc: ReportRefused | WorkflowError,
    comment: str = "",
) -> Response:
    """The tracking page again, with why (the report re-read after the rollback)."""
    language, _ = pick_language(request)
    say = translator(language)
    if isinstance(exc, ReportRefused):
        text, status_code = _refusal_text(request, exc), exc.status_code
    else:
        text, status_code = say(f"error.{exc.code}", **exc.params), status.HTTP_409_CONFLICT
    normal = normalise_tracking_code(code)
    report = session.scalar(select(ResidentReport).where(ResidentReport.tracking_code == normal))
    assert report is not None
    return _show_track(
        request, session, report, error=text, status_code=status_code, comment=comment
    )
