#!/usr/bin/env bash
# berthd vs Debian's dockerd (20.10, with its containerd), side by side in one run:
#   1. `docker run --rm --network none IMG /bin/true` through the same docker CLI (hyperfine),
#      and against bench/instant-daemon.py, a stand-in that answers at once: the CLI's floor
#   2. N sequential create+start over the API with curl (ms per container)
#   3. per-container supervisor RSS with N running containers (berth-shim vs containerd-shim)
#   4. idle daemon RSS (berthd vs dockerd + containerd)
#
#   bench/daemon.sh                     # RUNS=30 N=50
#   RUNS=10 N=20 bench/daemon.sh
#   DOCKER_CLI=/usr/bin/docker bench/daemon.sh   # which docker client drives both daemons
#
# Needs root. Everything lives on tmpfs under /dev/shm/berth-daemon-bench.*: both daemons
# have their own data root, exec root, socket and pid file; dockerd runs without a bridge
# or iptables. The same busybox image (the host's static busybox) is imported into both.
# The EXIT trap removes every container, stops both daemons (only the PIDs this script
# started), kills leftover shims whose command line names the work dir, unmounts what is
# under it, and removes the files dockerd creates outside it when they were not there before.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-30}
N=${N:-50}
DOCKER_CLI=${DOCKER_CLI:-docker}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}

