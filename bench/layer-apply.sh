#!/usr/bin/env bash
# Layer extraction throughput: GNU tar vs dockerd's `docker load` vs podman's
# `load` vs berth's apply_layer, side by side in one run.
#
#   bench/layer-apply.sh                  # RUNS=3 (best of), 10,000 files
#   RUNS=5 LAYER_FILES=5000 bench/layer-apply.sh
#   BERTH_APPLY=/path/to/apply-layer bench/layer-apply.sh
#   PEERS="tar berth" bench/layer-apply.sh   # skip docker and podman
#
# Needs root. Everything happens on tmpfs (/dev/shm, or a tmpfs mounted on a
# temp dir): the root ext4 of the development machines has no journal and is
# slow to create files right after deleting many, which would time the disk.
#
# The layer: the first LAYER_FILES regular files (at most LAYER_MAX_FILE bytes
# each) of the host's /usr/lib in sorted order, with the directories and
# symlinks met on the way, as one tar (about 300 MB), compressed with
# `gzip -6` (what Docker pushes) and `zstd -3`. Each tool extracts it into an
# empty directory (or its own store) RUNS times; the best time is reported in
# MB/s of the compressed blob and of the uncompressed tar, and as a ratio to
# `tar -xzf`. Between runs (untimed) the previous output is removed, and for
# docker/podman the image, so the layer is really extracted every time.
#
# docker: Debian's dockerd 20.10 (/usr/sbin/dockerd with /usr/bin/docker, the
# client of the same version) started privately: own --data-root,
# --exec-root, -H unix socket and --pidfile under the work dir, no bridge, no
# iptables; stopped (that pid only) at exit. `docker load` gets a
# docker-archive (manifest.json + config + the gzip layer) built here.
# podman: `podman --root/--runroot` under the work dir, `podman load -i` of
# the same archive.
#
# berth: the example binary crates/image/examples/apply-layer.rs (release;
# also built with sha2, zlib-rs and zstd-sys at opt-level 3, see below),
# which calls berth_image::layer::apply_layer with the default options (owners
# kept, diffID computed) and prints its own peak RSS. Its output tree is
# compared with tar's once (content, mode, owner, mtime, symlink targets)
# before anything is timed. "berth load" is crates/image/examples/load-image.rs:
# the same docker-archive docker and podman get, loaded into a fresh image
# store (archive::load) and unpacked into a snapshot (ImageStore::unpack), as
# dockerd does at load time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
LAYER_FILES=${LAYER_FILES:-10000}
LAYER_MAX_FILE=${LAYER_MAX_FILE:-8388608}
LAYER_SRC=${LAYER_SRC:-/usr/lib}
PEERS=${PEERS:-tar docker podman berth}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-/usr/bin/docker}   # the 20.10 client that matches Debian's dockerd
PODMAN=${PODMAN:-podman}

log() { printf '[layer-bench] %s\n' "$*" >&2; }
die() { printf '[layer-bench] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (owners are restored, dockerd)"
[[ $RUNS =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] || die "RUNS must be a positive integer"
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }

# --------------------------------------------------------------------------
# dependencies
# --------------------------------------------------------------------------
pkgs=()
for p in tar gzip zstd python3 time; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
done
if has_peer docker || has_peer podman; then
  # docker.io/podman are installed by `scripts/install-deps.sh test`; here
  # only if missing, and with no service started by their postinst.
  for p in docker.io podman; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
  done
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  log "installing: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null || true
    rm -f /usr/sbin/policy-rc.d
  else
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null || true
  fi
fi

# --------------------------------------------------------------------------
# state for the EXIT trap
# --------------------------------------------------------------------------
WORK=""
WORK_MOUNTED=0
DOCKERD_PID=""
HOST_PATHS=(/etc/docker/key.json /var/lib/containers/cache/blob-info-cache-v1.boltdb
  /run/containerd/s /run/containerd/fifo /run/containerd/runc /run/containerd
  /run/docker/plugins /run/docker /etc/docker /var/lib/containers/cache /var/lib/containers
  /dev/shm/libpod_lock)
PREEXIST=" "
for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && PREEXIST+="$p "; done

umount_under() {   # every mount at or below $1, deepest first
  local m
  findmnt -rn -o TARGET 2>/dev/null | awk -v d="$1" 'index($0, d "/") == 1 || $0 == d' \
    | sort -r | while IFS= read -r m; do umount -l "$m" 2>/dev/null || true; done
}

stop_dockerd() {
  [ -n "$DOCKERD_PID" ] || return 0
  if kill -0 "$DOCKERD_PID" 2>/dev/null; then
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 200); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      log "WARNING: dockerd $DOCKERD_PID did not stop on TERM; killing it"
      kill -KILL "$DOCKERD_PID" 2>/dev/null || true
    fi
  fi
  wait "$DOCKERD_PID" 2>/dev/null || true
  DOCKERD_PID=""
}

