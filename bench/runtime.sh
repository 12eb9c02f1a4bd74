#!/usr/bin/env bash
# Container start-to-exit latency: crun vs runc vs berth-runtime.
#
#   bench/runtime.sh                 # RUNS=50 by default
#   RUNS=20 bench/runtime.sh
#   BERTH_RUNTIME=/path/to/berth-runtime bench/runtime.sh
#   BENCH_JSON=/some/file.json bench/runtime.sh   # where hyperfine's JSON goes
#
# Needs root. One busybox bundle (process: /bin/true, cgroupsPath /berth/bench)
# is built on tmpfs and run by every runtime, each with its own --root state
# dir, under a single `hyperfine -N` invocation. Then peak RSS of one `run` per
# runtime (/usr/bin/time -f %M) and the berth-runtime binary size are printed.
#
# Each runtime is pre-checked once; a runtime that cannot run the bundle (e.g.
# berth-runtime while it is still being written) is skipped with a loud warning.
#
# crun 1.8 refuses hybrid cgroup hosts whose cgroup2 mount at
# /sys/fs/cgroup/unified has controllers in it ("cgroups in hybrid mode not
# supported, drop all controllers from cgroupv2"). Only if crun's pre-check
# fails on such a host, every controller listed in unified/cgroup.controllers
# (here: hugetlb) is bound to a fresh v1 hierarchy mounted at
# /sys/fs/cgroup/<ctrl>; that empties cgroup.controllers and crun runs. The
# unified mount itself is left alone (it is held busy on some hosts, and
# unmounting it makes crun mkdir junk into the tmpfs underneath). The EXIT trap
# removes berth/ cgroups from those hierarchies, unmounts them (re-mounting and
# unmounting again if the kernel kept the hierarchy alive) until the controller
# is back on cgroup2, and removes the mount points it created.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-50}
WARMUP=5
CG=/sys/fs/cgroup
CGPARENT=berth
CGPATH=/$CGPARENT/bench
BENCH_JSON=${BENCH_JSON:-${TMPDIR:-/tmp}/berth-runtime-bench.json}
# berth: berth-runtime as `make install` leaves it (immutable: no re-exec
# needed, see crates/runtime/src/exe.rs); berth-rx: the same binary left
# writable, so every run re-executes from a read-only view of itself.
RUNTIMES=(crun runc berth berth-rx)

