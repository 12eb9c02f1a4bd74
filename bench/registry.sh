#!/usr/bin/env bash
# Registry push/pull throughput on loopback, in one run: skopeo, podman, Debian's docker and
# berth's client move the same ~200 MB image through the same server, and the whole set is
# run twice: against Debian's docker-registry (distribution 2.8) and against berth-registry.
#
#   bench/registry.sh                    # IMAGE_MB=200 in LAYERS=4 layers
#   IMAGE_MB=100 LAYERS=2 bench/registry.sh
#   TOOLS="skopeo berth" bench/registry.sh          # skip podman and docker
#   BERTH_REGISTRY=/path/to/berth-registry bench/registry.sh   # skip the release build
#   ROUNDS=5 bench/registry.sh           # 5 rounds, the servers taking turns to go first;
#                                        # each figure is the median over the rounds
#
# Needs root. Everything lives on tmpfs (/dev/shm/berth-registry-bench.*): both servers' storage,
# the image, and every client's store (the root ext4 of the development machines is slow right
# after deletes and would time the disk).
#
# The image: LAYERS gzip (-1) layers of random bytes (incompressible: the byte counts are the
# same compressed and not), an OCI layout for skopeo, made here. Per server:
#   pull phase  a fresh server; `skopeo copy` pushes the layout (skopeo's push), then each tool
#               pulls it: skopeo into an OCI layout (download only), podman and docker into their
#               stores (download + extraction), berth (`berth-registry pull`, download only, and
#               `pull --unpack`, download + extraction into snapshots, as dockerd does at pull).
#   push phase  a fresh server on a new port (no client cache can mount or skip a blob); each
#               tool pushes the image it pulled to a repository of its own: podman and docker
#               recompress their stored layers (as they always do), berth sends the stored blobs.
# MB/s is the image's size (layers + config, 10^6 bytes) over the wall time of the command.
# Server RSS: VmRSS after start (idle) and VmHWM at the end (peak under the load above), the
# highest over the rounds.
#
# podman: `--root/--runroot/--tmpdir` under the work dir, HOME/XDG dirs there too, overlay on
# tmpfs. docker: Debian's dockerd 20.10 with /usr/bin/docker (the client of its version), own
# data root, exec root, -H unix socket and pid file, no bridge, no iptables; 127.0.0.0/8 is
# an insecure registry for it by default. The EXIT trap stops what this script started (by
# PID), unmounts what is under the work dir, removes it, and removes the host files dockerd and
# podman write on their own when they were not there before.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE_MB=${IMAGE_MB:-200}
LAYERS=${LAYERS:-4}
TOOLS=${TOOLS:-skopeo podman docker berth}
ROUNDS=${ROUNDS:-1}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-/usr/bin/docker}

log() { printf '[registry-bench] %s\n' "$*" >&2; }
die() { printf '[registry-bench] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (dockerd, podman's stores)"
has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }

# --------------------------------------------------------------------------
# dependencies (what scripts/install-deps.sh test installs; here only if missing)
# --------------------------------------------------------------------------
pkgs=()
for p in skopeo podman docker.io containerd docker-registry python3 curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  log "installing: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# --------------------------------------------------------------------------
# state for the EXIT trap
# --------------------------------------------------------------------------
WORK=""
DOCKERD_PID=""
SERVER_PID=""
HOST_PATHS=(/etc/docker/key.json /var/lib/containers/cache/blob-info-cache-v1.boltdb
  /run/containerd/s /run/containerd/fifo /run/containerd/runc /run/containerd
  /run/docker/plugins /run/docker /etc/docker /var/lib/containers/cache /var/lib/containers
  /dev/shm/libpod_lock)
PREEXIST=" "
for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && PREEXIST+="$p "; done

umount_under() {   # every mount at or below $1, deepest first
  findmnt -rn -o TARGET 2>/dev/null | awk -v d="$1" 'index($0, d "/") == 1 || $0 == d' \
    | sort -r | while IFS= read -r m; do umount -l "$m" 2>/dev/null || true; done
}