cleanup() {
  local rc=$? p
  set +e
  trap - EXIT INT TERM HUP
  stop_dockerd
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    umount_under "$WORK/docker"
    umount_under "$WORK/podman"
    if [ "$WORK_MOUNTED" = 1 ]; then umount "$WORK" && rmdir "$WORK"; else rm -rf "$WORK"; fi
  fi
  # What dockerd/podman create on the host regardless of their private paths.
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
# berth's apply-layer example
# --------------------------------------------------------------------------
# Two builds: "berth" with the workspace's release profile as it is
# (opt-level "s"), and "berth-O3" with only the three hot crates, sha2 (the
# diffID; at "s" its SHA-NI intrinsics are not inlined), zlib-rs and zstd-sys
# (inflate, zstd), at opt-level 3, the per-package override proposed for the root
# Cargo.toml. BERTH_APPLY / BERTH_APPLY_O3 / BERTH_LOAD / BERTH_LOAD_O3 (all
# four) skip the builds.
O3_CONFIG=(--config 'profile.release.package.sha2.opt-level=3' --config 'profile.release.package.zstd-sys.opt-level=3'
  --config 'profile.release.package.zlib-rs.opt-level=3')
build_examples() {   # $1 target dir ("" = the default), rest: extra cargo args; prints 2 paths
  local dir=$1; shift
  (cd "$REPO" && ${dir:+env CARGO_TARGET_DIR="$dir"} cargo build --release --locked \
    --example apply-layer --example load-image -p berth-image "$@" --message-format=json \
    2>/dev/null) | python3 -c '
import json, sys
exe = {}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        exe[m["target"]["name"]] = m["executable"]
print(exe.get("apply-layer", "-"))
print(exe.get("load-image", "-"))'
}
BERTH=${BERTH_APPLY:-}
BERTH_O3=${BERTH_APPLY_O3:-}
LOAD=${BERTH_LOAD:-}
LOAD_O3=${BERTH_LOAD_O3:-}
if has_peer berth; then
  if [ -z "$BERTH" ] || [ -z "$LOAD" ]; then
    log "building berth's apply-layer and load-image examples (release profile as is)"
    { read -r BERTH; read -r LOAD; } < <(build_examples "")
  fi
  if [ -z "$BERTH_O3" ] || [ -z "$LOAD_O3" ]; then
    log "building them with sha2, zlib-rs and zstd-sys at opt-level 3"
    { read -r BERTH_O3; read -r LOAD_O3; } < <(build_examples "$REPO/target/bench-o3" "${O3_CONFIG[@]}")
  fi
  for b in "$BERTH" "$BERTH_O3" "$LOAD" "$LOAD_O3"; do
    [ -x "$b" ] || die "cargo build of the examples failed ($b)"
  done
fi

# --------------------------------------------------------------------------
# the layer, on tmpfs
# --------------------------------------------------------------------------
if [ "$(findmnt -no FSTYPE -T /dev/shm 2>/dev/null | tail -1)" = tmpfs ]; then
  WORK=$(mktemp -d /dev/shm/berth-layer-bench.XXXXXX)
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-layer-bench.XXXXXX")
  mount -t tmpfs -o size=8g,mode=0700 berth-layer-bench "$WORK"
  WORK_MOUNTED=1
fi
log "work dir: $WORK"
python3 - "$LAYER_SRC" "$LAYER_FILES" "$LAYER_MAX_FILE" >"$WORK/list" <<'PY'
import os, stat, sys
src, want, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = 0
rel = os.path.relpath(src, "/")
# the ancestors too, so that every directory has its own entry (and mtime)
out = ["/".join(rel.split("/")[:i]) for i in range(1, rel.count("/") + 2)]
for d, dirs, files in os.walk(src):
    dirs.sort()
    out.append(os.path.relpath(d, "/"))
    for f in sorted(files):
        p = os.path.join(d, f)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            out.append(os.path.relpath(p, "/"))
        elif stat.S_ISREG(st.st_mode) and st.st_size <= cap and os.access(p, os.R_OK):
            out.append(os.path.relpath(p, "/"))
            n += 1
        if n >= want:
            break
    if n >= want:
        break
seen = set()
for p in out:
    if p not in seen:
        seen.add(p)
        print(p)
PY
log "building the layer: $(wc -l <"$WORK/list") entries from $LAYER_SRC"
tar -C / --numeric-owner --no-recursion -cf "$WORK/layer.tar" -T "$WORK/list"
gzip -6 -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
zstd -q -3 -c "$WORK/layer.tar" >"$WORK/layer.tar.zst"
TAR_BYTES=$(stat -c %s "$WORK/layer.tar")
GZ_BYTES=$(stat -c %s "$WORK/layer.tar.gz")
ZST_BYTES=$(stat -c %s "$WORK/layer.tar.zst")
DIFF_ID=sha256:$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)
NFILES=$(tar -tvf "$WORK/layer.tar" | grep -c '^-' || true)
rm -f "$WORK/layer.tar"   # the tools get the compressed blobs only
log "layer: $TAR_BYTES bytes uncompressed, $NFILES files; gzip $GZ_BYTES, zstd $ZST_BYTES"

