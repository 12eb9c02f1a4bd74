#![allow(clippy::unwrap_used)]
//! Security regression tests: each test performs a known container-breakout attack (runc CVEs)
//! against the runtime and proves it is blocked.
//!
//! Tests run against every runtime from `common::runtimes()` where that runtime is patched for the
//! CVE. Debian bookworm's runc 1.1.5+ds1-1+deb12u1 carries the fixes for CVE-2019-5736,
//! CVE-2019-16884, CVE-2021-30465 and CVE-2024-21626, but not for the November 2025 ones. The
//! CVE-2025-31133 and CVE-2025-52565 attacks run against berth-runtime only: runc 1.1.5 binds a
//! symlinked `/dev/null` target over masked paths and follows a symlinked `/dev/console` (checked
//! by hand; these tests fail against it). The CVE-2025-52881 checks below (binds over the /proc
//! files a runtime writes, sysctl keys that try to leave /proc/sys, sysctls landing in the
//! container's procfs) hold for runc 1.1.5 too and run against both.
//!
//! Run: `BERTH_TEST_ROOT=1 cargo test -p berth-runtime-cli --test security` as root.

mod common;

use common::*;
use serde_json::{Value, json};
use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A test run against every runtime.
macro_rules! sec_test {
    ($name:ident, |$rt:ident| $body:block) => {
        #[test]
        fn $name() {
            if !require_root() {
                return;
            }
            each_runtime(stringify!($name), |$rt: &Runtime| $body);
        }
    };
}

/// A test run against berth-runtime only (the reference runc is vulnerable, see the test).
macro_rules! berth_test {
    ($name:ident, |$rt:ident| $body:block) => {
        #[test]
        fn $name() {
            if !require_root() {
                return;
            }
            each_runtime(stringify!($name), |$rt: &Runtime| {
                if $rt.name != "berth" {
                    eprintln!(
                        "{}: skipped for {} (not patched for this CVE)",
                        stringify!($name),
                        $rt.name
                    );
                    return;
                }
                $body
            });
        }
    };
}

static TAGS: AtomicUsize = AtomicUsize::new(0);

/// A string unique across tests and test processes (used as tmpfs sources and marker names).
fn tag(what: &str) -> String {
    format!(
        "bsec{}{what}{}",
        std::process::id(),
        TAGS.fetch_add(1, Ordering::SeqCst)
    )
}

// ---------------------------------------------------------------------------------------------
// Process helpers: runtime invocations with inherited extra fds and custom stdin.
// ---------------------------------------------------------------------------------------------

/// Makes the child inherit `src` as fd `dst` for every `(src, dst)` pair (not close-on-exec),
/// as a caller that leaks descriptors into the runtime would.
fn inherit_fds(cmd: &mut Command, fds: &[(RawFd, RawFd)]) {
    let fds = fds.to_vec();
    // SAFETY: between fork and exec the closure only calls fcntl, dup2 and close, which are
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Move every source out of the way first so that a source equal to some target
            // (or overwritten by an earlier dup2) is still intact, and so that dup2 never gets
            // src == dst (which would keep FD_CLOEXEC).
            let mut tmp = [0 as RawFd; 16];
            for (i, &(src, _)) in fds.iter().enumerate().take(16) {
                let t = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 200);
                if t < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                tmp[i] = t;
            }
            for (i, &(_, dst)) in fds.iter().enumerate().take(16) {
                if libc::dup2(tmp[i], dst) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for &t in tmp.iter().take(fds.len().min(16)) {
                libc::close(t);
            }
            Ok(())
        });
    }
}

