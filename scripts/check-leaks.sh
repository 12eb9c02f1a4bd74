#!/bin/sh
# Fail if a test run left berth resources on the host: container cgroups
# under any berth/ parent, mounts from test temp dirs, network namespaces,
# processes running from a test bundle, or berth-net test links and nft tables.
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
# berth-net and berthd tests: bridges bt<hex>/bb<hex>, user-network bridges
# berth-<hex>, veths vb…/vp…, nft tables bt<hex>/bb<hex>.
links=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' \
  | grep -E '^(bt|bb)[0-9a-f]{5,6}$|^(vb|vp)[0-9a-f]{13}$|^berth-[0-9a-f]{9}$')
if [ -n "$links" ]; then
  echo "leak: network links left:" >&2
  echo "$links" >&2
  bad=1
fi
tables=$(nft list tables 2>/dev/null | grep -E '^table (ip|ip6) (bt|bb)[0-9a-f]{5,6}$')
if [ -n "$tables" ]; then
  echo "leak: nftables tables left:" >&2
  echo "$tables" >&2
  bad=1
fi
[ $bad -eq 0 ] && echo "check-leaks: nothing left behind"
exit $bad