stop_pid() {   # $1 pid: TERM, wait up to 20 s, KILL
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? p pid
  set +e
  trap - EXIT INT TERM HUP
  stop_pid "$SERVER_PID"
  stop_pid "$DOCKERD_PID"
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    # Whatever dockerd or podman left running that names the work dir (their children).
    for pid in $(pgrep -f -- "$WORK" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    umount_under "$WORK"
    rm -rf "$WORK"
  fi
  for p in "${HOST_PATHS[@]}"; do
    [[ $PREEXIST == *" $p "* ]] && continue
    if [ -d "$p" ]; then rmdir "$p" 2>/dev/null; elif [ -e "$p" ]; then rm -f "$p"; fi
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --------------------------------------------------------------------------
# berth-registry, release
# --------------------------------------------------------------------------
BREG=${BERTH_REGISTRY:-}
if [ -z "$BREG" ]; then
  log "building berth-registry (release)"
  (cd "$REPO" && cargo build --release --locked -p berth-registry >&2)
  BREG="${CARGO_TARGET_DIR:-$REPO/target}/release/berth-registry"
fi
[ -x "$BREG" ] || die "no berth-registry binary at $BREG"

WORK=$(mktemp -d /dev/shm/berth-registry-bench.XXXXXX)
[ "$(findmnt -no FSTYPE -T "$WORK" | tail -1)" = tmpfs ] || die "/dev/shm is not tmpfs"
log "work dir: $WORK"
export DOCKER_CONFIG="$WORK/docker-client"   # no credentials of the host's user
mkdir -p "$DOCKER_CONFIG"

# --------------------------------------------------------------------------
# the image: an OCI layout of random layers
# --------------------------------------------------------------------------
log "making a ${IMAGE_MB} MB image in $LAYERS layers"
IMAGE_BYTES=$(python3 - "$WORK/layout" "$IMAGE_MB" "$LAYERS" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out, mb, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
per_layer = mb * 1000 * 1000 // n
files = 8
layers, diff_ids = [], []
for i in range(n):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        for j in range(files):
            data = os.urandom(per_layer // files)
            info = tarfile.TarInfo(f"data/layer{i}/file{j}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            t.addfile(info, io.BytesIO(data))
    raw = raw.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    d, size = put(gzip.compress(raw, compresslevel=1, mtime=0))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size})
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cd, csize = put(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": csize},
                       "layers": layers}).encode()
md, msize = put(manifest)
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
               "digest": md, "size": msize, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
print(sum(l["size"] for l in layers) + csize)
PY
)
log "image: $IMAGE_BYTES bytes"

# --------------------------------------------------------------------------
# the clients
# --------------------------------------------------------------------------
podman_() {
  HOME="$WORK/podman/home" XDG_RUNTIME_DIR="$WORK/podman/xdg" TMPDIR="$WORK/podman/tmp" \
    podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --tmpdir "$WORK/podman/tmp" \
    --storage-driver overlay --cgroup-manager cgroupfs --events-backend file "$@"
}
mkdir -p "$WORK/podman/home" "$WORK/podman/xdg" "$WORK/podman/tmp"
docker_() { "$DOCKER" -H "unix://$WORK/docker/docker.sock" "$@"; }
berth_() { "$BREG" "$1" --certs-dir "$WORK/certs.d" --docker-config "$WORK/docker-client/config.json" "${@:2}"; }
echo '{}' >"$WORK/docker-client/config.json"

if has_tool docker; then
  mkdir -p "$WORK/docker"
  echo '{}' >"$WORK/docker/daemon.json"
  "$DOCKERD" --config-file "$WORK/docker/daemon.json" --data-root "$WORK/docker/data" \
    --exec-root "$WORK/docker/exec" --pidfile "$WORK/docker/docker.pid" \
    -H "unix://$WORK/docker/docker.sock" --bridge=none --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false --userland-proxy=false \
    >"$WORK/docker/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 200); do docker_ version >/dev/null 2>&1 && break; sleep 0.2; done
  docker_ version >/dev/null 2>&1 || die "dockerd did not start: $(tail -5 "$WORK/docker/dockerd.log")"
  log "dockerd $DOCKERD_PID up ($(docker_ info --format '{{.Driver}}'))"
fi

# --------------------------------------------------------------------------
# the servers
# --------------------------------------------------------------------------
HOST=""
start_server() {   # $1 berth|distribution, $2 storage dir; sets HOST and SERVER_PID
  local kind=$1 root=$2 port
  rm -rf "$root"
  mkdir -p "$root"
  if [ "$kind" = berth ]; then
    "$BREG" serve --addr 127.0.0.1:0 --root "$root" >"$root.out" 2>"$root.log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do grep -q '^listening on' "$root.out" 2>/dev/null && break; sleep 0.05; done
    HOST=$(sed -n 's,^listening on http://,,p' "$root.out")
  else
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$root.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $root
http:
  addr: 127.0.0.1:$port
EOF
    docker-registry serve "$root.yml" >"$root.log" 2>&1 &
    SERVER_PID=$!
    HOST=127.0.0.1:$port
  fi
  for _ in $(seq 1 100); do
    [ -n "$HOST" ] && curl -fsS "http://$HOST/v2/" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  die "$kind server did not start: $(tail -5 "$root.log")"
}
rss_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
stop_server() { stop_pid "$SERVER_PID"; SERVER_PID=""; }

declare -A T   # "<server>/<what>" -> seconds
declare -A RSS # "<server>/idle|peak" -> KiB
timed() {   # $1 key, rest: command
  local key=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  if ! "$@" >"$WORK/last.out" 2>&1; then
    log "FAILED: $key: $* ($(tail -3 "$WORK/last.out" | tr '\n' ' '))"
    T[$key]+="failed "
    return 0
  fi
  t1=$(date +%s.%N)
  t1=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
  T[$key]+="$t1 "
  log "$key: $t1 s"
}

run_server() {   # $1 berth|distribution
  local s=$1 img
  log "=== $s: pull phase"
  start_server "$s" "$WORK/srv-$s-pull"
  local idle
  idle=$(rss_kib "$SERVER_PID" VmRSS)
  RSS[$s/idle]=$((idle > ${RSS[$s/idle]:-0} ? idle : ${RSS[$s/idle]:-0}))
  img="$HOST/bench/img:v1"
  timed "$s/push skopeo" skopeo --insecure-policy copy -q --dest-tls-verify=false \
    "oci:$WORK/layout:v1" "docker://$img"
  if has_tool skopeo; then
    rm -rf "$WORK/skopeo-out"
    timed "$s/pull skopeo" skopeo --insecure-policy copy -q --src-tls-verify=false \
      "docker://$img" "oci:$WORK/skopeo-out:v1"
    rm -rf "$WORK/skopeo-out"
  fi
  if has_tool podman; then
    podman_ rmi -a -f >/dev/null 2>&1 || true
    timed "$s/pull podman" podman_ pull -q --tls-verify=false "$img"
  fi
  if has_tool docker; then
    docker_ image prune -af >/dev/null 2>&1 || true
    timed "$s/pull docker" docker_ pull -q "$img"
  fi
  if has_tool berth; then
    rm -rf "$WORK/berth-dl" "$WORK/berth"
    timed "$s/pull berth" berth_ pull --root "$WORK/berth-dl" "$img"
    rm -rf "$WORK/berth-dl"
    timed "$s/pull+unpack berth" berth_ pull --unpack --root "$WORK/berth" "$img"
  fi
  local hwm
  hwm=$(rss_kib "$SERVER_PID" VmHWM)
  stop_server
  rm -rf "$WORK/srv-$s-pull"

  log "=== $s: push phase"
  start_server "$s" "$WORK/srv-$s-push"
  local old=$img
  if has_tool podman; then
    timed "$s/push podman" podman_ push -q --tls-verify=false "$old" "docker://$HOST/bench/podman:v1"
  fi
  if has_tool docker; then
    docker_ tag "$old" "$HOST/bench/docker:v1"
    timed "$s/push docker" docker_ push -q "$HOST/bench/docker:v1"
  fi
  if has_tool berth; then
    timed "$s/push berth" berth_ push --root "$WORK/berth" --source "$old" "$HOST/bench/berth:v1"
  fi
  local hwm2
  hwm2=$(rss_kib "$SERVER_PID" VmHWM)
  hwm=$((hwm > hwm2 ? hwm : hwm2))
  RSS[$s/peak]=$((hwm > ${RSS[$s/peak]:-0} ? hwm : ${RSS[$s/peak]:-0}))
  stop_server
  rm -rf "$WORK/srv-$s-push"
}

for round in $(seq 1 "$ROUNDS"); do
  log "### round $round of $ROUNDS"
  if [ $((round % 2)) = 1 ]; then
    run_server distribution
    run_server berth
  else
    run_server berth
    run_server distribution
  fi
done

# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo "no-commit")
args=()
for k in "${!T[@]}"; do args+=("$k=${T[$k]}"); done
{
  echo
  echo "berth registry benchmark  rev $REV  $(date -Is)"
  echo "host: $(uname -sr), $(nproc) cpu; $ROUNDS round(s), median; loopback; all storage on tmpfs"
  echo "image: $IMAGE_BYTES bytes in $LAYERS gzip layers of random data"
  echo "peers: $(skopeo --version); $(podman --version); docker $("$DOCKER" --version | sed 's/Docker version //'); docker-registry $(docker-registry --version 2>/dev/null | awk '{print $3}')"
  python3 - "$IMAGE_BYTES" "${RSS[distribution/idle]:-0}" "${RSS[distribution/peak]:-0}" \
    "${RSS[berth/idle]:-0}" "${RSS[berth/peak]:-0}" "${args[@]}" <<'PY'
import sys
size = int(sys.argv[1])
rss = [int(x) for x in sys.argv[2:6]]
import statistics
t = dict(a.split("=", 1) for a in sys.argv[6:])
def mbs(key):
    runs = [float(v) for v in t.get(key, "").split() if v != "failed"]
    return size / statistics.median(runs) / 1e6 if runs else None
def cell(v):
    return f"{v:8.1f}" if v is not None else f"{'-':>8}"
rows = [("push", "skopeo"), ("push", "podman"), ("push", "docker"), ("push", "berth"),
        ("pull", "skopeo"), ("pull", "podman"), ("pull", "docker"), ("pull", "berth"),
        ("pull+unpack", "berth")]
notes = {("pull", "skopeo"): "download only", ("pull", "berth"): "download only",
         ("pull", "podman"): "with extraction", ("pull", "docker"): "with extraction",
         ("pull+unpack", "berth"): "with extraction", ("push", "podman"): "recompresses",
         ("push", "docker"): "recompresses"}
print()
print(f"{'MB/s':<22} {'docker-registry':>15} {'berth-registry':>15} {'berth/distribution':>19}")
for op, tool in rows:
    a, b = mbs(f"distribution/{op} {tool}"), mbs(f"berth/{op} {tool}")
    ratio = f"{b / a:.2f}x" if a and b else "-"
    label = f"{op} {tool}"
    print(f"{label:<22} {cell(a):>15} {cell(b):>15} {ratio:>19}  {notes.get((op, tool), '')}")
print()
for server in ("distribution", "berth"):
    name = "docker-registry" if server == "distribution" else "berth-registry"
    out = []
    def ratio(x, y, what):
        a, b = mbs(f"{server}/{x}"), mbs(f"{server}/{y}")
        if a and b:
            out.append(f"{what} {a / b:.2f}x")
    ratio("push berth", "push skopeo", "berth push / skopeo push")
    ratio("pull+unpack berth", "pull podman", "berth pull+unpack / podman pull")
    ratio("pull+unpack berth", "pull docker", "berth pull+unpack / docker pull")
    print(f"on {name}: " + "; ".join(out))
print(f"targets: berth push >= 2x skopeo; berth pull with extraction >= 2x podman; "
      f"berth-registry >= docker-registry's throughput with less RSS")
print()
print(f"server RSS (KiB)     idle    peak")
print(f"docker-registry  {rss[0]:>8} {rss[1]:>7}")
print(f"berth-registry   {rss[2]:>8} {rss[3]:>7}")
PY
}
