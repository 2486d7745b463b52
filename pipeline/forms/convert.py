"""Word 97-2003 (.doc) and RTF, read by converting them to .docx with LibreOffice, inside the reading process.

Why LibreOffice: no maintained Python library reads the tables of a binary .doc (antiword and catdoc give
text only; the libraries that do are commercial), and LibreOffice reads every .doc and .rtf a unit's Word
writes. Headless, it converts one file in one or two seconds; the .docx it writes is then read like any
other (readers.read_docx), so a .doc form is read by the same table walk, with the same findings.

Runs where core.parse runs: in the isolated reading process (isolation.py), so LibreOffice inherits its
memory limit (RLIMIT_AS; a headless conversion starts well under the default 1 GiB) and is killed when its
own time is up — a share of the document's ``worker_timeout_seconds``, so that the child still answers
before the parent's timeout. LibreOffice runs in a session of its own and the whole process group is
killed (soffice is a launcher with soffice.bin below it). Each reading process has its own LibreOffice
profile (``-env:UserInstallation``), reused from one document to the next and removed when the process
ends: two processes never share a profile, whose lock would make the second conversion hand its file to
the first LibreOffice or fail.

Where LibreOffice is not installed, or cannot open the file, the document goes to a person with the
unsupported-format finding; a conversion that overruns is file-timeout, as any other reading that does.
"""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from pipeline.forms.core import Request, fail, parse
from pipeline.forms.precheck import OLE_MAGIC
from pipeline.forms.rules import Rules
from pipeline.model import DocumentReading

CONVERTED = ("doc", "rtf")
_PREFIX = "intake-lo-"  # profiles: intake-lo-<pid>-<random>
_WORK = "intake-convert-"  # one conversion's files: intake-convert-<pid>-<random>
_PROFILE: str | None = None


class ConversionFailed(Exception):
    """LibreOffice ended without writing the .docx (it could not open the file)."""


def soffice() -> str | None:
    """The LibreOffice program on PATH, or None."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def read_request(req: Request, rules: Rules) -> DocumentReading:
    """core.parse, with .doc and .rtf converted to .docx first. Never raises for bad input."""
    if req.fmt not in CONVERTED:
        return parse(req, rules)
    shown = "." + req.fmt
    exe = soffice()
    if exe is None:
        return fail(rules, "unsupported-format", req.fmt, shown)
    seconds = conversion_seconds(rules.limits["worker_timeout_seconds"])
    try:
        docx = to_docx(exe, req.data, req.fmt, seconds)
    except TimeoutError:
        return fail(rules, "file-timeout", req.fmt, f"chuyển đổi tệp quá {seconds:.0f} giây")
    except MemoryError:
        return fail(rules, "file-too-large", req.fmt, "không đủ bộ nhớ để đọc")
    except (ConversionFailed, OSError):
        return fail(rules, "unsupported-format", req.fmt, shown)
    return replace(parse(replace(req, fmt="docx", data=docx), rules), format=req.fmt)


def conversion_seconds(timeout: float) -> float:
    """LibreOffice's share of the document's time: the rest is for reading the .docx and answering."""
    return max(1.0, float(timeout) - min(5.0, float(timeout) / 4))


def to_docx(exe: str, data: bytes, fmt: str, seconds: float) -> bytes:
    """The .docx LibreOffice makes of ``data``; TimeoutError past ``seconds``, ConversionFailed without one."""
    work = tempfile.mkdtemp(prefix=f"{_WORK}{os.getpid()}-")  # the unit's file: removed below, or by _remove_stale
    try:
        src = Path(work) / f"in.{fmt}"
        src.write_bytes(data)
        out = Path(work) / "out"
        cmd = [exe, f"-env:UserInstallation={Path(_profile()).as_uri()}", "--headless", "--invisible",
               "--nologo", "--norestore", "--nodefault", "--nolockcheck",
               "--convert-to", "docx:MS Word 2007 XML", "--outdir", str(out), str(src)]
        if data[:8] == OLE_MAGIC:
            # A Word file is read by Word's filter or not at all: left to guess, LibreOffice reads a damaged
            # .doc as plain text, and its bytes would pass for a document. (The filter reads Word 6 to 2003.)
            cmd.insert(-1, "--infilter=MS Word 97")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=work, start_new_session=True, close_fds=True)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _drop_profile()  # a profile half written by a killed LibreOffice could fail every later file
            raise TimeoutError(f"LibreOffice overran {seconds:.0f} s") from None
        except BaseException:
            _kill_group(proc)
            raise
        result = out / "in.docx"
        if not result.is_file() or result.stat().st_size == 0:
            raise ConversionFailed(f"LibreOffice exited with {proc.returncode} and no .docx")
        return result.read_bytes()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill soffice and soffice.bin below it (its own session: the group is LibreOffice's and only its), and
    wait a little for the group to be gone: SIGKILL is delivered on the way, and soffice.bin is not our child
    to wait for."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def _drop_profile() -> None:
    global _PROFILE
    if _PROFILE is not None:
        shutil.rmtree(_PROFILE, ignore_errors=True)
        _PROFILE = None


def _profile() -> str:
    """This process's LibreOffice profile, made on first use; profiles of processes that died are removed."""
    global _PROFILE
    if _PROFILE is None or not os.path.isdir(_PROFILE):
        _remove_stale()
        _PROFILE = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
        atexit.register(shutil.rmtree, _PROFILE, True)
    return _PROFILE


def _remove_stale() -> None:
    """Profiles and files left by reading processes that were killed (a timeout or a crash ends them with
    SIGKILL): a unit's file does not stay in the temporary folder."""
    for prefix in (_PREFIX, _WORK):
        for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{prefix}*-*")):
            try:
                pid = int(os.path.basename(path)[len(prefix):].split("-", 1)[0])
                if os.stat(path).st_uid != os.getuid():
                    continue
                os.kill(pid, 0)
            except ProcessLookupError:
                shutil.rmtree(path, ignore_errors=True)
            except (ValueError, OSError):
                continue
