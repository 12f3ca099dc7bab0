//! The network sandbox every run of the CLI lives in: a fresh network namespace with only
//! loopback, entered by the test's own thread, as root or not.
//!
//! Linux namespaces belong to threads, and threads and processes inherit the namespace of the
//! thread that creates them. So a test thread that calls `unshare(CLONE_NEWNET)` and brings `lo`
//! up can start the mock on 127.0.0.1 in a thread of its own and spawn `orch run`, which spawns
//! `claude`: all of them share a network that has nothing but loopback, while the other tests'
//! threads keep theirs. This is `unshare -n`, done per test, without a helper process.
//!
//! Creating a network namespace needs `CAP_SYS_ADMIN` in the user namespace that will own it.
//! Root has it. Anyone else gets it in a user namespace of their own, which the kernel lets only a
//! single-threaded process create (`unshare(CLONE_NEWUSER)` is `EINVAL` once there are threads,
//! and libtest runs tests on threads). So, before `main`, while the process has one thread, a
//! constructor moves a non-root test process into a new user namespace that maps its uid and gid
//! to themselves: files, pids and `/proc` look as before, the host network is still there (npm
//! needs it), and the process now holds the capabilities, in that namespace, to create network
//! namespaces per thread. Its children (orch, `claude`) run as the same plain uid, without them.
//! This module must never skip: a machine that allows neither fails with what to do.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use nix::libc;
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{getegid, geteuid};

/// Why the constructor could not enter a user namespace, if it tried and failed.
static USER_NAMESPACE_REFUSED: Mutex<Option<String>> = Mutex::new(None);

// Runs before `main` (an ELF constructor), while the process is still single-threaded.
#[used]
#[unsafe(link_section = ".init_array")]
static ENTER_USER_NAMESPACE: extern "C" fn() = enter_user_namespace;

/// Moves a non-root process into a user namespace of its own, mapping its uid and gid to
/// themselves; root keeps its privileges (the privileged path). Records a refusal for
/// [`enter`] to report rather than failing here, before the test harness can say anything.
extern "C" fn enter_user_namespace() {
    let (uid, gid) = (geteuid(), getegid());
    if uid.is_root() {
        return;
    }
    let result = unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("unshare(CLONE_NEWUSER): {e}"))
        .and_then(|()| {
            // An unprivileged process may map only its own ids, and only its gid once it has
            // given up setgroups(2) in the namespace.
            for (file, text) in [
                ("/proc/self/setgroups", "deny".to_string()),
                ("/proc/self/uid_map", format!("{uid} {uid} 1")),
                ("/proc/self/gid_map", format!("{gid} {gid} 1")),
            ] {
                std::fs::write(file, &text)
                    .map_err(|e| format!("writing {text:?} to {file}: {e}"))?;
            }
            Ok(())
        });
    if let Err(why) = result {
        *USER_NAMESPACE_REFUSED
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why);
    }
}

/// Moves the calling thread into a new network namespace with loopback up and nothing else,
/// and proves that an outside address is unreachable from it. Panics with what to do when it
/// cannot.
pub fn enter() {
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
        let refused = USER_NAMESPACE_REFUSED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let how = match refused {
            Some(why) => format!(
                "As uid {}, the suite first enters a user namespace of its own, and the kernel \
                 refused it: {why}.\nAllow unprivileged user namespaces (sysctl \
                 user.max_user_namespaces > 0; kernel.unprivileged_userns_clone=1 on Debian \
                 kernels that have it; kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu), \
                 or run the tests as root.",
                geteuid()
            ),
            None => "Run the tests as root, or as a user the kernel lets create user namespaces."
                .to_string(),
        };
        panic!(
            "\n\nThe Claude Code suite runs the CLI in a network namespace with only loopback and \
             could not create one: unshare(CLONE_NEWNET): {e}.\n{how}\n"
        );
    }
    loopback_up()
        .unwrap_or_else(|e| panic!("could not bring `lo` up in the test's namespace: {e}"));
    // Prove the fence: the outside world is unreachable from here.
    let outside: SocketAddr = "1.1.1.1:443".parse().expect("an address");
    assert!(
        TcpStream::connect_timeout(&outside, Duration::from_secs(2)).is_err(),
        "the test's network namespace reaches the internet"
    );
}

/// `ip link set lo up`, done by this thread: a child process (`ip`) would run as the plain uid,
/// without the namespace's capabilities, when the suite is not root.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain socket(2); the descriptor is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in req.ifr_name.iter_mut().zip(b"lo") {
        *to = *from as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write an `ifreq`, which `req` is.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn the_sandbox_has_loopback_and_nothing_else() {
    enter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
    let addr = listener.local_addr().expect("an address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("loopback reaches itself");
    // A non-root suite runs in a user namespace that maps its uid to itself, not to root (and
    // root's initial namespace maps 0 to 0).
    let map = std::fs::read_to_string("/proc/self/uid_map").expect("uid_map");
    let first: Vec<&str> = map.split_whitespace().take(2).collect();
    let uid = geteuid().to_string();
    assert_eq!(first, [uid.as_str(), uid.as_str()], "{map}");
}
