"""Matching keys for Vietnamese text: accents, đ, case and spacing folded; shown text kept as it came."""
from __future__ import annotations

import unicodedata

import pytest

from pipeline.textnorm import fold, fold_compact, nfc


@pytest.mark.parametrize(("text", "key"), [
    ("Tên tập thể, cá nhân", "ten tap the, ca nhan"),
    ("ĐƠN VỊ:  Công đoàn\tTrường  ", "don vi: cong doan truong"),
    ("LĨNH VỰC", "linh vuc"),
    ("Giải phóng mặt bằng", "giai phong mat bang"),
    ("ÐỨC GIANG", "duc giang"),  # the Icelandic eth some keyboards type for Đ
    ("", ""),
])
def test_fold(text: str, key: str) -> None:
    assert fold(text) == key
    assert fold(unicodedata.normalize("NFD", text)) == key  # decomposed input (macOS, some web forms) alike


def test_fold_compact_keeps_only_letters_and_digits() -> None:
    assert fold_compact("Tên  mô-hình:") == "tenmohinh"
    assert fold_compact("Quý IV/2022") == "quyiv2022"


def test_nfc_composes_and_collapses_spaces_but_keeps_case_and_accents() -> None:
    assert nfc(unicodedata.normalize("NFD", "  Công  đoàn\nTrường ")) == "Công đoàn Trường"