fn what_of(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with `stdin`, the extra inherited `fds`, and stdout/stderr written to
/// `so`/`se` (files, never pipes: a container inheriting them would keep a pipe open).
fn run_full(
    cmd: &mut Command,
    stdin: Stdio,
    fds: &[(RawFd, RawFd)],
    so: &Path,
    se: &Path,
) -> (Out, Option<std::process::ChildStdin>) {
    inherit_fds(cmd, fds);
    let what = what_of(cmd);
    cmd.stdin(stdin)
        .stdout(File::create(so).unwrap())
        .stderr(File::create(se).unwrap());
    let mut child: Child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{what}`: {e}"));
    let keep = child.stdin.take();
    let code = wait_child(&mut child, &what, CMD_TIMEOUT);
    (
        Out {
            code,
            stdout: fs::read_to_string(so).unwrap_or_default(),
            stderr: fs::read_to_string(se).unwrap_or_default(),
            what,
        },
        keep,
    )
}

/// `<runtime> --root R <args>` with extra inherited fds; output captured in files under the
/// container's temp dir.
fn rt_fds(c: &Ct, args: &[&str], fds: &[(RawFd, RawFd)]) -> Out {
    let n = TAGS.fetch_add(1, Ordering::SeqCst);
    let so = c.tmp.join(format!("cmd{n}.out"));
    let se = c.tmp.join(format!("cmd{n}.err"));
    let mut cmd = c.cmd();
    cmd.args(args);
    run_full(&mut cmd, Stdio::null(), fds, &so, &se).0
}

/// `create` with a given stdin (the container inherits it) and extra inherited fds.
fn create_full(
    c: &Ct,
    extra: &[&str],
    stdin: Stdio,
    fds: &[(RawFd, RawFd)],
) -> (Out, Option<std::process::ChildStdin>) {
    c.write_spec();
    let mut cmd = c.cmd();
    cmd.arg("create")
        .arg("--bundle")
        .arg(&c.bundle)
        .args(extra)
        .arg(&c.id);
    run_full(&mut cmd, stdin, fds, &c.out_path, &c.err_path)
}

/// `run` with extra inherited fds; `code` is the container's exit code.
fn run_with_fds(c: &Ct, fds: &[(RawFd, RawFd)]) -> Out {
    c.write_spec();
    let mut cmd = c.cmd();
    cmd.arg("run").arg("--bundle").arg(&c.bundle).arg(&c.id);
    run_full(&mut cmd, Stdio::null(), fds, &c.out_path, &c.err_path).0
}

fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(o.status.success(), "sha256sum {}", p.display());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Spec helpers.
// ---------------------------------------------------------------------------------------------

/// Appends a mount; returns its index in `mounts`.
fn push_mount(c: &mut Ct, m: Value) -> usize {
    let mounts = c.spec["mounts"].as_array_mut().unwrap();
    mounts.push(m);
    mounts.len() - 1
}

fn remove_mount(c: &mut Ct, dest: &str) {
    c.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != dest);
}

fn bind(src: &Path, dest: &str, opts: &[&str]) -> Value {
    json!({"destination": dest, "type": "bind", "source": src, "options": opts})
}

fn tmpfs(source: &str, dest: &str) -> Value {
    json!({"destination": dest, "type": "tmpfs", "source": source, "options": ["nosuid", "nodev", "mode=755"]})
}

/// Makes the host's dynamic loader and libraries visible (read-only) in the rootfs, so that the
/// runtime binary itself (dynamically linked) can run inside the container.
fn add_host_libs(c: &mut Ct) {
    for p in ["/lib", "/lib64", "/usr/lib", "/usr/lib64"] {
        let Ok(meta) = fs::symlink_metadata(p) else {
            continue;
        };
        let inside = c.rootfs.join(p.trim_start_matches('/'));
        if meta.file_type().is_symlink() {
            fs::create_dir_all(inside.parent().unwrap()).unwrap();
            let _ = symlink(fs::read_link(p).unwrap(), &inside);
        } else if meta.is_dir() {
            push_mount(c, bind(Path::new(p), p, &["rbind", "ro"]));
        }
    }
}

/// `(mount point, fstype, source)` of every mount in a mountinfo text.
fn mountinfo(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mp = left.split(' ').nth(4)?.to_string();
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let source = r.next()?.to_string();
            Some((mp, fstype, source))
        })
        .collect()
}

fn host_mounts() -> Vec<(String, String, String)> {
    mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap())
}

/// A directory under /tmp that is removed on drop (for host-side volumes shared by containers).
fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let td = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    fs::set_permissions(
        td.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    td
}

// ---------------------------------------------------------------------------------------------
// CVE-2019-5736: overwriting the runtime binary through /proc/<pid>/exe.
// ---------------------------------------------------------------------------------------------

/// Shell snippet trying every write to `/proc/1/exe` a container can make. Non-destructive if it
/// ever succeeded: it appends nothing but opens for writing (`dd count=0`, `<>`), or rewrites the
/// file with its own content. Prints `WROTE<n>` for any open-for-write that succeeded.
const EXE_WRITES: &str = "\
dd of=/proc/1/exe bs=1 count=0 conv=notrunc 2>/dev/null && echo WROTE1; \
(exec 7<>/proc/1/exe) 2>/dev/null && echo WROTE2; \
dd if=/proc/1/exe of=/proc/1/exe conv=notrunc 2>/dev/null && echo WROTE3; \
(: >> /proc/1/exe) 2>/dev/null && echo WROTE4; \
echo attempts-done";

fn check_exe_writes_blocked(c: &Ct, extra: &str) -> String {
    let o = c.rt(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        &format!("{EXE_WRITES}; {extra}; true"),
    ]);
    o.ok();
    assert!(
        o.stdout.contains("attempts-done"),
        "{} write attempts did not run: {o:?}",
        c.tag()
    );
    assert!(
        !o.stdout.contains("WROTE"),
        "{} a container process opened /proc/1/exe (the runtime binary) for writing: {o:?}",
        c.tag()
    );
    o.stdout
}

/// Opening `/proc/<pid>/exe` for writing from the host must fail with EROFS or ETXTBSY.
fn check_host_open_exe_fails(tag: &str, pid: i32) {
    let p = format!("/proc/{pid}/exe");
    match OpenOptions::new().append(true).open(&p) {
        Ok(_) => panic!("{tag} opened {p} (the runtime binary) for writing"),
        Err(e) => assert!(
            [libc::EROFS, libc::ETXTBSY].contains(&errno_of(&e)),
            "{tag} opening {p} for writing failed with {e}, expected EROFS or ETXTBSY"
        ),
    }
}

/// The original attack's second half: keep a handle on the exe and reopen it for writing once
/// the runtime process has exited (no more ETXTBSY).
fn check_reopen_after_exit(tag: &str, rt: &Runtime, held: &File, need_erofs: bool) {
    let p = format!("/proc/self/fd/{}", held.as_raw_fd());
    match OpenOptions::new().append(true).open(&p) {
        Ok(f) => {
            // Only acceptable if what we got is a private copy (runc's sealed memfd), not the
            // runtime binary on the host; we never write to it.
            let host = fs::metadata(&rt.bin).unwrap();
            let got = f.metadata().unwrap();
            assert!(
                !need_erofs && (got.dev(), got.ino()) != (host.dev(), host.ino()),
                "{tag} reopened the exited runtime's exe for writing, and it is the host binary {}",
                rt.bin.display()
            );
        }
        Err(e) => {
            if need_erofs {
                // ETXTBSY while any other berth-runtime process (parallel tests) executes the same
                // file; once none does, the read-only mount must still refuse: EROFS.
                let mut errno = errno_of(&e);
                let deadline = Instant::now() + Duration::from_secs(5);
                while errno == libc::ETXTBSY && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                    match OpenOptions::new().append(true).open(&p) {
                        Ok(_) => panic!("{tag} reopened the exited runtime's exe for writing"),
                        Err(e) => errno = errno_of(&e),
                    }
                }
                assert!(
                    errno == libc::EROFS || errno == libc::ETXTBSY,
                    "{tag} reopening the exited runtime's exe for writing: errno {errno}, \
                     expected EROFS"
                );
                if errno == libc::ETXTBSY {
                    eprintln!("{tag} note: the runtime binary stayed busy (ETXTBSY) for 5 s");
                }
            }
        }
    }
}

sec_test!(
    cve_2019_5736_runtime_binary_not_writable_from_created_init,
    |rt| {
        // The container's init, before `start`, is the runtime binary itself: attack it from the host
        // and from a process `exec`'d into the created container.
        let before = sha256(&rt.bin);
        let mut c = Ct::new(rt);
        c.args(&["sleep", "600"]);
        c.create().ok();
        let pid = c.pid();
        check_host_open_exe_fails(&c.tag(), pid);
        let held = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(format!("/proc/{pid}/exe"))
            .unwrap();
        // berth keeps the init non-dumpable until it execs the user program, so a container process
        // cannot even open /proc/1/exe. runc 1.1.5's init is dumpable in the created state (an exec'd
        // process can read it); its protection is the sealed memfd copy, so only berth is held to it.
        let out = check_exe_writes_blocked(
            &c,
            "cat /proc/1/exe >/dev/null 2>&1 && echo READABLE; readlink /proc/1/exe >/dev/null 2>&1 && echo LINK",
        );
        if rt.name == "berth" {
            assert!(
                !out.contains("READABLE") && !out.contains("LINK"),
                "{} the not-yet-started init (the runtime binary) is dumpable: an exec'd process \
             opened /proc/1/exe: {out:?}",
                c.tag()
            );
        }
        c.delete_force();
        assert!(
            wait_until(WAIT, || !pid_alive(pid)),
            "{} init survived",
            c.tag()
        );
        check_reopen_after_exit(&c.tag(), rt, &held, rt.name == "berth");
        drop(held);
        assert_eq!(
            sha256(&rt.bin),
            before,
            "{} runtime binary changed",
            c.tag()
        );
    }
);

// runc 1.1.5's `update` looks the container up before reading `-r -`, so its pid 1 exits at once
// and there is no process to attack: the created-init test above covers runc.
berth_test!(cve_2019_5736_container_pid1_execs_runtime_binary, |rt| {
    let before = sha256(&rt.bin);
    let mut c = Ct::new(rt);
    // The runtime is dynamically linked: give the container the host's loader and libraries.
    add_host_libs(&mut c);
    // pid 1 execs /proc/self/exe (the runtime binary, the same as a `#!/proc/self/exe` script
    // would) and blocks reading the stdin pipe we keep open.
    c.args(&["/proc/self/exe", "update", "x", "-r", "-"]);
    let (o, stdin) = create_full(&c, &[], Stdio::piped(), &[]);
    o.ok();
    let stdin = stdin.unwrap();
    c.start().ok();
    let pid = c.pid();
    let started = wait_until(WAIT, || {
        fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .starts_with(b"/proc/self/exe\0update\0")
    });
    assert!(
        started,
        "{} pid 1 did not exec the runtime binary; stderr {:?}",
        c.tag(),
        fs::read_to_string(&c.err_path).unwrap_or_default()
    );
    let exe = fs::metadata(format!("/proc/{pid}/exe")).unwrap();
    let host = fs::metadata(&rt.bin).unwrap();
    assert_eq!(
        (exe.dev(), exe.ino()),
        (host.dev(), host.ino()),
        "{} pid 1 is not running the runtime binary",
        c.tag()
    );
    check_host_open_exe_fails(&c.tag(), pid);
    let held = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .unwrap();
    check_exe_writes_blocked(&c, "true");
    // EOF on stdin: the runtime binary in the container exits (invalid resources JSON).
    drop(stdin);
    assert!(
        wait_until(WAIT, || !pid_alive(pid)),
        "{} pid 1 did not exit on EOF",
        c.tag()
    );
    check_reopen_after_exit(&c.tag(), rt, &held, true);
    drop(held);
    assert_eq!(
        sha256(&rt.bin),
        before,
        "{} runtime binary changed",
        c.tag()
    );
});