# A docker-archive (what `docker save` writes) holding the gzip layer.
mkarchive() {   # $1 archive path, $2 layer blob, $3 repo tag
  local dir=$WORK/archive-src
  rm -rf "$dir" && mkdir -p "$dir/layer"
  ln "$2" "$dir/layer/layer.tar" 2>/dev/null || cp "$2" "$dir/layer/layer.tar"
  python3 - "$dir" "$DIFF_ID" "$3" <<'PY'
import hashlib, json, sys
d, diff_id, tag = sys.argv[1:4]
cfg = json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Cmd": ["/bin/true"]},
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created_by": "bench/layer-apply.sh"}],
}, separators=(",", ":")).encode()
name = hashlib.sha256(cfg).hexdigest() + ".json"
open(f"{d}/{name}", "wb").write(cfg)
json.dump([{"Config": name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}],
          open(f"{d}/manifest.json", "w"))
PY
  # Member names without a "./" prefix, as `docker save` writes them.
  (cd "$dir" && tar -cf "$1" -- *)
  rm -rf "$dir"
}
if has_peer docker || has_peer podman || has_peer berth; then
  mkarchive "$WORK/image.tar" "$WORK/layer.tar.gz" "berth-layer-bench:gz"
fi

# --------------------------------------------------------------------------
# timing helpers
# --------------------------------------------------------------------------
declare -A BEST=() NOTE=()
now() { echo "${EPOCHREALTIME/,/.}"; }
# best_of NAME PREPARE-FUNC RUN-FUNC: RUNS timed runs of RUN-FUNC, PREPARE-FUNC
# (untimed) before each; the best wall time goes to BEST[NAME].
best_of() {
  local name=$1 prep=$2 run=$3 i t0 t1 dt best=""
  for ((i = 1; i <= RUNS; i++)); do
    "$prep"
    t0=$(now)
    if ! "$run" >"$WORK/out-$name" 2>&1; then
      log "WARNING: $name failed: $(tail -3 "$WORK/out-$name" | tr '\n' ' ')"
      NOTE[$name]="failed"
      return 0
    fi
    t1=$(now)
    dt=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
    log "$name run $i: ${dt}s"
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $dt < $best else 1)"; then best=$dt; fi
  done
  BEST[$name]=$best
}

DEST=$WORK/dest
fresh_dest() { umount_under "$DEST"; rm -rf "$DEST"; mkdir "$DEST"; }

# --------------------------------------------------------------------------
# correctness check: berth's tree == tar's tree (once, untimed)
# --------------------------------------------------------------------------
if has_peer berth && has_peer tar; then
  rm -rf "$WORK/ref" "$WORK/chk" && mkdir "$WORK/ref" "$WORK/chk"
  tar -C "$WORK/ref" -xzf "$WORK/layer.tar.gz"
  "$BERTH" "$WORK/layer.tar.gz" "$WORK/chk" >"$WORK/out-check"
  grep -q "diff_id=$DIFF_ID" "$WORK/out-check" || die "berth's diffID differs: $(cat "$WORK/out-check")"
  python3 - "$WORK/ref" "$WORK/chk" <<'PY' || die "berth's tree differs from tar's"
