#!/usr/bin/env bash
# Server CPU per byte of blob GETs: berth-registry binaries side by side (and Debian's
# docker-registry if installed), each serving one blob to curl over loopback.
#
#   bench/registry-blob-cpu.sh new=target/release/berth-registry     # one binary
#   bench/registry-blob-cpu.sh old=/tmp/berth-registry.main new=target/release/berth-registry
#   MB=200 PULLS=10 REPS=3 PAR=1 bench/registry-blob-cpu.sh ...      # the defaults
#   PAR=4 ...        # each pull is PAR curls of the blob at once (a layered image's pull)
#   DIST=0 ...       # leave docker-registry out
#   BASE=/var/tmp EVICT=1 ...   # storage on disk, the blob evicted from the page cache
#                               # before every pull (cold reads)
#
# Every server gets the same MB-megabyte random blob (POST + PUT upload, storage under BASE,
# default /dev/shm). Then, REPS times, the servers take turns (the order rotating) to serve
# PULLS pulls of it; per turn: the server's CPU ticks (utime + stime from /proc/<pid>/stat,
# 1/100 s), wall time and the highest VmRSS sampled every 50 ms. At the end, per server: VmRSS
# at start, after the push, after the load, and VmHWM; then the median ticks. Traffic to
# 127.0.0.1 only; the EXIT trap stops the servers (by PID) and removes the work dir.
set -euo pipefail

MB=${MB:-200}
PULLS=${PULLS:-10}
REPS=${REPS:-3}
PAR=${PAR:-1}
DIST=${DIST:-1}
EVICT=${EVICT:-0}

die() { printf '[blob-cpu] ERROR: %s\n' "$*" >&2; exit 1; }
[ $# -gt 0 ] || die "usage: $0 NAME=BINARY [NAME=BINARY ...]"
for t in curl python3 sha256sum; do command -v "$t" >/dev/null || die "needs $t"; done

WORK=$(mktemp -d "${BASE:-/dev/shm}/berth-blob-cpu.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

head -c $((MB * 1000000)) /dev/urandom >"$WORK/blob"
DIGEST="sha256:$(sha256sum "$WORK/blob" | cut -d' ' -f1)"

declare -A BIN HOST PID
NAMES=()
for a in "$@"; do
  n=${a%%=*}
  [ "$n" != "$a" ] && [ -x "${a#*=}" ] || die "not NAME=BINARY (an executable): $a"
  NAMES+=("$n")
  BIN[$n]=${a#*=}
done
if [ "$DIST" = 1 ] && command -v docker-registry >/dev/null; then
  NAMES+=(docker-registry)
  BIN[docker-registry]=docker-registry
fi

start() {   # $1 name: sets HOST and PID
  local n=$1 port
  mkdir -p "$WORK/$n"
  if [ "$n" = docker-registry ]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
      "$WORK/$n" "$port" >"$WORK/$n.yml"
    docker-registry serve "$WORK/$n.yml" >"$WORK/$n.log" 2>&1 &
    PID[$n]=$!
    HOST[$n]=127.0.0.1:$port
  else
    "${BIN[$n]}" serve --addr 127.0.0.1:0 --root "$WORK/$n" >"$WORK/$n.out" 2>"$WORK/$n.log" &
    PID[$n]=$!
    for _ in $(seq 100); do grep -q '^listening on' "$WORK/$n.out" 2>/dev/null && break; sleep 0.05; done
    HOST[$n]=$(sed -n 's,^listening on http://,,p' "$WORK/$n.out")
  fi
  PIDS+=("${PID[$n]}")
  for _ in $(seq 100); do
    [ -n "${HOST[$n]}" ] && curl -fsS "http://${HOST[$n]}/v2/" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  die "$n did not start: $(tail -5 "$WORK/$n.log")"
}

push() {   # $1 name: POST a session, PUT the blob with its digest
  local h=${HOST[$1]} loc sep
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://$h/v2/bench/blob/blobs/uploads/" \
    | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case $loc in http*) ;; *) loc="http://$h$loc" ;; esac
  case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/blob" \
    "$loc${sep}digest=$DIGEST" -o /dev/null
}

evict() {   # the blob files under $1 out of the page cache
  find "$1" -type f -size +1M -exec python3 -c '
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)' {} +
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

declare -A RSS0 RSS1 TICKS
for n in "${NAMES[@]}"; do
  start "$n"
  RSS0[$n]=$(kib "${PID[$n]}" VmRSS)
  push "$n"
done
sleep 0.5
for n in "${NAMES[@]}"; do RSS1[$n]=$(kib "${PID[$n]}" VmRSS); done

k=${#NAMES[@]}
for r in $(seq "$REPS"); do
  s=$(((r - 1) % k))
  for n in "${NAMES[@]:$s}" "${NAMES[@]:0:$s}"; do
    p=${PID[$n]}
    (while sleep 0.05; do kib "$p" VmRSS; done) >"$WORK/$n.rss" 2>/dev/null &
    sampler=$!
    t0=$(ticks "$p")
    s0=$(date +%s.%N)
    for _ in $(seq "$PULLS"); do
      [ "$EVICT" = 1 ] && evict "$WORK/$n"
      curls=()
      for _ in $(seq "$PAR"); do
        curl -fsS -o /dev/null "http://${HOST[$n]}/v2/bench/blob/blobs/$DIGEST" &
        curls+=($!)
      done
      wait "${curls[@]}"
    done
    s1=$(date +%s.%N)
    t1=$(ticks "$p")
    kill "$sampler"
    wait "$sampler" 2>/dev/null || true
    TICKS[$n]+="$((t1 - t0)) "
    python3 -c "import sys; r, n, t, a, b, mb, rss = sys.argv[1:]; w = float(b) - float(a)
print(f'rep {r}  {n:<16} ticks {t:>4}  wall {w:5.2f} s  {float(mb) / w:6.0f} MB/s  VmRSS max {rss} KiB')" \
      "$r" "$n" "$((t1 - t0))" "$s0" "$s1" "$((MB * PULLS * PAR))" "$(sort -n "$WORK/$n.rss" | tail -1)"
  done
done

echo
printf '%-16s %9s %9s %9s %9s %13s  %s\n' server "rss start" "rss push" "rss load" VmHWM "median ticks" "ticks"
for n in "${NAMES[@]}"; do
  got=$(curl -fsS "http://${HOST[$n]}/v2/bench/blob/blobs/$DIGEST" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$DIGEST" ] || die "$n served another blob"
  sleep 0.3
  med=$(printf '%s\n' ${TICKS[$n]} | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
  printf '%-16s %9s %9s %9s %9s %13s  %s\n' "$n" "${RSS0[$n]}" "${RSS1[$n]}" \
    "$(kib "${PID[$n]}" VmRSS)" "$(kib "${PID[$n]}" VmHWM)" "$med" "${TICKS[$n]}"
done
echo "(RSS in KiB; ticks of 1/100 s for $REPS x $PULLS pulls of $PAR x $MB MB)"