trait DeleteForce {
    fn delete_force(&self);
}

impl DeleteForce for Ct {
    fn delete_force(&self) {
        let _ = self.rt(&["delete", "--force", &self.id]);
    }
}

// ---------------------------------------------------------------------------------------------
// CVE-2019-16884: mounts over /proc faking /proc/self/attr.
// ---------------------------------------------------------------------------------------------

sec_test!(cve_2019_16884_mounts_over_proc_refused, |rt| {
    let host = shared_dir("berth-sec-host-");
    let fake = host.path().join("fake");
    fs::create_dir_all(fake.join("attr")).unwrap();
    fs::create_dir_all(fake.join("self/attr")).unwrap();
    fs::write(fake.join("attr/current"), "unconfined-fake").unwrap();
    let fake_attr = fake.join("attr");
    let tmpfs_src = tag("proc");
    let cases: Vec<(&str, Value)> = vec![
        ("tmpfs on /proc", tmpfs(&tmpfs_src, "/proc")),
        ("bind on /proc", bind(&fake, "/proc", &["rbind"])),
        (
            "bind on /proc/self/attr",
            bind(&fake_attr, "/proc/self/attr", &["rbind"]),
        ),
        (
            "bind on /proc/1/attr",
            bind(&fake_attr, "/proc/1/attr", &["rbind"]),
        ),
        ("bind on /proc/sys", bind(&fake, "/proc/sys", &["rbind"])),
        ("tmpfs on /proc/sys", tmpfs(&tmpfs_src, "/proc/sys")),
        (
            "bind on /tmp/../proc/sys",
            bind(&fake, "/tmp/../proc/sys", &["rbind"]),
        ),
        ("bind on proc//sys", bind(&fake, "proc//sys", &["rbind"])),
    ];
    for (what, m) in cases {
        let mut c = Ct::new(rt);
        let i = push_mount(&mut c, m);
        // If a runtime accepts the mount, /proc/self/attr must still be procfs (0x9fa0).
        c.sh("stat -f -c %t /proc/self/attr/current; echo reached");
        let o = c.run();
        if rt.name == "berth" {
            assert_ne!(o.code, 0, "{} {what}: accepted: {o:?}", c.tag());
            assert_one_line_error(&o, &format!("{} {what}", c.tag()));
            assert!(
                o.stderr.contains(&format!("mounts[{i}]")),
                "{} {what}: error does not name mounts[{i}]: {:?}",
                c.tag(),
                o.stderr
            );
        } else if o.code == 0 {
            assert!(
                o.stdout.lines().next() == Some("9fa0"),
                "{} {what}: /proc/self/attr is not procfs: {o:?}",
                c.tag()
            );
        }
        assert!(
            !o.stdout.contains("unconfined-fake"),
            "{} {what}: fake attr visible",
            c.tag()
        );
    }
    assert_eq!(
        fs::read_to_string(fake.join("attr/current")).unwrap(),
        "unconfined-fake",
        "a write through /proc/self/attr reached the fake directory"
    );
});

