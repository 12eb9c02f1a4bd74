//! `User` → uid, gid and supplementary groups, read from the image's own
//! /etc/passwd and /etc/group.
//!
//! The files are opened fd-relative with `openat2(RESOLVE_IN_ROOT)`, so an
//! /etc/passwd that is a symlink (absolute or `../..`) resolves inside the
//! rootfs and never reads the host's. The rules are Docker's (runc's
//! `GetExecUser`): `name`, `uid`, `name:group`, `uid:gid`, `uid:groupname`;
//! a numeric uid without an entry runs with gid 0; a name not found is an
//! error; supplementary groups come from /etc/group only when no group was
//! given explicitly and the user was found in /etc/passwd.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use berth_runtime::rootfs::resolve;
use rustix::fs::{FileType, OFlags};
use rustix::io::Errno;

use super::error::{Result, SpecError};

/// The largest uid or gid runc and Docker accept.
const MAX_ID: u64 = i32::MAX as u64;
/// Larger /etc/passwd or /etc/group files are refused.
const MAX_FILE: u64 = 16 << 20;

/// The process identity a `User` string resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// Real and effective uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids (memberships in /etc/group, then `group_add`).
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd (`/` when the user has no entry).
    pub home: String,
}

#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: (*f.first()?).to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: (*f.first()?).to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Read a small regular file inside `root`; `None` when it does not exist.
/// Symlinks resolve inside `root` (RESOLVE_IN_ROOT); FIFOs and devices are
/// refused without blocking on them.
pub(crate) fn read_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<Option<String>> {
    let what = || format!("read {} in the image", path.display());
    let fd = match resolve::open(
        root,
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(SpecError::io(what(), e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| SpecError::io(what(), e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(SpecError::invalid(format!(
            "{} in the image is not a regular file",
            path.display()
        )));
    }
    let mut buf = String::new();
    std::fs::File::from(fd)
        .take(MAX_FILE)
        .read_to_string(&mut buf)
        .map_err(|e| SpecError::io(what(), e))?;
    Ok(Some(buf))
}

fn parse_id(s: &str) -> Option<Result<u32>> {
    let n: u64 = s.parse().ok()?;
    Some(if n > MAX_ID {
        Err(SpecError::invalid(
            "uids and gids must be in range 0-2147483647",
        ))
    } else {
        Ok(n as u32)
    })
}

/// Resolve `spec` (`user[:group]`, empty = root) against the image at
/// `root`, then add `group_add` (group names or gids) as Docker's
/// `--group-add` does.
pub fn resolve_user(root: impl AsFd, spec: &str, group_add: &[String]) -> Result<ExecUser> {
    let root = root.as_fd();
    let passwd = read_in_root(root, Path::new("/etc/passwd"))?;
    let group = read_in_root(root, Path::new("/etc/group"))?;
    resolve_from(passwd.as_deref(), group.as_deref(), spec, group_add)
}

/// [`resolve_user`] on the files' text (`None`: the file does not exist).
fn resolve_from(
    passwd: Option<&str>,
    group: Option<&str>,
    spec: &str,
    group_add: &[String],
) -> Result<ExecUser> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, g),
        None => (spec, ""),
    };
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();
    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".to_string(),
    };

    let uid_arg = match parse_id(user_arg) {
        Some(r) => Some(r?),
        None => None,
    };
    let found = users.iter().find(|u| match (user_arg, uid_arg) {
        ("", _) => u.uid == 0,
        (_, Some(n)) => u.uid == n,
        (name, None) => u.name == name,
    });
    let matched_name = match found {
        Some(u) => {
            out.uid = u.uid;
            out.gid = u.gid;
            if !u.home.is_empty() {
                out.home = u.home.clone();
            }
            Some(u.name.clone())
        }
        None if user_arg.is_empty() => None,
        None => match uid_arg {
            Some(n) => {
                out.uid = n;
                None
            }
            None => return Err(SpecError::NoSuchUser(user_arg.to_string())),
        },
    };

    if !group_arg.is_empty() {
        let gid_arg = match parse_id(group_arg) {
            Some(r) => Some(r?),
            None => None,
        };
        let hit = groups.iter().find(|g| match gid_arg {
            Some(n) => g.gid == n,
            None => g.name == group_arg,
        });
        out.gid = match (hit, gid_arg) {
            (Some(g), _) => g.gid,
            (None, Some(n)) => n,
            (None, None) => return Err(SpecError::NoSuchGroup(group_arg.to_string())),
        };
    } else if let Some(name) = &matched_name {
        for g in groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
        {
            out.additional_gids.push(g.gid);
        }
    }

    for add in group_add {
        let gid = match parse_id(add) {
            Some(r) => {
                let n = r?;
                groups.iter().find(|g| g.gid == n).map_or(n, |g| g.gid)
            }
            None => groups
                .iter()
                .find(|g| &g.name == add)
                .map(|g| g.gid)
                .ok_or_else(|| SpecError::NoSuchGroup(add.clone()))?,
        };
        out.additional_gids.push(gid);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        wheel:x:10:app,root\n\
        audio:x:29:app\n\
        app:x:1000:\n\
        staff:x:50:\n\
        nogroup:x:65534:\n";

    fn r(spec: &str) -> Result<ExecUser> {
        resolve_from(Some(PASSWD), Some(GROUP), spec, &[])
    }

    #[test]
    fn names_and_numbers() {
        let app = r("app").expect("app");
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.additional_gids, vec![10, 29]);
        assert_eq!(app.home, "/home/app");
        // A uid with an entry is that entry, groups included.
        assert_eq!(r("1000").expect("1000"), app);
        let root = r("").expect("default");
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(root.additional_gids, vec![10]);
        let nobody = r("nobody").expect("nobody");
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
        assert!(nobody.additional_gids.is_empty());
    }

    #[test]
    fn explicit_groups() {
        // An explicit group replaces the primary gid and drops memberships.
        let u = r("app:staff").expect("app:staff");
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.additional_gids.is_empty());
        let u = r("1000:1000").expect("1000:1000");
        assert_eq!((u.uid, u.gid), (1000, 1000));
        let u = r("1000:audio").expect("uid:groupname");
        assert_eq!((u.uid, u.gid), (1000, 29));
        let u = r("4242:4343").expect("numbers without entries");
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 4343, "/"));
    }

    #[test]
    fn numeric_uid_without_entry_gets_gid_0() {
        let u = r("4242").expect("4242");
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert!(u.additional_gids.is_empty());
        // Without any passwd file at all.
        let u = resolve_from(None, None, "123", &[]).expect("no files");
        assert_eq!((u.uid, u.gid), (123, 0));
        let u = resolve_from(None, None, "", &[]).expect("no files, root");
        assert_eq!((u.uid, u.gid), (0, 0));
    }

    #[test]
    fn docker_errors() {
        assert_eq!(
            r("foo").expect_err("foo").to_string(),
            "unable to find user foo: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:nope").expect_err("group").to_string(),
            "unable to find group nope: no matching entries in group file"
        );
        assert_eq!(
            resolve_from(None, None, "foo", &[])
                .expect_err("no passwd")
                .to_string(),
            "unable to find user foo: no matching entries in passwd file"
        );
        assert!(
            r("3000000000")
                .expect_err("range")
                .to_string()
                .contains("range 0-2147483647")
        );
    }

    #[test]
    fn group_add() {
        let u = resolve_from(
            Some(PASSWD),
            Some(GROUP),
            "nobody",
            &["staff".into(), "777".into()],
        )
        .expect("group_add");
        assert_eq!(u.additional_gids, vec![50, 777]);
        let e = resolve_from(Some(PASSWD), Some(GROUP), "nobody", &["nope".into()])
            .expect_err("unknown group");
        assert!(e.to_string().contains("unable to find group nope"), "{e}");
    }

    #[test]
    fn passwd_symlink_out_of_the_root_is_not_the_hosts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        // Outside the root, a file that must never be read.
        std::fs::write(
            tmp.path().join("passwd"),
            "evil:x:4321:4321::/evil:/bin/sh\n",
        )
        .expect("write");
        symlink("../../passwd", root.join("etc/passwd")).expect("symlink");
        // Absolute links resolve in the root too: the host's /etc/gshadow
        // exists, the image's does not.
        symlink("/etc/gshadow", root.join("etc/group")).expect("symlink");
        let fd = std::fs::File::open(&root).expect("open root");
        assert!(matches!(
            resolve_user(&fd, "evil", &[]),
            Err(SpecError::NoSuchUser(_))
        ));
        // The host's root entry is not seen either: uid 0 resolves to the
        // defaults, without the host's home or groups.
        let u = resolve_user(&fd, "root", &[]);
        assert!(matches!(u, Err(SpecError::NoSuchUser(_))), "{u:?}");
        // An in-root target is followed.
        std::fs::remove_file(root.join("etc/passwd")).expect("rm");
        std::fs::write(root.join("etc/real"), "x:x:7:8::/x:/bin/sh\n").expect("write");
        symlink("/../../etc/real", root.join("etc/passwd")).expect("symlink");
        let u = resolve_user(&fd, "x", &[]).expect("x");
        assert_eq!((u.uid, u.gid), (7, 8));
    }

    #[test]
    fn fifo_passwd_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("etc")).expect("mkdir");
        nix::unistd::mkfifo(
            &tmp.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .expect("mkfifo");
        let fd = std::fs::File::open(tmp.path()).expect("open root");
        let e = resolve_user(&fd, "root", &[]).expect_err("fifo");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
