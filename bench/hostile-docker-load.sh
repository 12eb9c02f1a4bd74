#!/usr/bin/env bash
# Hostile layers: what Debian's dockerd (`docker load`) and berth's
# apply_layer each do with the malicious archives of berth's layer tests.
#
#   bench/hostile-docker-load.sh
#   BERTH_APPLY=/path/to/apply-layer bench/hostile-docker-load.sh
#
# Needs root. The archives are written by the layer tests' generator
# (`cargo test -p berth-image --lib layer::apply::tests::fuzz_seeds` with
# BERTH_FUZZ_SEEDS=DIR): path traversal, symlink and hardlink escapes,
# whiteouts through symlinks, device nodes, a huge size header, and a few
# harmless controls. For each one:
#
#  * berth: crates/image/examples/apply-layer applies it to T/<case>/root,
#    beside T/<case>/outside/{x,sentinel} and an empty T/<case>/sentinel/.
#  * docker: it is wrapped into a docker-archive (manifest.json, config whose
#    diff_ids holds the tar's sha256, the layer) and `docker load`ed by a
#    private dockerd 20.10 (own --data-root/--exec-root/socket/pidfile under
#    a tmpfs work dir, no bridge, no iptables; that pid alone is stopped at
#    exit). The image is removed after each case.
#
# Outcome per tool: "refused" (error; first line of it shown) or "contained"
# (accepted, and nothing happened outside the extraction root). It is
# "ESCAPED" if, after the case: /etc/passwd changed (content, mtime, link
# count), a new entry appeared in / or in the host dir
# /tmp/berth-hostile-outside (the target of an absolute-symlink case, created
# empty here), berth's outside/ or sentinel/ changed, or a file holding the
# corpus' payload ("pwned") exists in docker's data root outside a layer's
# diff/ directory. The script exits 1 if anything escaped for either tool.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-/usr/bin/docker}   # the 20.10 client that matches Debian's dockerd
HOSTDIR=/tmp/berth-hostile-outside

log() { printf '[hostile] %s\n' "$*" >&2; }
die() { printf '[hostile] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"
for c in python3 sha256sum findmnt; do command -v "$c" >/dev/null || die "$c not found"; done

WORK=""
DOCKERD_PID=""
HOSTDIR_MADE=0
HOST_PATHS=(/etc/docker/key.json /run/containerd/s /run/containerd/fifo /run/containerd/runc
  /run/containerd /run/docker/plugins /run/docker /etc/docker)
PREEXIST=" "
for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && PREEXIST+="$p "; done

umount_under() {
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
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID" 2>/dev/null
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
    umount_under "$WORK"
    rm -rf "$WORK"
  fi
  [ "$HOSTDIR_MADE" = 1 ] && rm -rf "$HOSTDIR"
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

WORK=$(mktemp -d /dev/shm/berth-hostile.XXXXXX)
[ -e "$HOSTDIR" ] && die "$HOSTDIR exists; remove it first"
mkdir "$HOSTDIR"
HOSTDIR_MADE=1

# --------------------------------------------------------------------------
# the corpus and berth's binary
# --------------------------------------------------------------------------
log "writing the malicious archives (layer tests' generator)"
(cd "$REPO" && BERTH_FUZZ_SEEDS="$WORK/corpus" cargo test --locked -q -p berth-image --lib \
  layer::apply::tests::fuzz_seeds -- --exact >/dev/null 2>&1) || die "corpus generator failed"
BERTH=${BERTH_APPLY:-}
if [ -z "$BERTH" ]; then
  log "building berth's apply-layer example"
  BERTH=$(cd "$REPO" && cargo build --release --locked --example apply-layer -p berth-image \
    --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "apply-layer" and m.get("executable"):
        print(m["executable"])')
fi
[ -x "$BERTH" ] || die "no apply-layer binary"

# --------------------------------------------------------------------------
# host state
# --------------------------------------------------------------------------
# Compared before and after each case. /etc/passwd's mtime and content are
# not: other test suites on the machine add users; its link count, inode and
# the payload's absence are.
host_state() {
  {
    stat -c '%h %i' /etc/passwd
    grep -c pwned /etc/passwd
    ls -A / | sort
    ls -A "$HOSTDIR"
  } 2>&1
}

# --------------------------------------------------------------------------
# dockerd
# --------------------------------------------------------------------------
D=$WORK/docker
mkdir -p "$D/home"
echo '{}' >"$D/daemon.json"
SOCK=$D/docker.sock
DOCKER_OK=0
if [ -x "$DOCKERD" ] && [ -x "$DOCKER" ]; then
  "$DOCKERD" --config-file "$D/daemon.json" --data-root "$D/data" --exec-root "$D/exec" \
    --pidfile "$D/docker.pid" -H "unix://$SOCK" --bridge none --iptables=false \
    --ip6tables=false --ip-forward=false --ip-masq=false --userland-proxy=false \
    >"$D/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  dk() { DOCKER_CONFIG=$D/home "$DOCKER" -H "unix://$SOCK" "$@"; }
  for _ in $(seq 1 400); do
    [ -S "$SOCK" ] && dk version >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if dk version >/dev/null 2>&1; then
    DOCKER_OK=1
    log "dockerd $DOCKERD_PID up ($(dk version -f '{{.Server.Version}}'), driver $(dk info -f '{{.Driver}}'))"
  else
    log "WARNING: dockerd did not come up: $(tail -3 "$D/dockerd.log" | tr '\n' ' ')"
  fi
else
  log "WARNING: $DOCKERD or $DOCKER missing: docker column skipped"
fi

mkarchive() {   # $1 archive, $2 layer (plain tar or compressed), $3 diff_id, $4 tag
  local dir=$WORK/archive-src
  rm -rf "$dir" && mkdir -p "$dir/layer"
  cp "$2" "$dir/layer/layer.tar"
  python3 - "$dir" "$3" "$4" <<'PY'
import hashlib, json, sys
d, diff_id, tag = sys.argv[1:4]
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]}},
                 separators=(",", ":")).encode()