// ---------------------------------------------------------------------------------------------
// CVE-2021-30465: symlink-exchange race on mount destinations.
// ---------------------------------------------------------------------------------------------

const RACE_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    for (;;) {
        syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE);
    }
}
"#;

/// Compiles the static renameat2(RENAME_EXCHANGE) loop into `out`.
fn build_race_helper(dir: &Path, out: &Path) {
    let src = dir.join("race.c");
    fs::write(&src, RACE_C).unwrap();
    let o = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(out)
        .arg(&src)
        .output()
        .expect("gcc (needed to build the static race helper)");
    assert!(
        o.status.success(),
        "gcc -static failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

sec_test!(cve_2021_30465_symlink_exchange_race, |rt| {
    // Host volume V shared by both containers: V/a is a directory, V/b a symlink to a decoy host
    // directory (not `/`: if the runtime followed it on the host, the damage stays in the decoy,
    // and an empty decoy proves it did not). The attacker swaps them in a loop.
    let shared = shared_dir("berth-sec-race-");
    let vol = shared.path().join("vol");
    let decoy = shared.path().join("decoy");
    fs::create_dir_all(vol.join("a")).unwrap();
    fs::create_dir_all(&decoy).unwrap();
    symlink(&decoy, vol.join("b")).unwrap();
    // Destinations x0..x7 exist in V/a beforehand (the mount itself is raced); x8..x11 must be
    // created by the runtime while the race runs (its mkdir is raced too).
    const N: usize = 12;
    const PRE: usize = 8;
    for k in 0..PRE {
        fs::create_dir_all(vol.join("a").join(format!("x{k}"))).unwrap();
    }
    let tagbase = tag("race");
    let host_root_mounts =
        |ms: &[(String, String, String)]| ms.iter().filter(|m| m.0 == "/").count();
    let before = host_mounts();

    let mut attacker = Ct::new(rt);
    build_race_helper(&attacker.tmp, &attacker.rootfs.join("bin/race"));
    push_mount(&mut attacker, bind(&vol, "/vol", &["rbind", "rw"]));
    attacker.start_running("exec /bin/race /vol/a /vol/b");

    let decoy_in_root = decoy.to_string_lossy().into_owned();
    let mut ok = 0;
    for iter in 0..12 {
        // Even rounds race only the mounts, odd rounds the mkdirs too.
        let n = if iter % 2 == 0 { PRE } else { N };
        let mut v = Ct::new(rt);
        push_mount(&mut v, bind(&vol, "/vol", &["rbind", "rw"]));
        // If the runtime resolves V/b (or V/a swapped for the link) as the symlink, the link is
        // followed inside the container root: make that path exist there too.
        for k in 0..n {
            if k < PRE {
                let inside = v
                    .rootfs
                    .join(decoy_in_root.trim_start_matches('/'))
                    .join(format!("x{k}"));
                fs::create_dir_all(inside).unwrap();
            }
            let dest = if k % 2 == 0 { "a" } else { "b" };
            push_mount(
                &mut v,
                tmpfs(
                    &format!("{tagbase}i{iter}k{k}"),
                    &format!("/vol/{dest}/x{k}"),
                ),
            );
        }
        v.args(&["sleep", "600"]);
        let o = v.create();
        if o.code != 0 {
            // Failing closed is acceptable; nothing may have leaked (checked on drop).
            continue;
        }
        ok += 1;
        let pid = v.pid();
        let mi = mountinfo(&fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap());
        for k in 0..n {
            let src = format!("{tagbase}i{iter}k{k}");
            let at: Vec<&String> = mi.iter().filter(|m| m.2 == src).map(|m| &m.0).collect();
            let allowed = [
                format!("/vol/a/x{k}"),
                format!("/vol/b/x{k}"),
                format!("{decoy_in_root}/x{k}"),
            ];
            assert!(
                at.len() == 1 && allowed.contains(at[0]),
                "{} tmpfs {k} is mounted at {at:?} in the victim (expected exactly one of \
                 {allowed:?}); a mount that escaped the rootfs is not visible",
                v.tag()
            );
        }
    }
    eprintln!("{} victims created: {ok}/12", attacker.tag());
    // berth resolves and mounts by fd and succeeds in every round that only races the mounts;
    // runc 1.1.5 often fails closed (its /proc/self/fd check refuses the swapped path), so only
    // berth must have had victims whose mount placement was checked.
    assert!(
        ok > 0 || rt.name != "berth",
        "{} every victim failed to be created: the placement of its mounts was never checked",
        attacker.tag()
    );
    drop(attacker);

    let after = host_mounts();
    assert!(
        after.iter().all(|m| !m.2.starts_with(&tagbase)),
        "a victim tmpfs is mounted in the host mount namespace"
    );
    assert_eq!(
        host_root_mounts(&before),
        host_root_mounts(&after),
        "the number of mounts on the host's / changed"
    );
    // runc 1.1.5 still creates missing destination directories with a path-based MkdirAll
    // after resolving them, so the swapped-in symlink makes it mkdir inside the host decoy (its
    // mount is then refused by the /proc/self/fd check); runc 1.2 fixed that with
    // MkdirAllInRoot. berth creates directories by fd inside the root, so it is held to this.
    let leaked: Vec<_> = fs::read_dir(&decoy).unwrap().flatten().collect();
    if rt.name == "berth" {
        assert!(
            leaked.is_empty(),
            "the runtime created {leaked:?} in the decoy host directory through the symlink"
        );
    } else if !leaked.is_empty() {
        eprintln!(
            "note: {} created {leaked:?} in the host decoy directory (mkdir through the symlink)",
            rt.name
        );
    }

    assert!(
        mounts_under(shared.path()).is_empty(),
        "host mounts under the shared volume: {:?}",
        mounts_under(shared.path())
    );
});

sec_test!(cve_2021_30465_symlink_destinations_stay_in_rootfs, |rt| {
    let shared = shared_dir("berth-sec-link-");
    let decoy = shared.path().join("decoy");
    fs::create_dir_all(&decoy).unwrap();
    let src1 = shared.path().join("src1");
    let src2 = shared.path().join("src2");
    let m1 = tag("m1");
    let m2 = tag("m2");
    fs::create_dir_all(&src1).unwrap();
    fs::create_dir_all(&src2).unwrap();
    fs::write(src1.join(&m1), "1").unwrap();
    fs::write(src2.join(&m2), "2").unwrap();
    let deep = tag("deep");
    let ttag = tag("t");

    let mut c = Ct::new(rt);
    // Absolute link to /etc, relative link climbing far above the rootfs to /mnt, absolute link
    // to a host directory.
    symlink("/etc", c.rootfs.join("abs")).unwrap();
    symlink("../../../../../../../../../../mnt", c.rootfs.join("rel")).unwrap();
    symlink(&decoy, c.rootfs.join("hostlink")).unwrap();
    push_mount(&mut c, bind(&src1, "/abs", &["rbind", "ro"]));
    push_mount(
        &mut c,
        bind(&src2, &format!("/rel/{deep}"), &["rbind", "ro"]),
    );
    push_mount(&mut c, tmpfs(&ttag, "/hostlink/t"));
    let decoy_in = decoy.to_string_lossy().into_owned();
    c.sh(&format!(
        "ls /etc; echo --; ls /mnt/{deep}; echo --; grep -c ' - tmpfs {ttag} ' /proc/self/mountinfo; \
         grep ' - tmpfs {ttag} ' /proc/self/mountinfo | cut -d' ' -f5"
    ));
    let o = c.run();
    if o.code == 0 {
        let parts: Vec<&str> = o.stdout.split("--\n").collect();
        assert_eq!(parts.len(), 3, "{} unexpected output {o:?}", c.tag());
        assert!(
            parts[0].lines().any(|l| l == m1),
            "{} bind on /abs (-> /etc) did not land on the container's /etc: {o:?}",
            c.tag()
        );
        assert!(
            parts[1].lines().any(|l| l == m2),
            "{} bind on /rel/{deep} (-> ../../../mnt) did not land in the container's /mnt: {o:?}",
            c.tag()
        );
        assert_eq!(
            parts[2].trim(),
            format!("1\n{decoy_in}/t"),
            "{} tmpfs on /hostlink/t did not land inside the rootfs: {o:?}",
            c.tag()
        );
    } else {
        assert_one_line_error(&o, &c.tag());
    }
    assert!(
        !Path::new("/etc").join(&m1).exists() && !Path::new("/mnt").join(&deep).exists(),
        "{} a mount or directory reached the host",
        c.tag()
    );
    assert!(
        fs::read_dir(&decoy).unwrap().next().is_none(),
        "{} the runtime created entries in the host directory behind /hostlink",
        c.tag()
    );
    assert!(
        host_mounts().iter().all(|m| m.2 != ttag),
        "{} the tmpfs is mounted on the host",
        c.tag()
    );
});

// ---------------------------------------------------------------------------------------------
// CVE-2024-21626: leaked fds and a cwd outside the container.
// ---------------------------------------------------------------------------------------------

/// A host directory `D` holding a unique marker, and an open fd on `D/a/b/c` (so `../../../`
/// from a cwd on it would reach the marker).
struct Leak {
    dir: tempfile::TempDir,
    marker: String,
    fd: File,
}

impl Leak {
    fn new() -> Leak {
        let dir = shared_dir("berth-sec-leak-");
        let marker = tag("marker");
        fs::write(dir.path().join(&marker), "host secret").unwrap();
        fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        let fd = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(dir.path().join("a/b/c"))
            .unwrap();
        Leak { dir, marker, fd }
    }

    /// The leaked fd inherited by the runtime as 5, 6, 7 and 8.
    fn fds(&self) -> Vec<(RawFd, RawFd)> {
        (5..=8).map(|n| (self.fd.as_raw_fd(), n)).collect()
    }
}

const CWD_PROBE: &str = "readlink /proc/self/cwd; echo --; ls -a ../../../ ../../../../../../../; \
                         cat ../../../bsec* 2>&1; echo probe-done";

/// Either the runtime refused, or the process ran with a cwd inside the container and could not
/// reach the host directory.
fn check_cwd_probe(tag: &str, what: &str, o: &Out, marker: &str) {
    assert!(
        !o.stdout.contains(marker) && !o.stdout.contains("host secret"),
        "{tag} {what}: the host directory is reachable from the container: {o:?}"
    );
    if o.code == 0 {
        let cwd = o.stdout.lines().next().unwrap_or_default();
        assert!(
            cwd.starts_with('/') && !cwd.contains("berth-sec-leak") && !cwd.contains("unreachable"),
            "{tag} {what}: cwd {cwd:?} is outside the container: {o:?}"
        );
        assert!(o.stdout.contains("probe-done"), "{tag} {what}: {o:?}");
    } else {
        assert!(
            !o.stdout.contains("probe-done"),
            "{tag} {what}: failed after running the probe: {o:?}"
        );
    }
}

// process.cwd = /proc/self/fd/N while the runtime holds a leaked host directory fd at 5..8 (and its
// own internal fds at low numbers). Both runtimes refuse at create time while creating the cwd
// inside the rootfs (berth: ELOOP, a magic link under RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS; runc:
// ENOTDIR); `exec --cwd` below reaches the chdir itself.
sec_test!(cve_2024_21626_cwd_on_leaked_fd, |rt| {
    let leak = Leak::new();
    for n in 3..=10 {
        let mut c = Ct::new(rt);
        c.spec["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        c.sh(CWD_PROBE);
        let o = run_with_fds(&c, &leak.fds());
        check_cwd_probe(
            &c.tag(),
            &format!("cwd /proc/self/fd/{n}"),
            &o,
            &leak.marker,
        );
        if o.code != 0 && rt.name == "berth" {
            assert_one_line_error(&o, &c.tag());
        }
    }
});

// `exec --cwd /proc/self/fd/N` with the leaked fds passed to `exec`: berth's exec process still
// holds them at chdir time, so for N = 5..8 the chdir reaches the host directory and the
// getcwd-after-chdir check is what refuses it; runc closes inherited fds earlier.
sec_test!(cve_2024_21626_exec_cwd_on_leaked_fd, |rt| {
    let leak = Leak::new();
    let mut c = Ct::new(rt);
    c.start_running("sleep 600");
    for n in 3..=10 {
        let cwd = format!("/proc/self/fd/{n}");
        let o = rt_fds(
            &c,
            &["exec", "--cwd", &cwd, &c.id, "sh", "-c", CWD_PROBE],
            &leak.fds(),
        );
        check_cwd_probe(&c.tag(), &format!("exec --cwd {cwd}"), &o, &leak.marker);
    }
});

/// Open fds of `pid` as seen from the host.
fn host_fd_list(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    v.sort_unstable();
    v
}

/// Fds the shell of `sh -c 'ls /proc/$$/fd; echo end'` reported.
fn listed_fds(out: &str) -> Vec<i32> {
    let mut v: Vec<i32> = out
        .lines()
        .take_while(|l| *l != "end")
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    v.sort_unstable();
    v
}

sec_test!(cve_2024_21626_no_leaked_fds, |rt| {
    let leak = Leak::new();
    let fd_list = "ls /proc/$$/fd; echo end";

    // Without --preserve-fds: only stdio reaches the container, for init and for exec.
    let mut c = Ct::new(rt);
    c.args(&["sleep", "600"]);
    create_full(&c, &[], Stdio::null(), &leak.fds()).0.ok();
    c.start().ok();
    let pid = c.pid();
    assert_eq!(
        host_fd_list(pid),
        [0, 1, 2],
        "{} container init has extra fds: {:?}",
        c.tag(),
        fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .map(|e| fs::read_link(e.path()).unwrap_or_default())
            .collect::<Vec<_>>()
    );
    let o = rt_fds(&c, &["exec", &c.id, "sh", "-c", fd_list], &leak.fds());
    o.ok();
    assert_eq!(
        listed_fds(&o.stdout),
        [0, 1, 2],
        "{} exec'd process has extra fds: {o:?}",
        c.tag()
    );
    drop(c);

    // --preserve-fds 1: exactly fd 3 (a host file) reaches the container.
    let secret = tag("preserved");
    let pf = leak.dir.path().join("preserved.txt");
    fs::write(&pf, &secret).unwrap();
    let pfile = File::open(&pf).unwrap();
    let mut fds = vec![(pfile.as_raw_fd(), 3)];
    fds.extend(leak.fds());
    let mut c = Ct::new(rt);
    c.args(&["sleep", "600"]);
    create_full(&c, &["--preserve-fds", "1"], Stdio::null(), &fds)
        .0
        .ok();
    c.start().ok();
    let pid = c.pid();
    assert_eq!(
        host_fd_list(pid),
        [0, 1, 2, 3],
        "{} init with --preserve-fds 1",
        c.tag()
    );
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/fd/3")).unwrap(),
        pf,
        "{} preserved fd 3 is not the file passed",
        c.tag()
    );
    let o = rt_fds(
        &c,
        &[
            "exec",
            "--preserve-fds",
            "1",
            &c.id,
            "sh",
            "-c",
            &format!("{fd_list}; cat <&3"),
        ],
        &fds,
    );
    o.ok();
    assert_eq!(
        listed_fds(&o.stdout),
        [0, 1, 2, 3],
        "{} exec --preserve-fds 1: {o:?}",
        c.tag()
    );
    assert!(
        o.stdout.contains(&secret),
        "{} preserved fd 3 not readable: {o:?}",
        c.tag()
    );
});

// ---------------------------------------------------------------------------------------------
// CVE-2025-31133: maskedPaths with /dev/null replaced by a symlink (or another file).
// ---------------------------------------------------------------------------------------------

/// A bundle dir bound onto the container's /dev, holding `null` as given.
fn dev_from_bundle(c: &mut Ct, null: impl FnOnce(&Path)) {
    let dev = c.bundle.join("devdir");
    fs::create_dir_all(&dev).unwrap();
    null(&dev.join("null"));
    let mounts = c.spec["mounts"].as_array_mut().unwrap();
    for m in mounts.iter_mut() {
        if m["destination"] == "/dev" {
            *m = bind(&dev, "/dev", &["rbind", "nosuid"]);
        }
    }
    let masked = c.spec["linux"]["maskedPaths"].as_array_mut().unwrap();
    for p in MASKED_FILES {
        if !masked.iter().any(|m| m == p) {
            masked.push(json!(p));
        }
    }
}

/// Masked files (masked with /dev/null), those of them that exist on this kernel.
const MASKED_FILES: [&str; 3] = ["/proc/sysrq-trigger", "/proc/keys", "/proc/timer_list"];

fn existing_masked_files() -> Vec<&'static str> {
    let v: Vec<&str> = MASKED_FILES
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(
        !v.is_empty(),
        "none of {MASKED_FILES:?} exists on this host"
    );
    v
}

/// Plants the container's `/dev/null` (given its path in the bundle).
type NullMaker<'a> = Box<dyn FnOnce(&Path) + 'a>;

/// Restores the host's core_pattern if a test changed it (it never should).
struct CorePatternGuard(Vec<u8>);

impl CorePatternGuard {
    const PATH: &str = "/proc/sys/kernel/core_pattern";
    fn new() -> Self {
        CorePatternGuard(fs::read(Self::PATH).unwrap())
    }
    fn changed(&self) -> bool {
        fs::read(Self::PATH).unwrap() != self.0
    }
}

impl Drop for CorePatternGuard {
    fn drop(&mut self) {
        if self.changed() {
            let _ = fs::write(Self::PATH, &self.0);
        }
    }
}

berth_test!(cve_2025_31133_masked_paths_dev_null_swapped, |rt| {
    let core = CorePatternGuard::new();
    let regular = tag("notnull");
    let variants: Vec<(&str, NullMaker)> = vec![
        (
            "null -> /proc/sys/kernel/core_pattern",
            Box::new(|p: &Path| symlink("/proc/sys/kernel/core_pattern", p).unwrap()),
        ),
        (
            "null -> ../proc/sys/kernel/core_pattern",
            Box::new(|p: &Path| symlink("../proc/sys/kernel/core_pattern", p).unwrap()),
        ),
        (
            "null is a regular file",
            Box::new(|p: &Path| fs::write(p, &regular).unwrap()),
        ),
        (
            "null is a directory",
            Box::new(|p: &Path| fs::create_dir(p).unwrap()),
        ),
    ];
    for (what, null) in variants {
        let mut c = Ct::new(rt);
        dev_from_bundle(&mut c, null);
        c.args(&["sleep", "600"]);
        let o = c.create();
        if o.code == 0 {
            // Should not happen; if it did, the masks must still be the null device.
            let pid = c.pid();
            for p in existing_masked_files() {
                let m = fs::metadata(format!("/proc/{pid}/root{p}")).unwrap();
                assert!(
                    m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3),
                    "{} {what}: masked {p} is not /dev/null",
                    c.tag()
                );
            }
            panic!(
                "{} {what}: create accepted a /dev/null that is not 1:3",
                c.tag()
            );
        }
        assert_one_line_error(&o, &format!("{} {what}", c.tag()));
        assert!(
            o.stderr.contains("/dev/null"),
            "{} {what}: error does not mention /dev/null: {:?}",
            c.tag(),
            o.stderr
        );
        assert!(!core.changed(), "{what}: host core_pattern changed");
    }

    // Control: the same layout with a real null device works, and the masks are 1:3.
    let mut c = Ct::new(rt);
    dev_from_bundle(&mut c, |p| {
        let cp = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: cp is a valid NUL-terminated path.
        let r = unsafe { libc::mknod(cp.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        assert_eq!(r, 0, "mknod {}", p.display());
    });
    c.args(&["sleep", "600"]);
    c.create().ok();
    let pid = c.pid();
    for p in existing_masked_files() {
        let m = fs::metadata(format!("/proc/{pid}/root{p}")).unwrap();
        assert!(
            m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3),
            "{} masked {p} is not the null device",
            c.tag()
        );
    }
    assert!(!core.changed(), "host core_pattern changed");
});

// ---------------------------------------------------------------------------------------------
// CVE-2025-52565: /dev/console bind target replaced by a symlink.
// ---------------------------------------------------------------------------------------------

/// Accepts one connection on a console socket and receives the pty master (SCM_RIGHTS), with a
/// bounded wait; runs in a thread while the runtime's `create` runs.
struct ConsoleReceiver {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Option<OwnedFd>>>,
}

impl ConsoleReceiver {
    fn new(path: PathBuf) -> ConsoleReceiver {
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + CMD_TIMEOUT;
            let stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if stop2.load(Ordering::SeqCst) || Instant::now() > deadline => {
                        return None;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(CMD_TIMEOUT)).unwrap();
            recv_fd(stream.as_raw_fd())
        });
        ConsoleReceiver {
            path,
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Option<OwnedFd> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().and_then(|h| h.join().ok()).flatten()
    }
}

