#!/bin/sh
# Undo what the tests changed on a hybrid host's cgroup2 mount: berth enables
# hugetlb down to a container that asks for a hugetlb limit, and the cgroup
# v2 tests enable every available controller on a second mount of the same
# hierarchy. Given the root's cgroup.subtree_control from before the tests,
# disable whatever was enabled since, in berth's empty parent and at the root.
#   scripts/cgroup2-restore.sh "<saved subtree_control>"
set -u
u=/sys/fs/cgroup/unified
[ -f "$u/cgroup.subtree_control" ] || exit 0
saved=" ${1:-} "
for ctrl in $(cat "$u/cgroup.subtree_control"); do
  case "$saved" in *" $ctrl "*) continue ;; esac
  if [ -d "$u/berth" ]; then
    if [ -n "$(find "$u/berth" -mindepth 1 -type d 2>/dev/null)" ]; then
      echo "cgroup2-restore: $u/berth still has cgroups; leaving $ctrl enabled" >&2
      exit 0
    fi
    echo "-$ctrl" > "$u/berth/cgroup.subtree_control" 2>/dev/null || true
  fi
  echo "-$ctrl" > "$u/cgroup.subtree_control" 2>/dev/null \
    || echo "cgroup2-restore: could not disable $ctrl at $u" >&2
done
exit 0
