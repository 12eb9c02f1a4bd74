#!/bin/sh
# Install the Debian packages berth needs to build, run and test.
#   scripts/install-deps.sh run    what `make run` needs
#   scripts/install-deps.sh test   what `make test` needs (adds the peers the
#                                  conformance tests compare against)
set -eu
mode=${1:-run}
pkgs="busybox-static libseccomp-dev pkg-config iproute2 nftables python3 file tini"
if [ "$mode" = test ]; then
  pkgs="$pkgs runc uidmap util-linux procps"
  # The real clients berth-runtime is driven by (crates/runtime-cli/tests/clients.rs):
  # dockerd 20.10 (pulls containerd, tini, iptables), podman 4.3 (conmon) and containerd's ctr.
  # The tests start private daemons of their own; none is started at install time.
  pkgs="$pkgs docker.io containerd podman conmon"
  # The judge (crates/daemon/tests/judge.rs) fetches a published port from the host with curl.
  pkgs="$pkgs curl"
  # berth-registry's round trip test (crates/registry/tests/skopeo.rs) pushes and pulls with skopeo.
  pkgs="$pkgs skopeo"
  # The peer server the registry client is tested against (crates/registry/tests/client.rs):
  # distribution 2.8, started by the tests on a loopback port with their own config.
  pkgs="$pkgs docker-registry"
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
  # No package's postinst may start a service (docker.io and containerd ship units and init
  # scripts): deny it through policy-rc.d, which invoke-rc.d and deb-systemd-invoke honour, unless
  # the machine already has a policy of its own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# install-deps.sh: no service starts during installation\nexit 101\n' \
      >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# `make fuzz` (part of `make test`): cargo-fuzz, built from crates.io.
if [ "$mode" = test ] && ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
for c in rustfmt clippy; do
  if ! cargo "$( [ $c = rustfmt ] && echo fmt || echo clippy )" --version >/dev/null 2>&1; then
    rustup component add "$c"
  fi
done