impl Drop for ConsoleReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// One fd received by SCM_RIGHTS on `sock`, if any.
fn recv_fd(sock: RawFd) -> Option<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data; zeroed is a valid initial value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return None;
    }
    // SAFETY: the kernel filled msg_control; the CMSG macros walk it within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let fd: RawFd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(OwnedFd::from_raw_fd(fd));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    None
}

berth_test!(cve_2025_52565_dev_console_symlink, |rt| {
    let core = CorePatternGuard::new();
    for (what, link) in [
        ("absolute", "/proc/sys/kernel/core_pattern"),
        ("relative", "../proc/sys/kernel/core_pattern"),
        ("into /etc", "/etc/passwd"),
        ("symlink we do not mount /dev over", ""),
    ] {
        let mut c = Ct::new(rt);
        // No tmpfs on /dev: the image's own /dev (with the planted /dev/console) is used.
        remove_mount(&mut c, "/dev");
        if !link.is_empty() {
            symlink(link, c.rootfs.join("dev/console")).unwrap();
        }
        c.spec["process"]["terminal"] = json!(true);
        c.args(&["sleep", "600"]);
        let sock = c.tmp.join("console.sock");
        let rx = ConsoleReceiver::new(sock.clone());
        let o = c.create_with(&["--console-socket", sock.to_str().unwrap()]);
        let master = rx.finish();
        if o.code == 0 {
            // The console landed on a regular file in the container's /dev: /dev/console there is
            // the pty, and the link target is untouched.
            assert!(
                master.is_some(),
                "{} {what}: no pty master received",
                c.tag()
            );
            let pid = c.pid();
            let root = PathBuf::from(format!("/proc/{pid}/root"));
            let con = fs::symlink_metadata(root.join("dev/console")).unwrap();
            assert!(
                con.file_type().is_char_device() && libc::major(con.rdev()) == 136,
                "{} {what}: /dev/console in the container is not the pty ({con:?})",
                c.tag()
            );
            for t in ["proc/sys/kernel/core_pattern", "etc/passwd"] {
                let m = fs::metadata(root.join(t)).unwrap();
                assert!(
                    !m.file_type().is_char_device(),
                    "{} {what}: the console was bound over /{t}",
                    c.tag()
                );
            }
            assert!(
                link.is_empty(),
                "{} {what}: a symlinked /dev/console was accepted (and replaced)",
                c.tag()
            );
        } else {
            assert!(!link.is_empty(), "{} control case failed: {o:?}", c.tag());
            assert_one_line_error(&o, &format!("{} {what}", c.tag()));
            assert!(
                o.stderr.contains("/dev/console"),
                "{} {what}: error does not mention /dev/console: {:?}",
                c.tag(),
                o.stderr
            );
        }
        assert!(!core.changed(), "{what}: host core_pattern changed");
        assert_eq!(
            fs::symlink_metadata(c.rootfs.join("dev/console"))
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false),
            !link.is_empty(),
            "{} {what}: the planted /dev/console changed",
            c.tag()
        );
        drop(master);
    }
});

