//! The processes the runtime creates.
//!
//! `create` forks the container's init with `clone3`, in all its new
//! namespaces at once when nothing is joined by path (the fast path), or
//! through an intermediate that joins and unshares in the right order and
//! forks again (the general path). Parent and child talk over a
//! `SOCK_SEQPACKET` pair ([`channel`]); the parent writes uid/gid maps,
//! places the child in its cgroups and runs createRuntime hooks when asked;
//! the child builds the root filesystem and reports `Ready`, then blocks on
//! the exec FIFO until `start`.

/// Capabilities: bounding, effective, permitted, inheritable, ambient.
pub mod caps;
/// Parent/child messages over a socketpair.
pub mod channel;
/// clone3 with namespace flags.
pub mod clone;
/// The console: a pty whose master goes to the console socket.
pub mod console;
/// The container's init, from namespaces to execve.
pub mod init;
/// Settings shared by init and exec'd processes: user, rlimits, env, exec.
pub mod setup;
/// Joining a running container (`exec`).
pub mod tenant;
