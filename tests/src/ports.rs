//! Free loopback TCP ports.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and closing the socket again.
/// Every port handed out is remembered for the life of the process and never
/// handed out twice, so concurrent tests in one process cannot get the same
/// port. (Another process can still take it before etcd binds it; the server
/// start retries with new ports when etcd reports "address already in use".)
///
/// # Panics
///
/// If no port can be bound on 127.0.0.1.
pub fn free_port() -> u16 {
    try_free_port().expect("no free TCP port on 127.0.0.1")
}

/// Like [`free_port`], returning the error instead of panicking.
pub fn try_free_port() -> io::Result<u16> {
    let mut last_err = None;
    for _ in 0..200 {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
            Ok(listener) => {
                let port = listener.local_addr()?.port();
                drop(listener);
                let mut set = handed_out().lock().unwrap_or_else(|e| e.into_inner());
                if set.insert(port) {
                    return Ok(port);
                }
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "every port the kernel offered was already handed out",
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique_within_the_process() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let p = free_port();
            assert_ne!(p, 0);
            assert!(seen.insert(p), "port {p} handed out twice");
        }
    }

    #[test]
    fn port_is_bindable() {
        let p = free_port();
        TcpListener::bind((Ipv4Addr::LOCALHOST, p)).expect("port should be free");
    }
}