import os, stat, sys
a, b = sys.argv[1:3]
def walk(top):
    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, top)
            extra = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = hash(f.read())
            # directory mtimes of tar and berth both come from the archive
            out[rel] = (st.st_mode, st.st_uid, st.st_gid,
                        None if stat.S_ISLNK(st.st_mode) else st.st_mtime_ns // 10**9, extra)
    return out
x, y = walk(a), walk(b)
bad = [k for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
for k in bad[:10]:
    print(f"differs: {k}: tar {x.get(k)} berth {y.get(k)}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
  rm -rf "$WORK/ref" "$WORK/chk"
  log "check: berth's tree matches tar's (content, mode, owner, mtime, link targets); diffID ok"
fi

# --------------------------------------------------------------------------
# the runs
# --------------------------------------------------------------------------
RSS_TAR="" RSS_BERTH_GZ="" RSS_BERTH_ZST="" RSS_LOAD=""
if has_peer tar; then
  run_tar_gz()  { /usr/bin/time -f %M -o "$WORK/rss-tar" tar -C "$DEST" -xzf "$WORK/layer.tar.gz"; }
  run_tar_zst() { tar -C "$DEST" --zstd -xf "$WORK/layer.tar.zst"; }
  best_of tar-gz fresh_dest run_tar_gz
  RSS_TAR=$(tail -1 "$WORK/rss-tar" 2>/dev/null || echo "?")
  best_of tar-zst fresh_dest run_tar_zst
fi
if has_peer berth; then
  run_berth_gz()  { "$BERTH" "$WORK/layer.tar.gz" "$DEST"; }
  run_berth_zst() { "$BERTH" "$WORK/layer.tar.zst" "$DEST"; }
  run_o3_gz()  { "$BERTH_O3" "$WORK/layer.tar.gz" "$DEST"; }
  run_o3_zst() { "$BERTH_O3" "$WORK/layer.tar.zst" "$DEST"; }
  best_of berth-gz fresh_dest run_berth_gz
  RSS_BERTH_GZ=$(sed -n 's/.*peak_rss_kib=\([0-9]*\).*/\1/p' "$WORK/out-berth-gz")
  best_of berth-zst fresh_dest run_berth_zst
  RSS_BERTH_ZST=$(sed -n 's/.*peak_rss_kib=\([0-9]*\).*/\1/p' "$WORK/out-berth-zst")
  best_of o3-gz fresh_dest run_o3_gz
  best_of o3-zst fresh_dest run_o3_zst
  # load: the docker-archive into a fresh store, layer unpacked to a snapshot
  run_load()    { "$LOAD" "$WORK/image.tar" "$DEST/store"; }
  run_load_o3() { "$LOAD_O3" "$WORK/image.tar" "$DEST/store"; }
  best_of load-gz fresh_dest run_load
  RSS_LOAD=$(sed -n 's/.*peak_rss_kib=\([0-9]*\).*/\1/p' "$WORK/out-load-gz")
  best_of load-o3-gz fresh_dest run_load_o3
fi
rm -rf "$DEST"

DOCKER_RSS=""
if has_peer docker; then
  if [ ! -x "$DOCKERD" ] || [ ! -x "$DOCKER" ]; then
    log "WARNING: $DOCKERD or $DOCKER missing: docker skipped"
    NOTE[docker]="missing"
  else
    D=$WORK/docker
    mkdir -p "$D/home"
    echo '{}' >"$D/daemon.json"
    SOCK=$D/docker.sock
    "$DOCKERD" --config-file "$D/daemon.json" --data-root "$D/data" --exec-root "$D/exec" \
      --pidfile "$D/docker.pid" -H "unix://$SOCK" --bridge none --iptables=false \
      --ip6tables=false --ip-forward=false --ip-masq=false --userland-proxy=false \
      >"$D/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    dk() { DOCKER_CONFIG=$D/home "$DOCKER" -H "unix://$SOCK" "$@"; }
    for i in $(seq 1 400); do
      [ -S "$SOCK" ] && dk version >/dev/null 2>&1 && break
      kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.1
    done
    if dk version >/dev/null 2>&1; then
      log "dockerd $DOCKERD_PID up (storage driver: $(dk info -f '{{.Driver}}' 2>/dev/null))"
      docker_prep() { dk rmi -f berth-layer-bench:gz >/dev/null 2>&1 || true; }
      docker_run()  { dk load -i "$WORK/image.tar"; }
      best_of docker-gz docker_prep docker_run
      DOCKER_RSS=$(awk '/VmHWM/ {print $2}' "/proc/$DOCKERD_PID/status" 2>/dev/null || echo "?")
      dk rmi -f berth-layer-bench:gz >/dev/null 2>&1 || true
    else
      log "WARNING: dockerd did not come up: $(tail -3 "$D/dockerd.log" | tr '\n' ' ')"
      NOTE[docker]="dockerd failed"
    fi
    stop_dockerd
    umount_under "$D"
  fi
fi

if has_peer podman; then
  if ! command -v "$PODMAN" >/dev/null; then
    log "WARNING: podman missing: skipped"
    NOTE[podman]="missing"
  else
    P=$WORK/podman
    mkdir -p "$P"
    pm() {
      "$PODMAN" --root "$P/root" --runroot "$P/runroot" --tmpdir "$P/tmp" \
        --cgroup-manager cgroupfs --events-backend file "$@"
    }
    podman_prep() { pm rmi -af >/dev/null 2>&1 || true; }
    podman_run()  { TMPDIR=$P pm load -i "$WORK/image.tar"; }
    best_of podman-gz podman_prep podman_run
    pm rmi -af >/dev/null 2>&1 || true
    umount_under "$P"
  fi
fi

# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo "no-commit")
{
  echo
  echo "berth layer-apply benchmark  rev $REV  $(date -Is)"
  echo "host: $(uname -sr), $(nproc) cpu; best of $RUNS; extraction to tmpfs"
  echo "layer: $NFILES files from $LAYER_SRC, tar $TAR_BYTES B, gzip -6 $GZ_BYTES B, zstd -3 $ZST_BYTES B"
  echo "peers: $(tar --version | head -1); docker $("$DOCKER" --version 2>/dev/null | sed 's/Docker version //'); $("$PODMAN" --version 2>/dev/null)"
  echo
  python3 - "$TAR_BYTES" "$GZ_BYTES" "$ZST_BYTES" "${BEST[tar-gz]:-}" \
    "tar -xzf=${BEST[tar-gz]:-${NOTE[tar]:-skipped}}" \
    "docker load (gzip)=${BEST[docker-gz]:-${NOTE[docker]:-skipped}}" \
    "podman load (gzip)=${BEST[podman-gz]:-${NOTE[podman]:-skipped}}" \
    "berth apply (gzip)=${BEST[berth-gz]:-${NOTE[berth-gz]:-skipped}}" \
    "berth-O3 (gzip)=${BEST[o3-gz]:-${NOTE[o3-gz]:-skipped}}" \
    "berth load (gzip)=${BEST[load-gz]:-${NOTE[load-gz]:-skipped}}" \
    "berth-O3 load (gzip)=${BEST[load-o3-gz]:-${NOTE[load-o3-gz]:-skipped}}" \
    "tar --zstd -xf=${BEST[tar-zst]:-skipped}" \
    "berth apply (zstd)=${BEST[berth-zst]:-${NOTE[berth-zst]:-skipped}}" \
    "berth-O3 (zstd)=${BEST[o3-zst]:-${NOTE[o3-zst]:-skipped}}" <<'PY'
import sys
tar_b, gz_b, zst_b = (int(x) for x in sys.argv[1:4])
ref = float(sys.argv[4]) if sys.argv[4] else None
print(f"{'tool':<22} {'best [s]':>9} {'MB/s compressed':>16} {'MB/s uncompressed':>18} {'vs tar -xzf':>12}")
for arg in sys.argv[5:]:
    name, val = arg.split("=", 1)
    try:
        t = float(val)
    except ValueError:
        print(f"{name:<22} {'(' + val + ')':>9}")
        continue
    comp = zst_b if "zst" in name else gz_b
    ratio = f"{ref / t:.2f}x" if ref else "n/a"
    print(f"{name:<22} {t:>9.3f} {comp / t / 1e6:>16.1f} {tar_b / t / 1e6:>18.1f} {ratio:>12}")
PY
  echo
  echo "peak RSS (KiB): tar -xzf ${RSS_TAR:-?} (tar only; gzip runs beside it); berth apply gzip ${RSS_BERTH_GZ:-?}, zstd ${RSS_BERTH_ZST:-?}; berth load (store + unpack) ${RSS_LOAD:-?}; dockerd VmHWM ${DOCKER_RSS:-?}"
  [ -z "${BERTH:-}" ] || echo "berth: $BERTH (release profile as is)"
  [ -z "${BERTH_O3:-}" ] || echo "berth-O3: $BERTH_O3 (${O3_CONFIG[*]})"
  [ -z "${LOAD:-}" ] || echo "berth load: $LOAD (archive::load into a fresh ImageStore, then ImageStore::unpack to a snapshot)"
}