log()  { printf '[bench] %s\n' "$*" >&2; }
die()  { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }
loud() {
  printf '\n' >&2
  printf '[bench] !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  local line
  while IFS= read -r line; do printf '[bench] !!! %s\n' "$line" >&2; done <<<"$*"
  printf '[bench] !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}

[ "$(id -u)" -eq 0 ] || die "must run as root (containers, cgroups, mounts)"
[[ $RUNS =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 2 ] || die "RUNS must be an integer >= 2 (got '$RUNS')"

# --------------------------------------------------------------------------
# 1. dependencies
# --------------------------------------------------------------------------
install_deps() {
  local pkgs=() p
  for p in runc crun hyperfine busybox-static python3 time; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
  done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  log "installing: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
    apt-get update
    apt-get install -y "${pkgs[@]}"
  elif ! apt-get install -y "${pkgs[@]}"; then
    apt-get update
    apt-get install -y "${pkgs[@]}"
  fi
}
install_deps
for c in runc crun hyperfine python3 findmnt mountpoint timeout; do
  command -v "$c" >/dev/null || die "$c not found after install"
done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
[ -x /bin/busybox ] || die "/bin/busybox not found (apt-get install busybox-static)"

# --------------------------------------------------------------------------
# state shared with the EXIT trap
# --------------------------------------------------------------------------
WORK=""            # tmpfs-backed temp dir: bundle + state dirs
WORK_MOUNTED=0     # 1 if we mounted a tmpfs on $WORK ourselves
FIX_CTRLS=()       # controllers we moved from cgroup2 to a v1 mount
FIX_MKDIR=()       # mount points we created for them
PREEXIST=" "       # cgroup mounts where $CGPARENT/ existed before we started
declare -A BIN=()  # runtime name -> binary

cgroup_mounts() {   # every cgroup/cgroup2 mount at or below $CG
  findmnt -rn -t cgroup,cgroup2 -o TARGET 2>/dev/null | awk -v cg="$CG" '$0 == cg || index($0, cg "/") == 1' | sort -u
}

for m in $(cgroup_mounts); do [ -d "$m/$CGPARENT" ] && PREEXIST+="$m "; done

# Remove $CGPATH in every cgroup hierarchy; with "all" also $CGPARENT where we
# created it.
remove_bench_cgroups() {
  local m d
  for m in $(cgroup_mounts); do
    if [ -d "$m$CGPATH" ]; then
      # depth-first: anything a runtime nested below berth/bench, then bench
      while IFS= read -r d; do
        rmdir "$d" 2>/dev/null || log "WARNING: could not remove cgroup $d (busy?)"
      done < <(find "$m$CGPATH" -depth -type d 2>/dev/null)
    fi
    # the parent only at the very end, and only where we created it; a child
    # that was just removed may still be going offline (EBUSY), so retry
    if [ "${1:-}" = all ] && [ -d "$m/$CGPARENT" ] && [[ $PREEXIST != *" $m "* ]]; then
      wait_for 30 rmdir_quiet "$m/$CGPARENT" || log "WARNING: could not remove cgroup $m/$CGPARENT"
    fi
  done
}
rmdir_quiet() { [ ! -d "$1" ] || rmdir "$1" 2>/dev/null; }

proc_cgroups_field() {   # $1 controller, $2 column (2 = hierarchy, 3 = num_cgroups)
  awk -v c="$1" -v f="$2" '$1 == c { print $f }' /proc/cgroups
}

wait_for() {   # $1 tries (x0.1s), rest: command
  local n=$1; shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}
ctrl_on_v2()       { [ "$(proc_cgroups_field "$1" 2)" = 0 ]; }
ctrl_only_root()   { [ "$(proc_cgroups_field "$1" 3)" = 1 ]; }

undo_crun_fix() {
  local i ctrl mnt try
  for ((i = ${#FIX_CTRLS[@]} - 1; i >= 0; i--)); do
    ctrl=${FIX_CTRLS[i]}
    mnt=$CG/$ctrl
    for try in 1 2 3 4 5; do
      if mountpoint -q "$mnt"; then
        [ ! -d "$mnt$CGPATH" ] || rmdir "$mnt$CGPATH" 2>/dev/null || true
        wait_for 30 rmdir_quiet "$mnt/$CGPARENT" || true
        # cgroup offlining is asynchronous; a v1 root is only destroyed (and
        # the controller handed back to cgroup2) if it has no children when
        # the last mount goes away.
        wait_for 50 ctrl_only_root "$ctrl" || log "WARNING: $ctrl v1 hierarchy still has child cgroups"
        umount "$mnt" || { log "WARNING: umount $mnt failed"; sleep 0.5; continue; }
      fi
      wait_for 30 ctrl_on_v2 "$ctrl" && break
      # hierarchy survived the umount: mount it again (re-attaches to the same
      # root, now childless) and unmount once more
      log "$ctrl still bound to a v1 hierarchy; remount/umount (try $try)"
      mount -t cgroup -o "$ctrl" cgroup "$mnt" || break
    done
    if ctrl_on_v2 "$ctrl"; then
      log "restored: $ctrl is back on cgroup2 ($CG/unified)"
    else
      loud "FAILED to hand $ctrl back to cgroup2: check /proc/cgroups and findmnt -R $CG"
    fi
  done
  for ((i = ${#FIX_MKDIR[@]} - 1; i >= 0; i--)); do
    mountpoint -q "${FIX_MKDIR[i]}" || rmdir "${FIX_MKDIR[i]}" 2>/dev/null \
      || log "WARNING: could not remove ${FIX_MKDIR[i]}"
  done
  FIX_CTRLS=(); FIX_MKDIR=()
}

cleanup() {
  local rc=$? rt id
  set +e
  trap - EXIT INT TERM HUP
  if [ -n "$WORK" ] && [ -d "$WORK/state" ]; then
    for rt in "${!BIN[@]}"; do
      [ -d "$WORK/state/$rt" ] || continue
      for id in "pre-$rt-$$" "chk-$rt-$$" "bench-$rt-$$" "rss-$rt-$$"; do
        timeout 10 "${BIN[$rt]}" --root "$WORK/state/$rt" delete -f "$id" >/dev/null 2>&1
      done
    done
  fi
  remove_bench_cgroups all
  undo_crun_fix
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    chattr -i "$WORK/bin/berth-runtime" 2>/dev/null || true
    if [ "$WORK_MOUNTED" = 1 ]; then umount "$WORK" && rmdir "$WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --------------------------------------------------------------------------
# 2. berth-runtime binary
# --------------------------------------------------------------------------
BERTH_SKIP=""
if [ -n "${BERTH_RUNTIME:-}" ]; then
  BERTH=$BERTH_RUNTIME
  [[ $BERTH == */* ]] || BERTH=$(command -v "$BERTH" || echo "$BERTH")
else
  # The static release build `make build` makes (what `make run` installs).
  TRIPLE=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
  BERTH=$REPO/target/$TRIPLE/release/berth-runtime
  if [ ! -x "$BERTH" ]; then
    log "building berth-runtime: make build"
    (cd "$REPO" && make build) || BERTH_SKIP="make build failed"
  fi
fi
[ -n "$BERTH_SKIP" ] || [ -x "$BERTH" ] || BERTH_SKIP="$BERTH is not an executable file"
[[ $BERTH == /* ]] || BERTH=$PWD/$BERTH
BIN=([crun]=$(command -v crun) [runc]=$(command -v runc) [berth]=$BERTH)

# --------------------------------------------------------------------------
# 3. bundle on tmpfs
# --------------------------------------------------------------------------
if [ "$(findmnt -no FSTYPE -T /dev/shm 2>/dev/null | tail -1)" = tmpfs ] \
   && ! findmnt -no OPTIONS -T /dev/shm | tail -1 | grep -qw noexec; then
  WORK=$(mktemp -d /dev/shm/berth-bench.XXXXXX)
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
  mount -t tmpfs -o size=256m,mode=0700 berth-bench "$WORK"
  WORK_MOUNTED=1
fi
BUNDLE=$WORK/bundle
if [ -z "$BERTH_SKIP" ]; then
  mkdir -p "$WORK/bin" "$WORK/bin-rx"
  cp "$BERTH" "$WORK/bin-rx/berth-runtime"
  cp "$BERTH" "$WORK/bin/berth-runtime"
  chattr +i "$WORK/bin/berth-runtime" || log "WARNING: chattr +i failed: berth and berth-rx both re-exec"
  BIN[berth]=$WORK/bin/berth-runtime
  BIN[berth-rx]=$WORK/bin-rx/berth-runtime
else
  BIN[berth-rx]=$BERTH
fi
STATE=$WORK/state
mkdir -p "$STATE/crun" "$STATE/runc" "$STATE/berth"
log "bundle: $BUNDLE"
BERTH_SPEC_TOOL=runc sh "$REPO/scripts/busybox-bundle.sh" "$BUNDLE" /bin/true >&2

# the benchmark bundle: every runtime puts its container at $CGPATH.
# a second config (same rootfs, absolute root.path) is used only by the
# pre-check: it proves the process really ran in the container (pid 1 in a new
# pid namespace, inside the busybox rootfs) rather than just "exit status 0".
mkdir -p "$WORK/check"
python3 - "$BUNDLE" "$WORK/check" "$CGPATH" <<'PY'
import json, sys
bundle, check, cgpath = sys.argv[1:4]
path = bundle + "/config.json"
spec = json.load(open(path))
spec.setdefault("linux", {})["cgroupsPath"] = cgpath
json.dump(spec, open(path, "w"), indent=2)
spec["root"]["path"] = bundle + "/rootfs"
spec["process"]["args"] = ["/bin/sh", "-c",
    'test -x /bin/busybox && test -f /etc/passwd && echo "berth-bench-ok pid=$$"']
json.dump(spec, open(check + "/config.json", "w"), indent=2)
PY

# --------------------------------------------------------------------------
# 4. pre-check each runtime once; make crun work on a hybrid host if needed
# --------------------------------------------------------------------------
precheck() {   # $1 runtime; output in $WORK/precheck-$1.log
  local rt=$1 out=$WORK/precheck-$1.log
  : >"$out"
  local id
  for id in "pre-$rt-$$" "chk-$rt-$$"; do   # leftovers of an earlier attempt
    timeout 10 "${BIN[$rt]}" --root "$STATE/$rt" delete -f "$id" >/dev/null 2>&1 || true
  done
  timeout 60 "${BIN[$rt]}" --root "$STATE/$rt" run -b "$BUNDLE" "pre-$rt-$$" >>"$out" 2>&1 </dev/null \
    || { echo "[run of the benchmark bundle failed: exit $?]" >>"$out"; return 1; }
  timeout 60 "${BIN[$rt]}" --root "$STATE/$rt" run -b "$WORK/check" "chk-$rt-$$" >"$out.chk" 2>&1 </dev/null \
    || { cat "$out.chk" >>"$out"; echo "[run of the check bundle failed: exit $?]" >>"$out"; return 1; }
  cat "$out.chk" >>"$out"
  grep -qx 'berth-bench-ok pid=1' "$out.chk" \
    || { echo "[check bundle did not print 'berth-bench-ok pid=1': the container did not really run]" >>"$out"; return 1; }
}

hybrid_v2_controllers() {   # prints controllers held by a hybrid cgroup2 mount
  [ "$(findmnt -no FSTYPE "$CG" 2>/dev/null)" = tmpfs ] || return 0
  [ "$(findmnt -no FSTYPE "$CG/unified" 2>/dev/null)" = cgroup2 ] || return 0
  cat "$CG/unified/cgroup.controllers"
}

apply_crun_fix() {
  local ctrls ctrl mnt
  ctrls=$(hybrid_v2_controllers)
  [ -n "$ctrls" ] || return 1
  log "hybrid host: cgroup2 at $CG/unified holds [$ctrls]; binding them to v1 hierarchies for crun"
  # A controller enabled in a subtree_control (berth enables hugetlb down to
  # a container that asked for a hugetlb limit) cannot move to v1: disable
  # it in berth's empty parent and at the root first. berth enables it again
  # when a container needs it.
  for ctrl in $ctrls; do
    if [ -d "$CG/unified/berth" ] && [ -z "$(find "$CG/unified/berth" -mindepth 1 -type d)" ]; then
      echo "-$ctrl" > "$CG/unified/berth/cgroup.subtree_control" 2>/dev/null || true
      rmdir "$CG/unified/berth" 2>/dev/null || true
    fi
    echo "-$ctrl" > "$CG/unified/cgroup.subtree_control" 2>/dev/null || true
  done
  for ctrl in $ctrls; do
    mnt=$CG/$ctrl
    if mountpoint -q "$mnt"; then log "WARNING: $mnt is already a mount point"; return 1; fi
    if [ ! -e "$mnt" ]; then mkdir "$mnt"; FIX_MKDIR+=("$mnt"); fi
    FIX_CTRLS+=("$ctrl")
    # Right after a test run the cgroup2 side may still be tearing down
    # cgroups that used the controller: retry for a few seconds.
    local tries=0
    until mount -t cgroup -o "$ctrl" cgroup "$mnt" 2>/dev/null; do
      tries=$((tries + 1))
      if [ "$tries" -ge 20 ]; then log "WARNING: mounting $ctrl as v1 failed"; return 1; fi
      sleep 0.5
    done
  done
  [ -z "$(cat "$CG/unified/cgroup.controllers")" ]
}

ACTIVE=()
CRUN_FIX="not needed"
for rt in "${RUNTIMES[@]}"; do
  if [[ $rt == berth* ]] && [ -n "$BERTH_SKIP" ]; then continue; fi
  if precheck "$rt"; then ACTIVE+=("$rt"); continue; fi
  if [ "$rt" = crun ] && grep -q 'hybrid mode not supported' "$WORK/precheck-crun.log"; then
    log "crun refuses this host: $(grep -m1 'hybrid' "$WORK/precheck-crun.log")"
    if apply_crun_fix && precheck crun; then
      ACTIVE+=(crun)
      CRUN_FIX="controllers [${FIX_CTRLS[*]}] moved from $CG/unified (cgroup2) to v1 mounts for the run"
      continue
    fi
    remove_bench_cgroups all
    undo_crun_fix
  fi
  if [[ $rt == berth* ]]; then
    BERTH_SKIP="pre-check failed: $(tail -3 "$WORK/precheck-$rt.log" | tr '\n' ' ')"
  else
    loud "$rt cannot run the bundle; skipping it. Output:
$(tail -5 "$WORK/precheck-$rt.log")"
  fi
done
remove_bench_cgroups   # pre-check leftovers, so every runtime starts equal

if [ -n "$BERTH_SKIP" ]; then
  loud "berth-runtime SKIPPED -- NOT BENCHMARKED: $BERTH
reason: $BERTH_SKIP
(only crun and runc are reported below)"
fi
[ ${#ACTIVE[@]} -gt 0 ] || die "no runtime could run the bundle"

# --------------------------------------------------------------------------
# 5. hyperfine
# --------------------------------------------------------------------------
HF_ARGS=()
for rt in "${ACTIVE[@]}"; do
  HF_ARGS+=(-n "$rt" "${BIN[$rt]} --root $STATE/$rt run -b $BUNDLE bench-$rt-$$")
done
log "hyperfine: ${ACTIVE[*]}, warmup $WARMUP, runs $RUNS"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$BENCH_JSON" "${HF_ARGS[@]}" >&2
remove_bench_cgroups

# --------------------------------------------------------------------------
# 6. peak RSS of one run, binary sizes
# --------------------------------------------------------------------------
declare -A RSS=()
for rt in "${ACTIVE[@]}"; do
  /usr/bin/time -f %M -o "$WORK/rss-$rt" \
    "${BIN[$rt]}" --root "$STATE/$rt" run -b "$BUNDLE" "rss-$rt-$$" </dev/null >/dev/null 2>&1 \
    || log "WARNING: $rt run for RSS measurement failed"
  RSS[$rt]=$(tail -1 "$WORK/rss-$rt" 2>/dev/null || echo "?")
done
remove_bench_cgroups

# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo "no-commit")
{
  echo
  echo "berth runtime benchmark  rev $REV  $(date -Is)"
  echo "host: $(uname -sr), $(nproc) cpu; hyperfine -N --warmup $WARMUP --runs $RUNS; bundle: busybox /bin/true, cgroupsPath $CGPATH"
  echo "crun: $(crun --version | head -1); runc: $(runc --version | head -1); crun cgroup workaround: $CRUN_FIX"
  echo "json: $BENCH_JSON"
  echo
  python3 - "$BENCH_JSON" <<'PY'
import json, math, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
ms = lambda s: s * 1000.0
print(f"{'runtime':<8} {'mean ± stddev [ms]':>22} {'min [ms]':>10} {'max [ms]':>10}")
for name in ("crun", "runc", "berth", "berth-rx"):
    r = res.get(name)
    if r is None:
        print(f"{name:<8} {'(skipped)':>22}")
        continue
    print(f"{name:<8} {ms(r['mean']):>12.2f} ± {ms(r['stddev'] or 0):<7.2f} {ms(r['min']):>10.2f} {ms(r['max']):>10.2f}")
print()
for mine in ("berth", "berth-rx"):
    b = res.get(mine)
    for other in ("crun", "runc"):
        o = res.get(other)
        if b is None or o is None:
            print(f"{mine}/{other}: n/a")
            continue
        ratio = b["mean"] / o["mean"]
        err = ratio * math.sqrt(((b["stddev"] or 0) / b["mean"]) ** 2 + ((o["stddev"] or 0) / o["mean"]) ** 2)
        print(f"{mine}/{other}: {ratio:.2f} ± {err:.2f}")
PY
  echo
  echo "peak RSS of one run (/usr/bin/time -f %M, KiB):"
  for rt in "${RUNTIMES[@]}"; do
    printf '  %-8s %s\n' "$rt" "${RSS[$rt]:-(skipped)}"
  done
  echo
  echo "binary size (bytes):"
  for rt in "${RUNTIMES[@]}"; do
    if [ -f "${BIN[$rt]}" ]; then
      printf '  %-8s %10s  %s\n' "$rt" "$(stat -L -c %s "${BIN[$rt]}")" "${BIN[$rt]}"
    else
      printf '  %-8s %10s  %s\n' "$rt" "missing" "${BIN[$rt]}"
    fi
  done
  if [ -n "$BERTH_SKIP" ]; then
    echo
    echo "!!! berth-runtime was SKIPPED: $BERTH_SKIP"
  fi
}