// ---------------------------------------------------------------------------------------------
// CVE-2025-52881: procfs writes redirected.
// ---------------------------------------------------------------------------------------------

sec_test!(cve_2025_52881_binds_over_written_proc_files_refused, |rt| {
    // The files the runtime writes (oom_score_adj, sysctls, attr) may not be mount targets: a
    // bind of a regular file there would receive the write. Both runtimes refuse binds inside
    // /proc outside a fixed allow-list.
    let host = shared_dir("berth-sec-procw-");
    let file = host.path().join("target");
    fs::write(&file, "untouched").unwrap();
    for dest in [
        "/proc/self/oom_score_adj",
        "/proc/1/oom_score_adj",
        "/proc/sys/net/ipv4/ip_default_ttl",
        "/proc/self/attr/apparmor/exec",
        "/proc/sys/kernel/core_pattern",
    ] {
        let mut c = Ct::new(rt);
        c.spec["process"]["oomScoreAdj"] = json!(123);
        c.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_default_ttl": "99"});
        let i = push_mount(&mut c, bind(&file, dest, &["bind"]));
        let o = c.run();
        assert_ne!(o.code, 0, "{} bind on {dest} accepted: {o:?}", c.tag());
        if rt.name == "berth" {
            assert_one_line_error(&o, &c.tag());
            assert!(
                o.stderr.contains(&format!("mounts[{i}]")),
                "{} bind on {dest}: error does not name mounts[{i}]: {:?}",
                c.tag(),
                o.stderr
            );
        }
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "untouched",
            "{} a procfs write landed in the bind source",
            c.tag()
        );
    }
});

