"""Loads the images docker-py's integration tests expect into berthd.

The tests pull alpine, busybox and hello-world from Docker Hub, which is not
reachable here. Each of those names is instead given to one image imported
from a root filesystem around the host's static busybox (what alpine's
userland is made of too): every applet under /bin, /etc/passwd and
/etc/group with alpine's first entries, the usual empty directories. The
substitutions are listed in scripts/docker-py-deselect.txt's header.

usage: python docker-py-preload.py   (DOCKER_HOST names the daemon)
"""

import io
import os
import subprocess
import tarfile

import docker

# What the tests name -> the substitute they get (all one image).
NAMES = [
    ("alpine", "3.10"),  # tests/integration/base.py TEST_IMG
    ("alpine", "latest"),
    ("busybox", "latest"),
    ("hello-world", "latest"),
]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rootfs(busybox="/bin/busybox"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:

        def add(name, kind=tarfile.DIRTYPE, mode=0o755, data=b"", link=""):
            i = tarfile.TarInfo(name)
            i.type = kind
            i.mode = mode
            i.linkname = link
            i.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        # alpine's directories (the exec tests use /var/opt as a workdir).
        for d in ["bin", "dev", "etc", "home", "lib", "media", "mnt", "opt",
                  "proc", "root", "run", "sbin", "srv", "sys", "usr",
                  "usr/bin", "usr/sbin", "usr/lib", "usr/local",
                  "usr/local/bin", "usr/share", "var", "var/cache",
                  "var/empty", "var/lib", "var/local", "var/lock", "var/log",
                  "var/mail", "var/opt", "var/run", "var/spool"]:
            add(d, mode=0o700 if d == "root" else 0o755)
        add("tmp", mode=0o1777)
        add("var/tmp", mode=0o1777)
        with open(busybox, "rb") as f:
            add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
        applets = subprocess.run([busybox, "--list"], check=True,
                                 capture_output=True, text=True).stdout.split()
        for a in sorted(set(applets) | {"sh"}):
            if a != "busybox":
                add(f"bin/{a}", tarfile.SYMTYPE, 0o777, link="busybox")
        passwd = ("root:x:0:0:root:/root:/bin/sh\n"
                  "bin:x:1:1:bin:/bin:/sbin/nologin\n"
                  "daemon:x:2:2:daemon:/sbin:/sbin/nologin\n"
                  "postgres:x:70:70::/var/lib/postgresql:/bin/sh\n"
                  "nobody:x:65534:65534:nobody:/:/sbin/nologin\n")
        group = ("root:x:0:root\nbin:x:1:root,bin,daemon\n"
                 "daemon:x:2:root,bin,daemon\nnogroup:x:65533:\n"
                 "postgres:x:70:\nnobody:x:65534:\n")
        for name, body in [("etc/passwd", passwd), ("etc/group", group),
                           ("etc/alpine-release", "3.10.0 (berth substitute)\n")]:
            add(name, tarfile.REGTYPE, 0o644, body.encode())
    return buf.getvalue()


def main():
    c = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    first, tag = NAMES[0]
    c.import_image_from_data(rootfs(), repository=first, tag=tag,
                             changes=['CMD ["/bin/sh"]', f"ENV PATH={PATH}"])
    for repo, t in NAMES[1:]:
        c.tag(f"{first}:{tag}", repo, t)
    img = c.inspect_image(f"{first}:{tag}")
    print(f"preloaded {img['Id'][:19]} as "
          + ", ".join(f"{r}:{t}" for r, t in NAMES))


if __name__ == "__main__":
    main()
