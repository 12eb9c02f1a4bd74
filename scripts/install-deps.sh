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
  # crates/registry/tests/judges.rs pushes to and pulls from berth-registry with the same
  # podman and dockerd.
  pkgs="$pkgs docker.io containerd podman conmon"
  # The judge (crates/daemon/tests/judge.rs) fetches a published port from the host with curl.
  pkgs="$pkgs curl"
  # berth-registry's round trip test (crates/registry/tests/skopeo.rs) pushes and pulls with skopeo.
  pkgs="$pkgs skopeo"
  # The peer server the registry client is tested against (crates/registry/tests/client.rs):
  # distribution 2.8, started by the tests on a loopback port with their own config.
  pkgs="$pkgs docker-registry"
  # docker-py's own integration tests run against berthd (scripts/docker-py-suite.sh)
  # from a venv of their own; the packages come from PyPI below.
  pkgs="$pkgs python3-venv"
  # docker-compose 1.29 drives berthd unchanged (crates/daemon/tests/compose.rs).
  pkgs="$pkgs docker-compose"
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
# docker-py 7.0.0 and the test tools it pins (its requirements.txt and
# test-requirements.txt) in a venv under target/, and its sdist, which carries
# tests/integration, beside it. Nothing is cached outside that directory.
if [ "$mode" = test ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  dp=${DOCKER_PY_DIR:-$root/target/docker-py}
  sdist_sha=323736fb92cd9418fc5e7133bc953e11a9da04f4483f828b527db553f1e7e5a3
  # pip's own subprocesses (the sdist's build requirements) ignore
  # --no-cache-dir: their cache goes under target/ too, and away after.
  export PIP_CACHE_DIR="$dp/pip-cache"
  if ! "$dp/venv/bin/python" -c 'import docker, pytest, pytest_timeout, paramiko, cryptography; assert docker.__version__ == "7.0.0" and cryptography.__version__ == "42.0.8"' 2>/dev/null; then
    echo "install-deps: docker-py 7.0.0 venv in $dp/venv"
    rm -rf "$dp/venv"
    mkdir -p "$dp"
    /usr/bin/python3 -m venv "$dp/venv"
    "$dp/venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check \
      docker==7.0.0 requests==2.31.0 urllib3==1.26.18 websocket-client==1.3.3 \
      packaging==21.3 paramiko==2.11.0 cryptography==42.0.8 pytest==7.4.2 pytest-timeout==2.1.0
  fi
  if [ ! -d "$dp/docker-7.0.0/tests/integration" ]; then
    echo "install-deps: docker-py 7.0.0 sdist (its tests) in $dp"
    "$dp/venv/bin/pip" download -q --no-cache-dir --disable-pip-version-check \
      --no-deps --no-binary :all: -d "$dp" docker==7.0.0
    echo "$sdist_sha  $dp/docker-7.0.0.tar.gz" | sha256sum -c --quiet
    tar -C "$dp" -xzf "$dp/docker-7.0.0.tar.gz"
  fi
  rm -rf "$PIP_CACHE_DIR"
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
# The resident part of each container's shim (berth-shim-monitor) is linked
# statically against musl when Rust's musl target can be had: a third of
# the memory of a static glibc build. Without it the Makefile builds the
# monitor for the host target (it works the same, with a larger RSS).
musl="$(uname -m)-unknown-linux-musl"
if ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
  rustup target add "$musl" >/dev/null 2>&1 \
    || echo "install-deps: no $musl target (berth-shim-monitor is built for the host target)"
fi