name = hashlib.sha256(cfg).hexdigest() + ".json"
open(f"{d}/{name}", "wb").write(cfg)
json.dump([{"Config": name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}],
          open(f"{d}/manifest.json", "w"))
PY
  tar -C "$dir" -cf "$1" .
  rm -rf "$dir"
}

uncompressed_sha() {   # the diffID: sha256 of the uncompressed tar
  case "$(head -c4 "$1" | od -An -tx1 | tr -d ' \n')" in
    1f8b*) gzip -dc "$1" | sha256sum | cut -d' ' -f1 ;;
    28b52ffd) zstd -dc "$1" 2>/dev/null | sha256sum | cut -d' ' -f1 ;;
    *) sha256sum "$1" | cut -d' ' -f1 ;;
  esac
}

snapshot() { (cd "$1" && find . -printf '%p %y %i %n %s %T@\n' | sort; cat outside/x outside/sentinel 2>&1); }

ESCAPES=0
declare -a ROWS=()
for layer in "$WORK"/corpus/*.tar; do
  name=$(basename "$layer" .tar)
  HOST_BEFORE=$(host_state)
  # ---- berth
  C=$WORK/b/$name
  mkdir -p "$C/root" "$C/outside" "$C/sentinel"
  echo secret >"$C/outside/x"
  echo keep >"$C/outside/sentinel"
  before=$(snapshot "$C" | grep -v '^\./root')
  if out=$("$BERTH" "$layer" "$C/root" 2>&1); then b="contained"; else b="refused: ${out#apply-layer: }"; fi
  after=$(snapshot "$C" | grep -v '^\./root')
  if [ "$before" != "$after" ] || [ "$(host_state)" != "$HOST_BEFORE" ]; then
    b="ESCAPED ($b)"; ESCAPES=$((ESCAPES + 1))
    diff <(echo "$HOST_BEFORE") <(host_state) >&2 || true
  fi
  rm -rf "$C"
  # ---- docker
  d="(skipped)"
  if [ "$DOCKER_OK" = 1 ]; then
    tag="berth-hostile:$(echo "$name" | tr -c 'a-z0-9\n' '-')"
    mkarchive "$WORK/image.tar" "$layer" "sha256:$(uncompressed_sha "$layer")" "$tag"
    if out=$(dk load -i "$WORK/image.tar" 2>&1); then d="contained"; else d="refused: $out"; fi
    leaked=$(grep -rlsx pwned "$D/data" 2>/dev/null | grep -v '/overlay2/[^/]*/diff/' || true)
    if [ -n "$leaked" ] || [ "$(host_state)" != "$HOST_BEFORE" ]; then
      d="ESCAPED ($d) ${leaked//$'\n'/ }"; ESCAPES=$((ESCAPES + 1))
      diff <(echo "$HOST_BEFORE") <(host_state) >&2 || true
    fi
    dk rmi -f "$tag" >/dev/null 2>&1 || true
    rm -f "$WORK/image.tar"
  fi
  ROWS+=("$name"$'\t'"$(printf '%s' "$d" | head -1 | cut -c1-90)"$'\t'"$(printf '%s' "$b" | head -1 | cut -c1-90)")
  log "$name: docker: $(printf '%s' "$d" | head -1) | berth: $(printf '%s' "$b" | head -1)"
done
stop_dockerd

echo
echo "hostile layers: docker load (Debian dockerd $("$DOCKER" --version 2>/dev/null | sed 's/Docker version //')) vs berth apply_layer"
printf '%s\n' "${ROWS[@]}" | python3 -c '
import sys
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
print("{:<34} {:<60} {}".format("archive", "docker load", "berth"))
for n, d, b in rows:
    print(f"{n:<34} {d[:60]:<60} {b}")'
if [ "$ESCAPES" -gt 0 ]; then
  echo "!!! $ESCAPES escape(s)"
  exit 1
fi
echo "nothing escaped"