log() { printf '[daemon-bench] %s\n' "$*" >&2; }
die() { printf '[daemon-bench] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"

install_deps() {
  local pkgs=() p
  for p in docker.io containerd hyperfine busybox-static curl python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
  done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  log "installing: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No package may start a service while installing.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}
install_deps
for c in "$DOCKER_CLI" hyperfine curl python3 findmnt; do command -v "$c" >/dev/null || die "$c not found"; done
[ -x "$DOCKERD" ] || die "$DOCKERD not found"

HOST_PATHS=(/etc/docker/key.json /etc/docker /run/containerd /run/docker)
PREEXIST=" "
for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && PREEXIST+="$p "; done
WORK=""
DOCKERD_PID=""
BERTHD_PID=""
INSTANT_PID=""

umount_under() {
  findmnt -rn -o TARGET 2>/dev/null | awk -v d="$1" 'index($0, d "/") == 1' \
    | sort -r | while IFS= read -r m; do umount -l "$m" 2>/dev/null || true; done
}
stop_pid() {   # pid
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
rm_all() {   # socket
  local ids
  ids=$(curl -s --unix-socket "$1" 'http://d/containers/json?all=1' \
    | python3 -c 'import json,sys; print(" ".join(c["Id"] for c in json.load(sys.stdin)))' 2>/dev/null || true)
  for id in $ids; do curl -s -o /dev/null --unix-socket "$1" -X DELETE "http://d/containers/$id?force=1" || true; done
}
cleanup() {
  local rc=$? p
  set +e
  trap - EXIT INT TERM HUP
  if [ -n "$WORK" ]; then
    [ -S "$WORK/berth.sock" ] && rm_all "$WORK/berth.sock"
    [ -S "$WORK/docker.sock" ] && rm_all "$WORK/docker.sock"
  fi
  stop_pid "$BERTHD_PID"
  stop_pid "$DOCKERD_PID"
  stop_pid "$INSTANT_PID"
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    # Shims whose command line names this run's work dir, and nothing else.
    for p in $(pgrep -f "$WORK" 2>/dev/null); do
      [ "$p" = "$$" ] || kill -KILL "$p" 2>/dev/null
    done
    sleep 0.2
    umount_under "$WORK"
    for d in /sys/fs/cgroup/*/berth/*; do
      [ -d "$d" ] && [ -f "$WORK/berth-ids" ] && grep -qx "$(basename "$d")" "$WORK/berth-ids" && rmdir "$d" 2>/dev/null
    done
    rm -rf "$WORK"
  fi
  for p in "${HOST_PATHS[@]}"; do
    [[ $PREEXIST == *" $p "* ]] && continue
    if [ -d "$p" ]; then rm -rf "$p"; elif [ -e "$p" ]; then rm -f "$p"; fi
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

WORK=$(mktemp -d /dev/shm/berth-daemon-bench.XXXXXX)

log "building berthd and berth-shim (release, as make build does)"
make -C "$REPO" -s build >/dev/null
BIN=$REPO/target/$(rustc -vV | sed -n 's/^host: //p')/release
[ -x "$BIN/berthd" ] && [ -x "$BIN/berth-shim" ] || die "release binaries missing in $BIN"

log "making the busybox image"
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/rootfs/tmp"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for t in sh true sleep; do ln -s busybox "$WORK/rootfs/bin/$t"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$WORK/rootfs/etc/passwd"
tar -C "$WORK/rootfs" -cf "$WORK/bb.tar" .

# --- daemons -----------------------------------------------------------------
echo '{}' >"$WORK/daemon.json"
"$DOCKERD" --config-file "$WORK/daemon.json" --data-root "$WORK/docker/data" \
  --exec-root "$WORK/docker/exec" --pidfile "$WORK/docker/docker.pid" -H "unix://$WORK/docker.sock" \
  --bridge none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
  --userland-proxy=false >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
"$BIN/berthd" -H "unix://$WORK/berth.sock" --data-root "$WORK/berth/data" \
  --exec-root "$WORK/berth/exec" --pidfile "$WORK/berth/berthd.pid" \
  --config-file "$WORK/daemon.json" --log-level warn >"$WORK/berthd.log" 2>&1 &
BERTHD_PID=$!
python3 "$REPO/bench/instant-daemon.py" "$WORK/instant.sock" >"$WORK/instant.log" 2>&1 &
INSTANT_PID=$!
dk() { DOCKER_CONFIG=$WORK/home "$DOCKER_CLI" -H "unix://$WORK/docker.sock" "$@"; }
bk() { DOCKER_CONFIG=$WORK/home "$DOCKER_CLI" -H "unix://$WORK/berth.sock" "$@"; }
mkdir -p "$WORK/home"
for _ in $(seq 1 300); do
  [ -S "$WORK/instant.sock" ] && dk version >/dev/null 2>&1 && bk version >/dev/null 2>&1 && break
  kill -0 "$DOCKERD_PID" 2>/dev/null || die "dockerd died: $(tail -5 "$WORK/dockerd.log")"
  kill -0 "$BERTHD_PID" 2>/dev/null || die "berthd died: $(tail -5 "$WORK/berthd.log")"
  sleep 0.1
done
dk version >/dev/null && bk version >/dev/null || die "daemons did not come up"
dk import "$WORK/bb.tar" bb:latest >/dev/null
bk import "$WORK/bb.tar" bb:latest >/dev/null
dk run --rm --network none bb /bin/true || die "docker run fails on dockerd"
bk run --rm --network none bb /bin/true || die "docker run fails on berthd"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# PSS: pages shared by N processes (the same binary's text) count 1/N each.
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# Private (USS): pages no other process maps, what one more container costs.
uss_kb() { awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s + 0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
containerd_pid() { pgrep -P "$DOCKERD_PID" -f containerd | head -1; }

# --- 4 (first, while idle) --------------------------------------------------------
sleep 2
IDLE_BERTH=$(rss_kb "$BERTHD_PID")
CTD=$(containerd_pid || true)
IDLE_DOCKER=$(( $(rss_kb "$DOCKERD_PID") + ${CTD:+$(rss_kb "$CTD")}+0 ))

# --- 1 ------------------------------------------------------------------------------
log "hyperfine: docker run --rm ($RUNS runs each)"
# The stand-in first: the kernel tears down each run's network namespace in
# the background (a kworker), which would slow the runs that follow.
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/run.json" \
  -n instant "env DOCKER_CONFIG=$WORK/home $DOCKER_CLI -H unix://$WORK/instant.sock run --rm --network none bb /bin/true" \
  -n dockerd "env DOCKER_CONFIG=$WORK/home $DOCKER_CLI -H unix://$WORK/docker.sock run --rm --network none bb /bin/true" \
  -n berthd "env DOCKER_CONFIG=$WORK/home $DOCKER_CLI -H unix://$WORK/berth.sock run --rm --network none bb /bin/true" >&2
read -r RUN_DOCKER RUN_BERTH RUN_INSTANT < <(python3 - "$WORK/run.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
print("%.1f %.1f %.1f" % (r["dockerd"], r["berthd"], r["instant"]))
PY
)
CLI_MS=$(python3 - "$DOCKER_CLI" <<'PY'
import subprocess,sys,time
t=time.perf_counter()
for _ in range(10): subprocess.run([sys.argv[1],"--version"],stdout=subprocess.DEVNULL)
print(f"{(time.perf_counter()-t)*100:.1f}")
PY
)

# --- 2 and 3 --------------------------------------------------------------------------
create_start() {   # socket, count → ms per container; ids in $WORK/ids-<name>
  python3 - "$1" "$2" "$3" <<'PY'
import json, socket, sys, time
path, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def call(method, url, body=None):
    s = socket.socket(socket.AF_UNIX); s.connect(path)
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(f"{method} {url} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    resp = b""
    while True:
        c = s.recv(65536)
        if not c: break
        resp += c
    s.close()
    head, _, rest = resp.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if status >= 300: raise SystemExit(f"{method} {url}: {status} {rest[:300]!r}")
    return rest
ids = []
t = time.perf_counter()
for i in range(n):
    r = call("POST", "/v1.41/containers/create", {"Image": "bb", "Cmd": ["sleep", "100000"], "HostConfig": {"NetworkMode": "none"}})
    body = r.split(b"\r\n", 1)[1] if r[:1] != b"{" else r
    cid = json.loads(body[body.index(b"{"):body.rindex(b"}")+1])["Id"]
    call("POST", f"/v1.41/containers/{cid}/start")
    ids.append(cid)
ms = (time.perf_counter() - t) * 1000 / n
open(out, "w").write("\n".join(ids) + "\n")
print(f"{ms:.1f}")
PY
}
log "$N sequential create+start over the API, each daemon"
CS_DOCKER=$(create_start "$WORK/docker.sock" "$N" "$WORK/docker-ids")
CS_BERTH=$(create_start "$WORK/berth.sock" "$N" "$WORK/berth-ids")
sleep 2
shim_mem() {   # pattern → "count avg_rss_kb avg_pss_kb avg_uss_kb"
  local rss=0 pss=0 uss=0 n=0 p
  for p in $(pgrep -f "$1"); do
    rss=$(( rss + $(rss_kb "$p") )); pss=$(( pss + $(pss_kb "$p") ))
    uss=$(( uss + $(uss_kb "$p") )); n=$(( n + 1 ))
  done
  [ "$n" -gt 0 ] && echo "$n $(( rss / n )) $(( pss / n )) $(( uss / n ))" || echo "0 0 0 0"
}
# A running container's berth-shim is berth-shim-monitor (berth-shim executes it).
read -r NB SHIM_BERTH PSS_BERTH USS_BERTH < <(shim_mem "berth-shim-monitor $WORK/berth/exec")
read -r ND SHIM_DOCKER PSS_DOCKER USS_DOCKER < <(shim_mem "containerd-shim.*$WORK/docker/exec")
LOADED_BERTH=$(rss_kb "$BERTHD_PID")
LOADED_DOCKER=$(( $(rss_kb "$DOCKERD_PID") + ${CTD:+$(rss_kb "$CTD")}+0 ))

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.3f}' if b else 'n/a')" "$1" "$2"; }
echo
echo "berthd vs dockerd $(dk version -f '{{.Server.Version}}'), client $("$DOCKER_CLI" version -f '{{.Client.Version}}' 2>/dev/null), $(nproc) CPUs, tmpfs roots"
printf '%-46s %12s %12s %10s %s\n' "measure" "dockerd" "berthd" "ratio" "target"
printf '%-46s %12s %12s %10s %s\n' "docker run --rm --network none /bin/true (ms)" "$RUN_DOCKER" "$RUN_BERTH" "$(ratio "$RUN_BERTH" "$RUN_DOCKER")" "<= 0.1"
printf '%-46s %12s %12s %10s %s\n' "  (the docker CLI alone, ms)" "$CLI_MS" "$CLI_MS" "" ""
printf '%-46s %12s %12s %10s %s\n' "  (the same run, instant stand-in daemon, ms)" "$RUN_INSTANT" "$RUN_INSTANT" "" \
  "0.1x leaves $(python3 -c "import sys; print(f'{float(sys.argv[1])/10-float(sys.argv[2]):.1f}')" "$RUN_DOCKER" "$RUN_INSTANT") ms"
printf '%-46s %12s %12s %10s %s\n' "create+start over the API, $N sequential (ms each)" "$CS_DOCKER" "$CS_BERTH" "$(ratio "$CS_BERTH" "$CS_DOCKER")" "berthd <= 20"
printf '%-46s %12s %12s %10s %s\n' "supervisor RSS per container (KiB, $ND/$NB shims)" "$SHIM_DOCKER" "$SHIM_BERTH" "$(ratio "$SHIM_BERTH" "$SHIM_DOCKER")" "berth-shim <= 512"
printf '%-46s %12s %12s %10s %s\n' "supervisor PSS per container (KiB)" "$PSS_DOCKER" "$PSS_BERTH" "$(ratio "$PSS_BERTH" "$PSS_DOCKER")" ""
printf '%-46s %12s %12s %10s %s\n' "supervisor private memory per container (KiB)" "$USS_DOCKER" "$USS_BERTH" "$(ratio "$USS_BERTH" "$USS_DOCKER")" ""
printf '%-46s %12s %12s %10s %s\n' "idle daemon RSS (KiB; dockerd+containerd)" "$IDLE_DOCKER" "$IDLE_BERTH" "$(ratio "$IDLE_BERTH" "$IDLE_DOCKER")" "berthd <= 15360"
printf '%-46s %12s %12s %10s %s\n' "daemon RSS with $N running (KiB)" "$LOADED_DOCKER" "$LOADED_BERTH" "$(ratio "$LOADED_BERTH" "$LOADED_DOCKER")" ""
