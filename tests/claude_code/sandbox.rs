//! The network sandbox every run of the CLI lives in: a fresh network namespace with only
//! loopback, entered by the test's own thread.
//!
//! Linux namespaces belong to threads, and threads and processes inherit the namespace of the
//! thread that creates them. So a test thread that calls `unshare(CLONE_NEWNET)` and brings `lo`
//! up can start the mock on 127.0.0.1 in a thread of its own and spawn `orch run`, which spawns
//! `claude`: all of them share a network that has nothing but loopback, while the other tests'
//! threads keep theirs. This is `unshare -n`, done per test, without a helper process.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use nix::sched::{CloneFlags, unshare};

/// Moves the calling thread into a new network namespace with loopback up and nothing else.
/// Panics with what to do when the thread may not (creating a network namespace needs
/// CAP_SYS_ADMIN: root, or `unshare -r` around the whole test command).
pub fn enter() {
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
        panic!(
            "\n\nThe Claude Code suite runs the CLI in a network namespace with only loopback and \
             could not create one: unshare(CLONE_NEWNET): {e}.\nRun the tests as root (as .ci/run \
             does), or under `unshare -r` (a user namespace that may create network namespaces).\n"
        );
    }
    // The child inherits this thread's namespace; `ip` is iproute2, which .ci/run installs.
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap_or_else(|e| panic!("could not run `ip link set lo up` (install iproute2): {e}"));
    assert!(up.success(), "`ip link set lo up` failed: {up}");
    // Prove the fence: the outside world is unreachable from here.
    let outside: SocketAddr = "1.1.1.1:443".parse().expect("an address");
    assert!(
        TcpStream::connect_timeout(&outside, Duration::from_secs(2)).is_err(),
        "the test's network namespace reaches the internet"
    );
}
