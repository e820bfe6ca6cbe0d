#!/usr/bin/env bash
# Installs, on Debian as root, every package mk/deps.list names (the lab,
# the tests and the benchmark need them), then the Go modules. Idempotent
# and fast when everything is present: apt-get runs only when a program or
# package is missing.
set -euo pipefail
cd "${BASH_SOURCE[0]%/*}/.."
export PATH=/usr/local/go/bin:/usr/sbin:/sbin:$PATH
GO=${GO:-go}

missing_pkgs=()
declare -A seen=()
while read -r prog pkg _; do
  [[ -z "${prog:-}" || "$prog" == \#* ]] && continue
  [[ -n "${seen[$pkg]:-}" ]] && continue
  ok=1
  if [[ "$prog" != "-" ]] && ! command -v "$prog" >/dev/null 2>&1; then ok=0; fi
  if [[ $ok == 1 ]] && command -v dpkg-query >/dev/null 2>&1; then
    st=$(dpkg-query -W -f '${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
    [[ "$st" == ii* ]] || ok=0
  fi
  if [[ $ok == 0 ]]; then seen[$pkg]=1; missing_pkgs+=("$pkg"); fi
done < mk/deps.list

if ((${#missing_pkgs[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "make deps: missing ${missing_pkgs[*]}, and this is not Debian (no apt-get): install them by hand (list: mk/deps.list)" >&2
    exit 1
  fi
  if [[ $(id -u) != 0 ]]; then
    echo "make deps: missing ${missing_pkgs[*]}; run as root to install them with apt-get (list: mk/deps.list)" >&2
    exit 1
  fi
  echo "make deps: installing ${missing_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
fi

if ! command -v "$GO" >/dev/null 2>&1; then
  echo "make deps: no Go toolchain ($GO) on PATH; install Go (see go.mod for the version) into /usr/local/go" >&2
  exit 1
fi
"$GO" mod download
