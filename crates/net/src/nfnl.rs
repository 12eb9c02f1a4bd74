//! Deleting nf_tables rules by handle over a netlink socket that stays open.
//!
//! Why not `nft delete rule ...` like every other change: when a process closes an
//! nfnetlink socket, the kernel first waits for the objects of earlier deletions to be
//! freed (`nft_rcv_nl_event` flushes the destroy work, which waits for an RCU grace
//! period). `nft` closes its socket as it exits, so each `nft delete` took 20-35 ms here,
//! and removing a container with published ports waited for it. Over berthd's own socket,
//! which it never closes, the same deletion is one round trip.
//!
//! Only what that needs is here: a batch of `NFT_MSG_DELRULE` (table, chain, handle) with
//! an ack for each. Everything else still goes through `nft` (crate::firewall).

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_DELRULE: u16 = 8;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
/// nfgenmsg families (NFPROTO_*).
pub(crate) const NFPROTO_IPV4: u8 = 2;
pub(crate) const NFPROTO_IPV6: u8 = 10;
/// How long a reply may take before the socket is given up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// One rule to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleHandle<'a> {
    pub family: u8,
    pub chain: &'a str,
    pub handle: u64,
}

/// A NETLINK_NETFILTER socket of this process, in the network namespace it was opened in.
#[derive(Debug)]
pub(crate) struct NfSocket {
    fd: OwnedFd,
    seq: u32,
}

