"""XOAUTH2 for real: a local OAuth provider (token + introspection endpoints, HTTPS), a Dovecot that
accepts bearer tokens through its oauth2 passdb, and an SMTP sink that speaks AUTH XOAUTH2 like Gmail."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import DISTRICT, write_config
from pipeline import oauth
from intake_demo import samplemail
from pipeline.config import OAuthConfig, load_config
from pipeline.errors import (AccessRefused, ConfigError, MailboxAccessRefused, OAuthRefused, OAuthUnavailable,
                             PermanentError, SmtpAccessRefused, TemporaryError)
from pipeline.mail.mailbox import Mailbox
from pipeline.outbox.smtp import SmtpTransport
from pipeline.context import Context
from pipeline.worker.mailpass import run_pass
from servers import Dovecot, OAuthProvider, SmtpSink, make_test_certs

UBND = "cdcs.ubnd@longbien.gov.vn"
SECRET_ENV, REFRESH_ENV = "INTAKE_TEST_OAUTH_SECRET", "INTAKE_TEST_OAUTH_REFRESH"


@pytest.fixture(scope="module")
def provider_certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_test_certs(tmp_path_factory.mktemp("oauth-tls"))


@pytest.fixture
def provider(provider_certs: Any) -> Iterator[OAuthProvider]:
    with OAuthProvider(certs=provider_certs) as p:
        yield p


@pytest.fixture
def gmail(provider: OAuthProvider) -> Iterator[Dovecot]:
    """Dovecot over implicit TLS that takes XOAUTH2 bearer tokens checked against the provider."""
    with Dovecot(tls=True, oauth=provider) as dc:
        yield dc


def _bundle(tmp_path: Path, *cas: Path) -> Path:
    """One CA file trusting both the IMAP server's and the token endpoint's test CAs."""
    path = tmp_path / "ca-bundle.pem"
    path.write_text("".join(p.read_text() for p in cas))
    return path


def _oauth_block(provider: OAuthProvider, **extra: Any) -> dict[str, Any]:
    return {"client_id": provider.client_id, "client_secret_env": SECRET_ENV, "refresh_token_env": REFRESH_ENV,
            "token_uri": provider.token_uri, **extra}


def _xoauth2_config(tmp_path: Path, gmail: Dovecot, provider: OAuthProvider, smtp_port: int,
                    **smtp_extra: Any) -> Path:
    ca = _bundle(tmp_path, gmail.ca_path, provider.certs.ca_path)
    return write_config(
        tmp_path, imap_port=gmail.tls_port, smtp_port=smtp_port,
        mailbox_extra={"security": "ssl", "ca_file": str(ca), "password_env": None, "username": gmail.user,
                       "auth": "xoauth2", "oauth": _oauth_block(provider)},
        smtp_extra={"username": gmail.user, "auth": "xoauth2", "ca_file": str(ca),
                    "oauth": _oauth_block(provider), **smtp_extra})


@pytest.fixture
def secrets(provider: OAuthProvider, gmail: Dovecot, monkeypatch: pytest.MonkeyPatch) -> str:
    refresh = provider.grant(gmail.user)
    monkeypatch.setenv(SECRET_ENV, provider.client_secret)
    monkeypatch.setenv(REFRESH_ENV, refresh)
    return refresh


def test_refresh_token_to_access_token_to_xoauth2_imap_and_smtp(tmp_path: Path, provider: OAuthProvider,
                                                                gmail: Dovecot, secrets: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with SmtpSink(xoauth2=lambda user, token: token in provider.issued) as sink:
        ctx = Context(load_config(_xoauth2_config(tmp_path, gmail, provider, sink.port)))
        gmail.append(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", message_id="<oauth@x>"))

        summary = run_pass(ctx)

        assert summary.error is None and summary.new == 1
        assert summary.outbox["sent"] == 1
        # one refresh → one access token, used for IMAP and SMTP alike
        assert len(provider.token_requests) == 1
        form = provider.token_requests[0]
        assert form["grant_type"] == "refresh_token" and form["refresh_token"] == secrets
        [token] = provider.issued
        assert "method=XOAUTH2" in gmail.log()
        assert sink.bearer_logins == [(gmail.user, token)]
        assert sink.messages[0].login == gmail.user

        # the next pass reuses the cached access token: no new request to the token endpoint
        assert run_pass(ctx).error is None
        assert len(provider.token_requests) == 1

    # nothing secret in our logs (ours and the IMAP library's), whatever the level
    import base64

    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("pipeline", "imapclient")))
    assert "AUTHENTICATE" in ours and "OAuth: new access token" in ours
    sasl = base64.b64encode(oauth.xoauth2_string(gmail.user, token).encode()).decode()
    for secret in (secrets, provider.client_secret, token, sasl):
        assert secret not in ours


def test_an_access_token_refused_by_the_server_is_renewed_once(tmp_path: Path, provider: OAuthProvider,
                                                               gmail: Dovecot, secrets: str, smtp: Any) -> None:
    cfg = load_config(_xoauth2_config(tmp_path, gmail, provider, smtp.port)).mailbox
    with Mailbox(cfg) as mb:
        mb.select("INBOX")
    provider.expire_access_tokens()  # cached token now refused by Dovecot's introspection
    with Mailbox(cfg) as mb:
        mb.select("INBOX")
    assert len(provider.token_requests) == 2


def test_a_revoked_refresh_token_gives_the_permanent_vietnamese_message(tmp_path: Path, provider: OAuthProvider,
                                                                        gmail: Dovecot, secrets: str,
                                                                        smtp: Any) -> None:
    path = _xoauth2_config(tmp_path, gmail, provider, smtp.port)
    ctx = Context(load_config(path))
    assert run_pass(ctx).error is None
    provider.revoke(secrets)

    with pytest.raises(MailboxAccessRefused) as err:
        with Mailbox(ctx.cfg.mailbox):
            pass
    text = str(err.value)
    assert isinstance(err.value, AccessRefused) and isinstance(err.value, PermanentError)
    assert "hết hạn hoặc bị thu hồi" in text and "refresh token mới" in text
    assert f"biến môi trường {REFRESH_ENV}" in text and "Testing" in text
    assert secrets not in text
    # a pass records it (the outbox still flushed, the worker goes on) rather than crashing
    summary = run_pass(ctx)
    assert summary.error and "bị thu hồi" in summary.error


def test_smtp_xoauth2_refused_keeps_the_mail_for_later(tmp_path: Path, provider: OAuthProvider, gmail: Dovecot,
                                                       secrets: str) -> None:
    with SmtpSink(xoauth2=lambda user, token: False) as sink:
        ctx = Context(load_config(_xoauth2_config(tmp_path, gmail, provider, sink.port)))
        with pytest.raises(SmtpAccessRefused) as err:
            SmtpTransport(ctx.cfg.smtp).send(b"Subject: x\r\n\r\nx\r\n", DISTRICT, ["a@example.org"])
        assert "mã truy cập OAuth" in str(err.value) and "https://mail.google.com/" in str(err.value)
        assert "5.7.8" in str(err.value)
        # the cached token was dropped and a new one tried once before giving up
        assert len(sink.bearer_logins) == 2 and len(provider.token_requests) == 2

        gmail.append(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", message_id="<smtp-oauth@x>"))
        summary = run_pass(ctx)
        assert summary.new == 1 and summary.outbox == {"sent": 0, "retry": 1, "failed": 0, "dropped": 0, "waiting": 0}
        [row] = ctx.store.outbox_rows("receipt")
        assert row.state == "pending" and "mã truy cập OAuth" in row.last_error


# --------------------------------------------------------------------------------------------
# the token endpoint itself


def _cfg(provider: OAuthProvider, **kw: Any) -> OAuthConfig:
    return OAuthConfig(client_id=kw.pop("client_id", provider.client_id), client_secret_env=SECRET_ENV,
                       refresh_token_env=REFRESH_ENV, token_uri=kw.pop("token_uri", provider.token_uri), **kw)


@pytest.fixture
def plain_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[OAuthProvider]:
    with OAuthProvider() as p:
        monkeypatch.setenv(SECRET_ENV, p.client_secret)
        monkeypatch.setenv(REFRESH_ENV, p.grant("district@example.org"))
        yield p


def test_the_access_token_is_cached_until_shortly_before_it_expires(plain_provider: OAuthProvider) -> None:
    now = [1000.0]
    cfg = _cfg(plain_provider)
    first = oauth.access_token(cfg, user="d@x", clock=lambda: now[0])
    now[0] += plain_provider.lifetime - oauth.MARGIN - 1
    assert oauth.access_token(cfg, user="d@x", clock=lambda: now[0]) == first
    assert len(plain_provider.token_requests) == 1
    now[0] += 2  # within two minutes of expiry: renewed
    assert oauth.access_token(cfg, user="d@x", clock=lambda: now[0]) != first
    assert len(plain_provider.token_requests) == 2


def test_a_new_refresh_token_is_a_new_cache_entry(plain_provider: OAuthProvider,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(plain_provider)
    first = oauth.access_token(cfg, user="d@x")
    monkeypatch.setenv(REFRESH_ENV, plain_provider.grant("district@example.org"))
    assert oauth.access_token(cfg, user="d@x") != first


def test_token_endpoint_outage_is_temporary(plain_provider: OAuthProvider) -> None:
    plain_provider.fail_next(1, 503)
    with pytest.raises(OAuthUnavailable, match="tạm thời lỗi .*HTTP 503") as err:
        oauth.access_token(_cfg(plain_provider), user="d@x")
    assert isinstance(err.value, TemporaryError)
    assert oauth.access_token(_cfg(plain_provider), user="d@x")  # and then it works again


def test_unreachable_token_endpoint_is_temporary(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(SECRET_ENV, "s")
    monkeypatch.setenv(REFRESH_ENV, "r")
    cfg = OAuthConfig(client_id="c", client_secret_env=SECRET_ENV, refresh_token_env=REFRESH_ENV,
                      token_uri=f"http://127.0.0.1:{port}/token")
    with pytest.raises(OAuthUnavailable, match="không kết nối được máy chủ cấp mã OAuth"):
        oauth.access_token(cfg, user="d@x", timeout=2)


def test_wrong_client_secret_is_refused_and_named(plain_provider: OAuthProvider,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    with pytest.raises(OAuthRefused) as err:
        oauth.access_token(_cfg(plain_provider), user="d@x")
    assert "invalid_client" in str(err.value) and SECRET_ENV in str(err.value)
    assert "not-the-secret" not in str(err.value)


def test_the_token_endpoint_certificate_is_verified(provider: OAuthProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, provider.client_secret)
    monkeypatch.setenv(REFRESH_ENV, provider.grant("d@x"))
    with pytest.raises(OAuthUnavailable, match="chứng chỉ TLS"):
        oauth.access_token(_cfg(provider), user="d@x", ca_file=None)
    assert oauth.access_token(_cfg(provider), user="d@x", ca_file=provider.certs.ca_path)


def test_xoauth2_string_is_the_standard_one() -> None:
    assert oauth.xoauth2_string("a@b.c", "ya29.t") == "user=a@b.c\x01auth=Bearer ya29.t\x01\x01"


# --------------------------------------------------------------------------------------------
# configuration


def _config(tmp_path: Path, **mailbox: Any) -> Path:
    return write_config(tmp_path, imap_port=993, smtp_port=25, mailbox_extra={
        "host": "imap.gmail.com", "security": "ssl", "password_env": None, "username": "ldldlongbien@gmail.com",
        "auth": "xoauth2", **mailbox})


def _token_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "secret" / "refresh-token"
    path.parent.mkdir(exist_ok=True)
    path.write_text("1//from-a-file\n")
    os.chmod(path, mode)
    return path


def test_oauth_config_loads_with_google_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config(tmp_path, oauth={"client_id": "123.apps.googleusercontent.com", "client_secret_env": "CS",
                                    "refresh_token_file": str(_token_file(tmp_path))})
    cfg = load_config(path).mailbox
    assert cfg.auth == "xoauth2" and cfg.oauth is not None
    assert cfg.oauth.token_uri == "https://oauth2.googleapis.com/token"
    assert cfg.oauth.refresh_token() == "1//from-a-file"
    monkeypatch.delenv("CS", raising=False)
    with pytest.raises(ConfigError, match="CS"):
        cfg.oauth.client_secret()
    assert load_config(write_config(tmp_path, imap_port=1, smtp_port=2)).mailbox.auth == "password"


@pytest.mark.parametrize("mailbox, key, words", [
    ({}, "mailbox.oauth", "mapping"),
    ({"oauth": {"client_id": "c", "client_secret_env": "CS"}}, "mailbox.oauth.refresh_token_env", "đúng một"),
    ({"oauth": {"client_id": "c", "client_secret_env": "CS", "refresh_token_env": "R",
                "refresh_token_file": "/etc/x"}}, "mailbox.oauth.refresh_token_env", "đúng một"),
    ({"oauth": {"client_id": "c", "client_secret_env": "CS", "refresh_token": "1//abc"}},
     "mailbox.oauth.refresh_token", "biến môi trường"),
    ({"oauth": {"client_id": "c", "client_secret": "abc", "refresh_token_env": "R"}},
     "mailbox.oauth.client_secret", "biến môi trường"),
    ({"oauth": {"client_id": "c", "client_secret_env": "not a name", "refresh_token_env": "R"}},
     "mailbox.oauth.client_secret_env", "tên biến"),
    ({"oauth": {"client_id": "c", "client_secret_env": "CS", "refresh_token_env": "R",
                "token_uri": "http://oauth.example.com/token"}}, "mailbox.oauth.token_uri", "loopback"),
    ({"oauth": {"client_id": "c", "client_secret_env": "CS", "refresh_token_env": "R"},
      "password_env": "PW"}, "mailbox.password_env", "xoauth2"),
    ({"auth": "password", "oauth": {"client_id": "c"}}, "mailbox.oauth", "xoauth2"),
    ({"auth": "oauth"}, "mailbox.auth", "password, xoauth2"),
    ({"oauth": {"client_id": "c", "client_secret_env": "CS", "refresh_token_env": "R"}, "username": None},
     "mailbox.username", "xoauth2"),
])
def test_bad_oauth_config_is_refused_with_key(tmp_path: Path, mailbox: dict, key: str, words: str) -> None:
    path = _config(tmp_path, **mailbox)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for k, v in mailbox.items():
        if v is None:
            data["mailbox"].pop(k, None)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}: {key}: " in str(err.value)
    assert words in str(err.value)


def test_refresh_token_file_must_be_private_and_outside_the_repo(tmp_path: Path) -> None:
    loose = _token_file(tmp_path, 0o644)
    with pytest.raises(ConfigError, match=r"mailbox\.oauth\.refresh_token_file: .*chmod 600"):
        load_config(_config(tmp_path, oauth={"client_id": "c", "client_secret_env": "CS",
                                             "refresh_token_file": str(loose)}))
    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(ConfigError, match=r"mailbox\.oauth\.refresh_token_file: .*ngoài repo"):
        load_config(_config(tmp_path, oauth={"client_id": "c", "client_secret_env": "CS",
                                             "refresh_token_file": str(repo / "README.md")}))
    good = _token_file(tmp_path, 0o600)
    cfg = load_config(_config(tmp_path, oauth={"client_id": "c", "client_secret_env": "CS",
                                               "refresh_token_file": str(good)})).mailbox
    os.chmod(good, 0o640)  # loosened later: refused when read, not silently used
    with pytest.raises(ConfigError, match="chmod 600"):
        cfg.oauth.refresh_token()


# --------------------------------------------------------------------------------------------
# getting the refresh token once: python -m pipeline.oauth


def test_obtaining_the_refresh_token_once_then_a_pass_with_it(tmp_path: Path, smtp: Any,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import stat
    import urllib.request
    import webbrowser

    visited: list[str] = []

    def browser(url: str) -> bool:   # the person: opens the address, signs in, allows
        visited.append(url)
        urllib.request.urlopen(url, timeout=10).read()   # follows the redirect to the loopback listener
        return True

    monkeypatch.setattr(webbrowser, "open", browser)
    with OAuthProvider() as provider, Dovecot(oauth=provider) as dc:
        monkeypatch.setenv(SECRET_ENV, provider.client_secret)
        token_file = tmp_path / "etc" / "refresh-token"
        path = write_config(tmp_path, imap_port=dc.port, smtp_port=smtp.port, mailbox_extra={
            "password_env": None, "username": dc.user, "auth": "xoauth2",
            "oauth": {"client_id": provider.client_id, "client_secret_env": SECRET_ENV,
                      "refresh_token_file": str(token_file), "token_uri": provider.token_uri}})

        assert oauth.main(["--config", str(path), "--out", str(token_file),
                           "--auth-uri", provider.base_url + "/auth"]) == 0

        [query] = provider.authorizations
        assert query["scope"] == "https://mail.google.com/" and query["access_type"] == "offline"
        assert query["code_challenge_method"] == "S256" and query["login_hint"] == dc.user
        assert query["redirect_uri"].startswith("http://127.0.0.1:")
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        refresh = token_file.read_text().strip()
        assert refresh.startswith("1//test-refresh-")
        err = capsys.readouterr().err
        assert visited[0] in err and refresh not in err      # the address is shown, the token never

        dc.append(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", message_id="<obtained@x>"))
        summary = run_pass(Context(load_config(path)))
        assert summary.error is None and summary.new == 1


def test_the_refresh_token_is_never_written_inside_the_repo(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(OAuthRefused, match="thư mục mã nguồn"):
        oauth.write_secret_file(repo / "var" / "refresh-token", "1//x")
    assert not (repo / "var" / "refresh-token").exists()
