"""config.yaml and the units file: a bad value is refused at start, naming the key and the problem."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import UNITS_CSV, write_config
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.plan.units import parse_units


_HASH = "scrypt:32768:8:1$salt$0af3"


def _cfg(tmp_path: Path, **changes: object) -> Path:
    path = write_config(tmp_path, imap_port=1143, smtp_port=1025)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = data
        for k in keys[:-1]:
            node = node[k]
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_shipped_example_config_loads() -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / "config.yaml")
    assert cfg.mailbox.security == "ssl" and cfg.mailbox.host == "imap.gmail.com"
    assert cfg.database_url.startswith("sqlite:///") and cfg.database_url.endswith("var/intake.sqlite3")
    assert cfg.own_addresses == ("ldldlongbien@gmail.com",)


@pytest.mark.parametrize("change, key, words", [
    ({"mailbox__host": "imap.gmail.com", "mailbox__security": "plain"}, "mailbox.security", "loopback"),
    ({"smtp__security": "tls"}, "smtp.security", "ssl, starttls, plain"),
    ({"mailbox__port": 70000}, "mailbox.port", "khoảng"),
    ({"mailbox__password": "hunter2"}, "mailbox.password", "biến môi trường"),
    ({"mailbox__password_env": "not a name"}, "mailbox.password_env", "tên biến"),
    ({"timezone": "Asia/Hanoi_Typo"}, "timezone", "múi giờ"),
    ({"year": "2022a"}, "year", "số nguyên"),
    ({"smtp__sender": "not an address"}, "smtp.sender", "email"),
    ({"staff": ["ok@example.org", "broken"]}, "staff[1]", "email"),
    ({"units": "missing.csv"}, "units", "không tìm thấy"),
    ({"storage": None}, "storage", "mapping"),
    ({"mailbox__colour": "blue"}, "mailbox.colour", "unknown key"),
    ({"mailbox__timeout": 0}, "mailbox.timeout", "giây"),
    ({"mailbox__batch_size": True}, "mailbox.batch_size", "số nguyên"),
    ({"mailbox__processed_keyword": "Intake Done"}, "mailbox.processed_keyword", "từ khoá IMAP"),
    ({"smtp__per_day": 0}, "smtp.per_day", "1..100000"),
    ({"storage__database": None}, "storage.database", "thiếu"),
    ({"storage__password": "x"}, "storage.password", "password_env"),
    ({"worker": {"idle_renew_minutes": 30}}, "worker.idle_renew_minutes", "0.05..29"),
    ({"worker": {"digest_weekday": "monday"}}, "worker.digest_weekday", "mon, tue"),
    ({"worker": {"idle": "yes"}}, "worker.idle", "true hoặc false"),
    ({"desk": {"accounts": [{"username": "hoa", "password_hash": "hunter2"}]}}, "desk.accounts[0].password_hash",
     "chuỗi băm"),
    ({"desk": {"accounts": [{"username": "hoa", "password_hash": _HASH}, {"username": "HOA", "password_hash": _HASH}]}},
     "desk.accounts[1].username", "hai lần"),
])
def test_bad_values_are_refused_with_key_and_reason(tmp_path: Path, change: dict, key: str, words: str) -> None:
    path = _cfg(tmp_path, **change)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}: {key}: " in str(err.value)
    assert words in str(err.value)


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path, mailbox__port=None, mailbox__security="starttls", smtp__port=None,
                           desk={"accounts": [{"username": "hoa", "password_hash": _HASH}]}))
    assert (cfg.mailbox.port, cfg.smtp.port) == (143, 25)  # by security; smtp stays plain
    assert cfg.database_url == f"sqlite:///{tmp_path / 'db' / 'intake.sqlite3'}"
    assert cfg.archive_dir == tmp_path / "archive" and cfg.units_file == tmp_path / "units.csv"
    assert (cfg.poll_minutes, cfg.idle, cfg.idle_renew_minutes, cfg.digest_weekday) == (5, True, 10.0, "mon")
    assert cfg.mailbox.timeout == 10.0 and isinstance(cfg.mailbox.timeout, float)
    assert cfg.desk.account("HOA") is not None and cfg.desk.account("hoa").name == "hoa"  # name defaults to username
    assert cfg.desk.port == 8765 and cfg.desk.host == "127.0.0.1"


def test_every_problem_is_named_not_only_the_first(tmp_path: Path) -> None:
    path = _cfg(tmp_path, year="2022a", smtp__per_minute=0)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert any(line.startswith(f"{path}: year: ") and "số nguyên" in line for line in lines)
    assert any(line.startswith(f"{path}: smtp.per_minute: ") and "1..10000" in line for line in lines)


@pytest.mark.parametrize("text, words", [
    ("- just\n- a list\n", "mapping"),
    ("year: [unclosed\n", "YAML"),
])
def test_a_file_that_is_not_a_mapping_is_refused_naming_it(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=words) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")
    with pytest.raises(ConfigError, match="không đọc được"):
        load_config(tmp_path / "missing.yaml")


def test_missing_password_variable_is_named_when_connecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTAKE_TEST_IMAP_PW", raising=False)
    cfg = load_config(_cfg(tmp_path))
    with pytest.raises(ConfigError, match="INTAKE_TEST_IMAP_PW"):
        cfg.mailbox.password()


def test_cli_refuses_bad_config_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    path = _cfg(tmp_path, mailbox__host="imap.gmail.com", mailbox__security="plain")
    assert main(["--config", str(path), "status"]) == 2
    assert "mailbox.security" in capsys.readouterr().err


def test_units_csv_with_bom_and_case_insensitive_addresses() -> None:
    units = parse_units(UNITS_CSV.encode("utf-8"), "units.csv")
    assert units.by_email("cdcs.UBND@LongBien.gov.vn").unit_id == "cq001"
    assert units.by_email("HIEUTRUONG.aimo@gmail.com").unit_id == "th014"
    assert units.by_email("nobody@example.org") is None
    assert units.by_id("th014").name == "Công đoàn Trường Tiểu học Ái Mộ"


def test_units_xlsx_is_accepted() -> None:
    import io

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["unit_id", "name", "group", "emails"])
    ws.append(["cq001", "Công đoàn cơ quan UBND quận", "hcsn", "a@longbien.gov.vn; b@longbien.gov.vn"])
    buf = io.BytesIO()
    wb.save(buf)
    units = parse_units(buf.getvalue(), "units.xlsx")
    assert units.units[0].emails == ("a@longbien.gov.vn", "b@longbien.gov.vn")


def test_units_file_problems_are_listed_with_rows() -> None:
    bad = ("unit_id,name,group,emails\n"
           "a1,Đơn vị A,hcsn,x@example.org\n"
           "a1,Đơn vị B,hcsn,y@example.org\n"
           "c3,Đơn vị C,truong,x@example.org;not-an-address\n")
    with pytest.raises(ConfigError) as err:
        parse_units(bad.encode(), "units.csv")
    text = str(err.value)
    assert "dòng 3: unit_id 'a1' trùng với dòng 2" in text
    assert "dòng 4: group 'truong' không hợp lệ" in text
    assert "dòng 4: địa chỉ x@example.org đã thuộc đơn vị a1" in text
    assert "dòng 4: địa chỉ email không hợp lệ 'not-an-address'" in text
    with pytest.raises(ConfigError, match="thiếu cột"):
        parse_units(b"id,name\n1,x\n", "units.csv")
