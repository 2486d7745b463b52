#!/usr/bin/env bash
# Install the Debian packages the tests need: Dovecot (a real IMAP server the integration tests
# start privately on loopback), openssl (throwaway test certificates), and Chromium with its
# chromedriver (the desk's browser tests drive /usr/bin/chromium headless through Selenium;
# nothing downloads a browser), and LibreOffice without its GUI: the intake reads Word 97-2003 .doc
# and .rtf by converting them with `soffice --headless` (pipeline/forms/convert.py), and the tests
# make their .doc/.odt/.rtf/.xls/.ods files with it (tests/officefiles.py). Install it on the
# machine that runs the intake too; without it those files go to staff for review. And PostgreSQL's
# server: the tests start a private cluster on loopback (tests/pgserver.py) to run the ledger there too.
# Idempotent: does nothing when everything is installed; runs `apt-get update` only if needed.
# Never leaves a system-wide Dovecot or PostgreSQL running (the tests start their own on free ports).
set -euo pipefail

PACKAGES=(dovecot-core dovecot-imapd openssl chromium chromium-driver libreoffice-writer-nogui
          libreoffice-calc-nogui postgresql)

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-system-deps: already installed: ${PACKAGES[*]}"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: no apt-get here; install by hand: ${missing[*]} (Debian/Ubuntu package names)" >&2
  exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "install-system-deps: missing ${missing[*]}; run this script as root (or: sudo $0)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# Keep the packages' postinst from starting a system dovecot on ports 143/993 (or PostgreSQL on 5432).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

# apt-get update only when the package lists don't know the packages yet.
need_update=0
for p in "${missing[@]}"; do
  cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then need_update=1; fi
done
if [ "$need_update" = 1 ]; then
  echo "install-system-deps: apt-get update"
  "${SUDO[@]}" apt-get update -q || echo "install-system-deps: apt-get update reported errors; trying the install anyway" >&2
fi

echo "install-system-deps: apt-get install ${missing[*]}"
if ! "${SUDO[@]}" apt-get install "${APT_OPTS[@]}" "${missing[@]}"; then
  # stale package lists (a 404 on an old version): refresh once and retry
  "${SUDO[@]}" apt-get update -q || true
  "${SUDO[@]}" apt-get install "${APT_OPTS[@]}" "${missing[@]}"
fi

# In case something started it anyway (no policy-rc.d honoured, systemd present).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  "${SUDO[@]}" systemctl disable --now dovecot.service dovecot.socket postgresql.service >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
  "${SUDO[@]}" service dovecot stop >/dev/null 2>&1 || true
  "${SUDO[@]}" service postgresql stop >/dev/null 2>&1 || true
fi
# The package made a cluster ("main"); stop it wherever an init system did not (containers).
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters --no-header 2>/dev/null | while read -r version name _rest; do
    "${SUDO[@]}" pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true
  done || true
fi

for p in "${PACKAGES[@]}"; do
  installed "$p" || { echo "install-system-deps: $p did not install" >&2; exit 1; }
done
echo "install-system-deps: installed ${missing[*]}"
