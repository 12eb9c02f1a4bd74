#!/bin/sh
# Fail if a test run left berth resources on the host: container cgroups
# under any berth/ parent, mounts from test temp dirs, network namespaces,
# or processes running from a test bundle.
set -u
bad=0
for d in $(find /sys/fs/cgroup -maxdepth 5 -type d -name berth 2>/dev/null); do
  [ -d "$d" ] || continue
  left=$(find "$d" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)
  if [ -n "$left" ]; then
    echo "leak: cgroups left under $d:" >&2
    echo "$left" >&2
    bad=1
  fi
done
if findmnt -rn -o TARGET | grep -E 'berth|/tmp/\.tmp' >/dev/null; then
  echo "leak: mounts left:" >&2
  findmnt -rn -o TARGET | grep -E 'berth|/tmp/\.tmp' >&2
  bad=1
fi
if [ -n "$(ip netns list 2>/dev/null)" ]; then
  echo "leak: network namespaces left:" >&2
  ip netns list >&2
  bad=1
fi
[ $bad -eq 0 ] && echo "check-leaks: nothing left behind"
exit $bad
