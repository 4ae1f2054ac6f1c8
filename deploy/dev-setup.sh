#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine:
# Dovecot (IMAP + LMTP) from Debian's packages. Idempotent; quiet when all is there.
# The tests also use the PostgreSQL server on 127.0.0.1:5432 (trust auth, database
# `test`); this script starts it if it is installed but stopped.
set -euo pipefail

# systemd: `systemd-analyze verify` checks deploy/triaged.service in the tests.
# gdb: the test harness prints a hung child's stacks with it.
packages=(dovecot-imapd dovecot-lmtpd opensmtpd openssl systemd gdb)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} ..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  # Where the package could start a system OpenSMTPD, it would hold the one
  # control socket a machine has; triaged's tests and demo run their own.
  # It is stopped (and kept from starting at boot) through the service
  # manager, never by process name: a private smtpd of a running test or
  # demo is not the system's.
  if [[ " ${missing[*]} " == *" opensmtpd "* ]]; then
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      $sudo systemctl disable --now opensmtpd.service >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
      $sudo service opensmtpd stop >/dev/null 2>&1 || true
      if command -v update-rc.d >/dev/null 2>&1; then
        $sudo update-rc.d opensmtpd disable >/dev/null 2>&1 || true
      fi
    fi
  fi
fi
# Debian starts a system Dovecot on install where it can; triaged never uses it
# (its tests and demo run private instances on free loopback ports).

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for v in /etc/postgresql/*; do
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main start || true
    done
  fi
fi
exit 0