sec_test!(cve_2025_52881_sysctl_key_escape_refused, |rt| {
    let core = CorePatternGuard::new();
    let adj_before = read_trim("/proc/self/oom_score_adj");
    for key in [
        "net.ipv4.ip_forward/../../../kernel/core_pattern",
        "net.ipv4/../../kernel.core_pattern",
        "net..ipv4.ip_forward",
        "/proc/sys/kernel/core_pattern",
        "net/../../../self/oom_score_adj",
        "../kernel/core_pattern",
    ] {
        let mut c = Ct::new(rt);
        c.spec["linux"]["sysctl"] = json!({ key: "|/bin/false" });
        let o = c.run();
        if rt.name == "berth" {
            assert_ne!(o.code, 0, "{} sysctl {key:?} accepted: {o:?}", c.tag());
            assert_one_line_error(&o, &c.tag());
            assert!(
                o.stderr.contains("linux.sysctl"),
                "{} sysctl {key:?}: error does not name linux.sysctl: {:?}",
                c.tag(),
                o.stderr
            );
        }
        assert!(
            !core.changed(),
            "sysctl {key:?} changed the host core_pattern"
        );
    }
    assert_eq!(read_trim("/proc/self/oom_score_adj"), adj_before);
});

sec_test!(cve_2025_52881_sysctl_hits_container_procfs, |rt| {
    let fwd = read_trim("/proc/sys/net/ipv4/ip_forward");
    let ttl = read_trim("/proc/sys/net/ipv4/ip_default_ttl");
    let want_ttl = if ttl == "77" { "78" } else { "77" };
    let mut c = Ct::new(rt);
    c.spec["linux"]["sysctl"] =
        json!({"net.ipv4.ip_forward": "1", "net.ipv4.ip_default_ttl": want_ttl});
    c.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ip_default_ttl; stat -f -c %t /proc/sys/net/ipv4/ip_forward");
    let out = c.run_ok();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1", want_ttl, "9fa0"],
        "{} sysctls not visible in the container's procfs",
        c.tag()
    );
    assert_eq!(
        read_trim("/proc/sys/net/ipv4/ip_forward"),
        fwd,
        "host ip_forward changed"
    );
    assert_eq!(
        read_trim("/proc/sys/net/ipv4/ip_default_ttl"),
        ttl,
        "host ip_default_ttl changed"
    );
});

