#!/bin/sh
# Build a minimal OCI bundle from the host's static busybox.
#
#   scripts/busybox-bundle.sh DIR [ARGS...]
#
# DIR/rootfs gets busybox and one symlink per applet; DIR/config.json is the
# default spec from `berth-runtime spec` (or runc's when BERTH_SPEC_TOOL says
# so) with terminal off and the process args set to ARGS (default: sh -c
# 'echo hello from berth').
set -eu
dir=${1:?usage: busybox-bundle.sh DIR [ARGS...]}
shift
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "busybox-bundle: $busybox not found (apt-get install busybox-static)" >&2; exit 1; }
file "$busybox" 2>/dev/null | grep -q 'statically linked' || ldd "$busybox" 2>&1 | grep -q 'not a dynamic' || {
  echo "busybox-bundle: $busybox is not static (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir/rootfs/bin" "$dir/rootfs/proc" "$dir/rootfs/sys" "$dir/rootfs/dev" \
         "$dir/rootfs/etc" "$dir/rootfs/tmp" "$dir/rootfs/root"
cp "$busybox" "$dir/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/rootfs/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$dir/rootfs/etc/passwd"
echo 'root:x:0:' > "$dir/rootfs/etc/group"
echo 'nogroup:x:65534:' >> "$dir/rootfs/etc/group"
tool=${BERTH_SPEC_TOOL:-berth-runtime}
( cd "$dir" && rm -f config.json && "$tool" spec )
if [ $# -eq 0 ]; then set -- sh -c 'echo hello from berth'; fi
args=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@")
python3 - "$dir/config.json" "$args" <<'PY'
import json, sys
path, args = sys.argv[1], json.loads(sys.argv[2])
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = args
json.dump(spec, open(path, "w"), indent=2)
PY
