#!/bin/sh
# Install the Debian packages berth needs to build, run and test.
#   scripts/install-deps.sh run    what `make run` needs
#   scripts/install-deps.sh test   what `make test` needs (adds the peers the
#                                  conformance tests compare against)
set -eu
mode=${1:-run}
pkgs="busybox-static libseccomp-dev pkg-config iproute2 nftables python3 file"
if [ "$mode" = test ]; then
  pkgs="$pkgs runc uidmap util-linux procps"
fi
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install:$missing" >&2
    exit 1
  fi
  echo "install-deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
for c in rustfmt clippy; do
  if ! cargo "$( [ $c = rustfmt ] && echo fmt || echo clippy )" --version >/dev/null 2>&1; then
    rustup component add "$c"
  fi
done