impl NfSocket {
    pub(crate) fn open() -> std::io::Result<NfSocket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &NetlinkAddr::new(0, 0),
        )?;
        let secs = i64::try_from(REPLY_TIMEOUT.as_secs()).unwrap_or(5);
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(secs, 0))?;
        Ok(NfSocket { fd, seq: 1 })
    }

    /// Deletes `rules` of `table` in one transaction: all of them, or none and the
    /// kernel's error (ENOENT: a handle that is not there).
    pub(crate) fn delete_rules(
        &mut self,
        table: &str,
        rules: &[RuleHandle],
    ) -> std::io::Result<()> {
        if rules.is_empty() {
            return Ok(());
        }
        self.drain();
        let first = self.seq;
        let mut buf = Vec::with_capacity(64 + rules.len() * 96);
        batch_marker(&mut buf, NFNL_MSG_BATCH_BEGIN, self.next_seq());
        for r in rules {
            let at = begin_msg(
                &mut buf,
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELRULE,
                NLM_F_REQUEST | NLM_F_ACK,
                self.next_seq(),
                r.family,
                0,
            );
            put_str(&mut buf, NFTA_RULE_TABLE, table);
            put_str(&mut buf, NFTA_RULE_CHAIN, r.chain);
            put_attr(&mut buf, NFTA_RULE_HANDLE, &r.handle.to_be_bytes());
            end_msg(&mut buf, at);
        }
        batch_marker(&mut buf, NFNL_MSG_BATCH_END, self.next_seq());
        sendto(
            std::os::fd::AsRawFd::as_raw_fd(&self.fd),
            &buf,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        // One ack (or error) per rule message: seq first+1 ..= first+rules.len().
        let wanted = first.wrapping_add(1)..=first.wrapping_add(rules.len() as u32);
        let mut acked = 0;
        let mut rbuf = vec![0u8; 16384];
        while acked < rules.len() {
            let n = recv(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                &mut rbuf,
                MsgFlags::empty(),
            )?;
            for (kind, seq, payload) in messages(&rbuf[..n]) {
                if kind != NLMSG_ERROR || !wanted.contains(&seq) {
                    continue;
                }
                let code = payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(-libc::EPROTO, i32::from_ne_bytes);
                if code != 0 {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
                acked += 1;
            }
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    /// Drops replies left from an earlier call that gave up early.
    fn drain(&self) {
        let mut b = [0u8; 4096];
        while recv(
            std::os::fd::AsRawFd::as_raw_fd(&self.fd),
            &mut b,
            MsgFlags::MSG_DONTWAIT,
        )
        .is_ok_and(|n| n > 0)
        {}
    }
}

impl AsFd for NfSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Starts a message: nlmsghdr (length filled by `end_msg`) and nfgenmsg. Returns its offset.
fn begin_msg(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    at
}

fn end_msg(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

/// A batch begins and ends with a message to the nfnetlink core naming the subsystem.
fn batch_marker(buf: &mut Vec<u8>, kind: u16, seq: u32) {
    let at = begin_msg(buf, kind, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES);
    end_msg(buf, at);
}

fn put_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + align4(len) - len, 0);
}

fn put_str(buf: &mut Vec<u8>, kind: u16, s: &str) {
    let mut data = Vec::with_capacity(s.len() + 1);
    data.extend_from_slice(s.as_bytes());
    data.push(0);
    put_attr(buf, kind, &data);
}

/// The netlink messages in `buf`: (type, sequence number, payload).
fn messages(mut buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        out.push((kind, seq, &buf[16..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_batch_is_laid_out_as_nft_sends_it() {
        let mut buf = Vec::new();
        batch_marker(&mut buf, NFNL_MSG_BATCH_BEGIN, 7);
        let at = begin_msg(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELRULE,
            NLM_F_REQUEST | NLM_F_ACK,
            8,
            NFPROTO_IPV4,
            0,
        );
        put_str(&mut buf, NFTA_RULE_TABLE, "berth");
        put_str(&mut buf, NFTA_RULE_CHAIN, "ports");
        put_attr(&mut buf, NFTA_RULE_HANDLE, &42u64.to_be_bytes());
        end_msg(&mut buf, at);
        let msgs = messages(&buf);
        assert_eq!(msgs.len(), 2);
        // Batch begin: 20 bytes, nfgenmsg res_id = NFNL_SUBSYS_NFTABLES, big-endian.
        assert_eq!(msgs[0].0, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(msgs[0].1, 7);
        assert_eq!(msgs[0].2, &[0, 0, 0, 10]);
        let (kind, seq, payload) = msgs[1];
        assert_eq!(kind, 0x0a08);
        assert_eq!(seq, 8);
        // nfgenmsg, then "berth\0" (4+6, padded to 12), "ports\0" (12), handle (4+8).
        assert_eq!(payload.len(), 4 + 12 + 12 + 12);
        assert_eq!(&payload[..4], &[NFPROTO_IPV4, 0, 0, 0]);
        assert_eq!(&payload[4..8], &[10, 0, 1, 0]);
        assert_eq!(&payload[8..14], b"berth\0");
        assert_eq!(&payload[28..32], &[12, 0, 3, 0]);
        assert_eq!(&payload[32..40], &42u64.to_be_bytes());
    }

    /// A table of the test's own, deleted when the test ends however it ends.
    struct Table(String);
    impl Drop for Table {
        fn drop(&mut self) {
            let _ = nft(&["delete", "table", "ip", &self.0]);
        }
    }

    fn nft(args: &[&str]) -> String {
        let out = std::process::Command::new("nft")
            .args(args)
            .output()
            .expect("run nft");
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn handles(table: &str) -> Vec<u64> {
        nft(&["-a", "list", "chain", "ip", table, "c"])
            .lines()
            .filter(|l| l.contains("dnat to"))
            .filter_map(|l| l.rsplit("# handle ").next()?.trim().parse().ok())
            .collect()
    }

    /// Root tests run with `BERTH_TEST_ROOT=1` (as `make test` does).
    #[test]
    fn deletes_rules_by_handle_and_names_a_missing_one() {
        if std::env::var("BERTH_TEST_ROOT").as_deref() != Ok("1") {
            eprintln!("skipped: set BERTH_TEST_ROOT=1 (as root)");
            return;
        }
        let t = Table(format!("bnl{:x}", std::process::id()));
        nft(&["add", "table", "ip", &t.0]);
        nft(&[
            "add",
            "chain",
            "ip",
            &t.0,
            "c",
            "{ type nat hook prerouting priority -100; }",
        ]);
        for port in ["4001", "4002", "4003"] {
            nft(&[
                "add",
                "rule",
                "ip",
                &t.0,
                "c",
                "tcp",
                "dport",
                port,
                "dnat",
                "to",
                "10.250.0.2:80",
            ]);
        }
        let h = handles(&t.0);
        assert_eq!(h.len(), 3);
        let mut sock = NfSocket::open().expect("socket");
        let rule = |handle| RuleHandle {
            family: NFPROTO_IPV4,
            chain: "c",
            handle,
        };
        sock.delete_rules(&t.0, &[rule(h[0]), rule(h[2])])
            .expect("delete two");
        assert_eq!(handles(&t.0), vec![h[1]]);
        // Gone already: the kernel's ENOENT, and nothing else deleted.
        let err = sock
            .delete_rules(&t.0, &[rule(h[1]), rule(h[0])])
            .expect_err("a missing handle");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
        assert_eq!(handles(&t.0), vec![h[1]]);
        // The socket is still in step for the next call.
        sock.delete_rules(&t.0, &[rule(h[1])])
            .expect("delete the last");
        assert!(handles(&t.0).is_empty());
    }

    #[test]
    fn truncated_replies_end_the_walk() {
        let mut buf = Vec::new();
        let at = begin_msg(&mut buf, NLMSG_ERROR, 0, 3, 0, 0);
        end_msg(&mut buf, at);
        buf.extend_from_slice(&[200, 0, 0, 0, 2, 0]);
        let msgs = messages(&buf);
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].0, msgs[0].1), (NLMSG_ERROR, 3));
    }
}
