"""Parse figures for pipeline.forms, each beside a bare calamine read of the same file, same run.

    .venv/bin/python bench/bench_parse.py [--quick]

Goals (issue 3): small form parsed + validated ≤ 5 ms warm (isolation included) and ≤ 1.5× the
bare read; 2,000 rows ≤ 100 ms; 100,000 rows ≤ 3 s and ≤ 200 MB
(worker peak RSS); every bomb rejected ≤ 1 s with the worker never above 1 GiB.
"""
from __future__ import annotations

import io
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import formfiles as ff  # noqa: E402
import python_calamine as pc  # noqa: E402

from pipeline.forms import isolation, read_document, warm_up  # noqa: E402
from intake_demo import samples
from pipeline.forms.rules import default_rules  # noqa: E402

UNIT = "Công đoàn Trường Tiểu học Ái Mộ"


def bare(data: bytes) -> float:
    t = time.perf_counter()
    wb = pc.CalamineWorkbook.from_filelike(io.BytesIO(data))
    for name in wb.sheet_names:
        wb.get_sheet_by_name(name).to_python()
    return time.perf_counter() - t


def timed(name: str, data: bytes, repeat: int = 1) -> tuple[float, object]:
    times = []
    r = None
    for _ in range(repeat):
        t = time.perf_counter()
        r = read_document(name, data)
        times.append(time.perf_counter() - t)
    return statistics.median(times), r


def worker_rss() -> str:
    st = isolation.reader().last_stats
    if st:
        return f"worker peak RSS {st.get('maxrss', 0) / 2**20:.0f} MB"
    return "no worker figures (refused by the pre-check, or the worker was killed at its 1 GiB RLIMIT_AS)"


def main() -> None:
    quick = "--quick" in sys.argv
    rules = default_rules()
    t = time.perf_counter()
    warm_up(rules)
    print(f"worker start (cold, once per process): {(time.perf_counter() - t) * 1000:.0f} ms")

    small = samples.registration_xlsx(UNIT, [("Tổ Văn phòng", "Dọn vệ sinh", "bvmt"), ("Nguyễn Văn An", "GPMB", "gpmb")])
    b = statistics.median(bare(small) for _ in range(50))
    p, r = timed("dang ky.xlsx", small, repeat=200)
    print(f"small form ({len(small)} B): parse {p * 1000:.2f} ms warm vs bare calamine {b * 1000:.2f} ms "
          f"({p / b:.1f}×) → {r.state}, {len(r.entries)} entries")  # type: ignore[attr-defined]

    docx = samples.registration_docx(UNIT, [("Tổ Văn phòng", "Dọn vệ sinh", "bvmt")])
    p, r = timed("dang ky.docx", docx, repeat=100)
    print(f"small Word form ({len(docx)} B): parse {p * 1000:.2f} ms warm → {r.state}")  # type: ignore[attr-defined]

    for n in ([2_000] if quick else [2_000, 100_000]):
        data = ff.big_registration(n)
        b = bare(data)
        p, r = timed("dang ky.xlsx", data, repeat=3 if n <= 2000 else 1)
        print(f"{n:,} rows ({len(data) / 2**20:.1f} MB): parse {p * 1000:.0f} ms vs bare calamine "
              f"{b * 1000:.0f} ms ({p / b:.1f}×), {worker_rss()} → {r.state}, "  # type: ignore[attr-defined]
              f"{len(r.entries):,} entries")  # type: ignore[attr-defined]

    bombs = {
        "zip bomb (60 MB of nothing)": ff.zip_bomb(60),
        "A1 + XFD1048576 (with <dimension>)": ff.far_cell_sheet(),
        "A1 + XFD1048576 (no <dimension>: reaches calamine)": ff.far_cell_sheet(keep_dimension=False),
        "encrypted workbook": ff.encrypted(small),
        "corrupt zip": ff.corrupt_zip(small),
    }
    for label, data in bombs.items():
        isolation.reader().last_stats = {}
        p, r = timed("dang ky.xlsx", data)
        codes = ",".join(f.code for f in r.findings)  # type: ignore[attr-defined]
        print(f"{label}: {r.state} ({codes}) in {p * 1000:.0f} ms; {worker_rss()}")  # type: ignore[attr-defined]
    print(f"caller peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"worker starts {isolation.reader().starts}")


if __name__ == "__main__":
    main()