/// An immutable copy of berth-runtime, removed (after `chattr -i`) on drop.
struct ImmutableCopy(PathBuf);

impl Drop for ImmutableCopy {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        let _ = fs::remove_file(&self.0);
    }
}

berth_test!(cve_2019_5736_immutable_install_runs_without_reexec, |rt| {
    // `make install` marks the binary immutable; the runtime then skips the
    // read-only re-exec, and the attack meets EPERM instead of EROFS.
    let dir = tempfile::Builder::new()
        .prefix("berth-imm-")
        .tempdir()
        .unwrap();
    let copy = ImmutableCopy(dir.path().join("berth-runtime"));
    fs::copy(&rt.bin, &copy.0).unwrap();
    let ok = Command::new("chattr")
        .arg("+i")
        .arg(&copy.0)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chattr +i {}", copy.0.display());
    let imm = Runtime {
        name: "berth".into(),
        bin: copy.0.clone(),
    };
    let before = sha256(&imm.bin);
    let mut c = Ct::new(&imm);
    c.args(&["sleep", "600"]);
    c.create().ok();
    let pid = c.pid();
    // No re-exec: the init runs the installed file itself.
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        copy.0,
        "{} the runtime re-executed although its binary is immutable",
        c.tag()
    );
    match OpenOptions::new()
        .append(true)
        .open(format!("/proc/{pid}/exe"))
    {
        Ok(_) => panic!(
            "{} opened the immutable runtime binary for writing",
            c.tag()
        ),
        Err(e) => assert!(
            [libc::EPERM, libc::ETXTBSY].contains(&errno_of(&e)),
            "{} unexpected error {e}",
            c.tag()
        ),
    }
    let held = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .unwrap();
    check_exe_writes_blocked(&c, "true");
    c.delete_force();
    assert!(
        wait_until(WAIT, || !pid_alive(pid)),
        "{} init survived",
        c.tag()
    );
    let reopen = OpenOptions::new()
        .append(true)
        .open(format!("/proc/self/fd/{}", held.as_raw_fd()));
    assert!(
        reopen.is_err_and(|e| errno_of(&e) == libc::EPERM),
        "{} the exited runtime's immutable exe could be reopened for writing",
        c.tag()
    );
    drop(held);
    assert_eq!(
        sha256(&imm.bin),
        before,
        "{} runtime binary changed",
        c.tag()
    );
});
