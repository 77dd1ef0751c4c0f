//! A TCP proxy on loopback for fault injection between a client and etcd.
//!
//! [`TcpProxy`] listens on `127.0.0.1:<free port>` and forwards every
//! connection to an upstream address. Its [`ProxyMode`] can be switched at
//! run time from any thread, connections can be cut, and a chaos thread can
//! cut them periodically. Only std threads are used (no async runtime): an
//! acceptor thread, and per connection one thread per direction.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
    ToSocketAddrs,
};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::cluster::EtcdCluster;
use crate::server::EtcdServer;

/// How long a pump blocks in `read`/`write` (or waits while stalled) before
/// it looks at the flags again. Cuts and drop also shut the sockets down,
/// which wakes blocked reads at once; this is only the safety net.
const POLL: Duration = Duration::from_millis(100);

/// Timeout of the upstream `connect` of a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

const BUF_SIZE: usize = 16 * 1024;

/// What the proxy does with connections; see [`TcpProxy::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProxyMode {
    /// Forward bytes both ways (the default).
    #[default]
    Forward,
    /// New connections are accepted and held: the client's bytes are read
    /// and discarded, nothing is ever sent back, and no upstream connection
    /// is made (a peer that accepts TCP and never answers). Such a
    /// connection stays a black hole until it is cut or the client closes
    /// it, even after the mode is switched back. Existing forwarded
    /// connections drop the bytes of both directions while this mode is on.
    Blackhole,
    /// Existing connections stay open but no byte is forwarded in either
    /// direction (unread bytes wait in the proxy and kernel buffers) until
    /// the mode changes; then the held bytes are delivered. New connections
    /// are accepted and connected upstream, and stall the same way.
    Stall,
    /// New connections are accepted and closed at once (the client sees
    /// EOF or a reset); the listener stays open. Existing connections keep
    /// forwarding.
    Refuse,
}

/// Something the proxy can forward to.
///
/// Implemented for socket addresses, `"host:port"` strings (an `http://` or
/// `https://` prefix and a trailing `/` are ignored, so a server's
/// `client_url()` works), `(host, port)` pairs, and [`EtcdServer`] (its
/// client port) and [`EtcdCluster`] (its first member's client port).
pub trait ProxyTarget {
    /// The addresses to try, in order.
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>>;
}

fn resolve(addrs: impl ToSocketAddrs, what: &dyn fmt::Display) -> io::Result<Vec<SocketAddr>> {
    let v: Vec<SocketAddr> = addrs.to_socket_addrs()?.collect();
    if v.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} resolves to no address"),
        ));
    }
    Ok(v)
}

impl ProxyTarget for SocketAddr {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![*self])
    }
}

impl ProxyTarget for SocketAddrV4 {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::V4(*self)])
    }
}

impl ProxyTarget for SocketAddrV6 {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::V6(*self)])
    }
}

impl ProxyTarget for str {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        let s = self.trim();
        let s = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .unwrap_or(s);
        let s = s.trim_end_matches('/');
        resolve(s, &s)
    }
}

impl ProxyTarget for String {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.as_str().target_addrs()
    }
}

impl ProxyTarget for (&str, u16) {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        resolve(*self, &format!("{}:{}", self.0, self.1))
    }
}

impl ProxyTarget for (IpAddr, u16) {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(*self)])
    }
}

impl ProxyTarget for (Ipv4Addr, u16) {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(*self)])
    }
}

impl ProxyTarget for EtcdServer {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            self.client_port(),
        ))])
    }
}

impl ProxyTarget for EtcdCluster {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.member(0).target_addrs()
    }
}

impl<T: ProxyTarget + ?Sized> ProxyTarget for &T {
    fn target_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).target_addrs()
    }
}

/// Counts the proxy's live threads; decremented when the thread ends.
struct ThreadToken(Arc<AtomicUsize>);

impl ThreadToken {
    fn new(counter: &Arc<AtomicUsize>) -> ThreadToken {
        counter.fetch_add(1, Ordering::SeqCst);
        ThreadToken(Arc::clone(counter))
    }
}

impl Drop for ThreadToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per-connection state shared by its pumps.
struct ConnShared {
    cut: AtomicBool,
}

/// A live connection as the proxy's registry knows it.
struct ConnEntry {
    shared: Arc<ConnShared>,
    client: TcpStream,
    upstream: Option<TcpStream>,
    /// Threads of this connection not yet ended.
    live: usize,
    handles: Vec<JoinHandle<()>>,
}

impl ConnEntry {
    fn close(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(u) = &self.upstream {
            let _ = u.shutdown(Shutdown::Both);
        }
    }
}

#[derive(Default)]
struct Registry {
    /// Set (under this lock) when the proxy is dropped: no thread is
    /// spawned or registered afterwards.
    shutdown: bool,
    next_id: u64,
    conns: HashMap<u64, ConnEntry>,
    /// Handles of threads whose connection is gone; joined later.
    finished: Vec<JoinHandle<()>>,
}

struct Inner {
    addr: SocketAddr,
    upstream: Mutex<Vec<SocketAddr>>,
    mode: Mutex<ProxyMode>,
    mode_changed: Condvar,
    shutdown: AtomicBool,
    registry: Mutex<Registry>,
    accepted: AtomicU64,
    cuts: AtomicU64,
    threads: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn mode(&self) -> ProxyMode {
        *lock(&self.mode)
    }

    fn stopping(&self, conn: &ConnShared) -> bool {
        self.shutdown.load(Ordering::SeqCst) || conn.cut.load(Ordering::SeqCst)
    }

    /// Blocks while the mode is [`ProxyMode::Stall`]; returns the mode after
    /// it, or `None` if the connection is to stop.
    fn wait_not_stalled(&self, conn: &ConnShared) -> Option<ProxyMode> {
        let mut mode = lock(&self.mode);
        loop {
            if self.stopping(conn) {
                return None;
            }
            if *mode != ProxyMode::Stall {
                return Some(*mode);
            }
            mode = self
                .mode_changed
                .wait_timeout(mode, POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn cut_all(&self) -> usize {
        let reg = lock(&self.registry);
        let mut n = 0;
        for c in reg.conns.values() {
            if !c.shared.cut.load(Ordering::SeqCst) {
                n += 1;
                self.cuts.fetch_add(1, Ordering::SeqCst);
            }
            c.close();
        }
        n
    }

    /// Called by each connection thread as it ends.
    fn thread_done(&self, id: u64) {
        let mut reg = lock(&self.registry);
        let Some(entry) = reg.conns.get_mut(&id) else {
            return;
        };
        entry.live -= 1;
        if entry.live == 0 {
            if let Some(entry) = reg.conns.remove(&id) {
                entry.close();
                reg.finished.extend(entry.handles);
            }
        }
    }

    /// Joins the handles of threads that have ended.
    fn reap_finished(&self) {
        let done: Vec<JoinHandle<()>> = {
            let mut reg = lock(&self.registry);
            let (done, running) = std::mem::take(&mut reg.finished)
                .into_iter()
                .partition(|h| h.is_finished());
            reg.finished = running;
            done
        };
        for h in done {
            let _ = h.join();
        }
    }
}

struct Cutter {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

/// A TCP proxy from `127.0.0.1:<free port>` to an upstream address, for
/// fault injection. Its [`ProxyMode`] can be switched at run time from any
/// thread, connections can be cut, and a chaos thread can cut them
/// periodically.
///
/// ```no_run
/// use etcd_tests::{EtcdServer, EtcdVersion, ProxyMode, TcpProxy};
///
/// let server = EtcdServer::start(EtcdVersion::V3_5).unwrap();
/// let proxy = TcpProxy::start(&server).unwrap();
/// // point the client at proxy.url() instead of server.client_url() ...
/// proxy.set_mode(ProxyMode::Blackhole); // new connections hang
/// proxy.cut_all(); // existing ones are closed
/// proxy.set_mode(ProxyMode::Forward);
/// ```
///
/// All methods take `&self`, so it can be shared between threads (and
/// switched from one while a client uses it from another). Dropping it stops
/// every thread and closes every connection and the listener.
pub struct TcpProxy {
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
    cutter: Mutex<Option<Cutter>>,
}

impl TcpProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `upstream`
    /// (which need not be listening yet: each new connection connects
    /// afresh, and a failed upstream connect closes the client's
    /// connection).
    pub fn start(upstream: impl ProxyTarget) -> io::Result<TcpProxy> {
        let upstream = upstream.target_addrs()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            addr,
            upstream: Mutex::new(upstream),
            mode: Mutex::new(ProxyMode::Forward),
            mode_changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
            registry: Mutex::new(Registry::default()),
            accepted: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            threads: Arc::new(AtomicUsize::new(0)),
        });
        let token = ThreadToken::new(&inner.threads);
        let acceptor_inner = Arc::clone(&inner);
        let acceptor = thread::Builder::new()
            .name(format!("proxy-accept-{}", addr.port()))
            .spawn(move || {
                let _token = token;
                accept_loop(&acceptor_inner, listener);
            })?;
        Ok(TcpProxy {
            inner,
            acceptor: Some(acceptor),
            cutter: Mutex::new(None),
        })
    }

    /// The listening address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.inner.addr.port()
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.inner.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// `https://127.0.0.1:PORT`, for a TLS upstream (the proxy passes TLS
    /// through untouched; the test certificates are valid for 127.0.0.1).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.inner.addr)
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.inner.mode()
    }

    /// Switches the mode; takes effect at once for new connections and (see
    /// [`ProxyMode`]) for existing ones.
    ///
    /// A new connection gets the mode in force when the proxy's acceptor
    /// takes it, which is a moment after the client's `connect` returned: to
    /// be sure a connection got the old mode, wait until
    /// [`TcpProxy::connections`] (or [`TcpProxy::total_accepted`]) counts it
    /// before switching.
    pub fn set_mode(&self, mode: ProxyMode) {
        *lock(&self.inner.mode) = mode;
        self.inner.mode_changed.notify_all();
    }

    /// Future connections go to `upstream`; existing ones keep theirs.
    pub fn set_upstream(&self, upstream: impl ProxyTarget) -> io::Result<()> {
        let addrs = upstream.target_addrs()?;
        *lock(&self.inner.upstream) = addrs;
        Ok(())
    }

    /// The upstream addresses new connections try, in order.
    pub fn upstream(&self) -> Vec<SocketAddr> {
        lock(&self.inner.upstream).clone()
    }

    /// Abruptly closes every current connection: both sockets of each are
    /// shut down both ways (the client sees EOF, or a reset if it writes),
    /// and its threads end. Returns how many connections were cut.
    pub fn cut_all(&self) -> usize {
        self.inner.cut_all()
    }

    /// Live connections (accepted and not yet closed; refused ones never
    /// count).
    pub fn connections(&self) -> usize {
        lock(&self.inner.registry).conns.len()
    }

    /// Every connection accepted since the start, including refused and
    /// black-holed ones.
    pub fn total_accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed by [`TcpProxy::cut_all`] (and the chaos cutter)
    /// since the start.
    pub fn total_cut(&self) -> u64 {
        self.inner.cuts.load(Ordering::SeqCst)
    }

    /// Threads of this proxy still running (acceptor, pumps, cutter).
    pub fn live_threads(&self) -> usize {
        self.inner.threads.load(Ordering::SeqCst)
    }

    /// Starts a thread that calls [`TcpProxy::cut_all`] every `every`, until
    /// [`TcpProxy::stop_cutting`] or drop. Replaces a running cutter.
    pub fn start_cutting(&self, every: Duration) {
        self.spawn_cutter(move || every);
    }

    /// Like [`TcpProxy::start_cutting`], with intervals drawn uniformly from
    /// `min..=max` by a small deterministic RNG seeded with `seed` (the same
    /// seed gives the same intervals).
    pub fn cut_randomly(&self, min: Duration, max: Duration, seed: u64) {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        let mut rng = SplitMix64::new(seed);
        self.spawn_cutter(move || {
            let lo = min.as_nanos() as u64;
            let span = (max.as_nanos() as u64).saturating_sub(lo);
            let off = if span == u64::MAX {
                rng.next_u64()
            } else {
                rng.next_u64() % (span + 1)
            };
            Duration::from_nanos(lo.saturating_add(off))
        });
    }

    /// Stops the chaos cutter, if one runs, and waits for its thread.
    pub fn stop_cutting(&self) {
        let cutter = lock(&self.cutter).take();
        if let Some(c) = cutter {
            drop(c.stop);
            let _ = c.handle.join();
        }
    }

    fn spawn_cutter(&self, mut next: impl FnMut() -> Duration + Send + 'static) {
        self.stop_cutting();
        let (stop, rx) = mpsc::channel::<()>();
        let inner = Arc::clone(&self.inner);
        let token = ThreadToken::new(&inner.threads);
        let handle = thread::Builder::new()
            .name(format!("proxy-cutter-{}", inner.addr.port()))
            .spawn(move || {
                let _token = token;
                loop {
                    match rx.recv_timeout(next()) {
                        Err(RecvTimeoutError::Timeout) => {
                            inner.cut_all();
                        }
                        _ => return,
                    }
                }
            })
            .expect("spawn proxy cutter thread");
        *lock(&self.cutter) = Some(Cutter { stop, handle });
    }
}

impl fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpProxy")
            .field("addr", &self.inner.addr)
            .field("upstream", &self.upstream())
            .field("mode", &self.mode())
            .field("connections", &self.connections())
            .field("total_accepted", &self.total_accepted())
            .finish()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop_cutting();
        let inner = &self.inner;
        inner.shutdown.store(true, Ordering::SeqCst);
        inner.mode_changed.notify_all();
        // Wake the blocking accept; the acceptor sees the flag and exits,
        // closing the listener.
        if let Some(acceptor) = self.acceptor.take() {
            let _ = TcpStream::connect_timeout(&inner.addr, Duration::from_secs(1));
            let _ = acceptor.join();
        }
        let handles: Vec<JoinHandle<()>> = {
            let mut reg = lock(&inner.registry);
            reg.shutdown = true;
            let mut handles = std::mem::take(&mut reg.finished);
            for c in reg.conns.values_mut() {
                c.close();
                handles.append(&mut c.handles);
            }
            handles
        };
        for h in handles {
            let _ = h.join();
        }
        // Threads that ended meanwhile moved nothing new (their handles were
        // taken above), but join whatever is left to be sure.
        let rest = std::mem::take(&mut lock(&inner.registry).finished);
        for h in rest {
            let _ = h.join();
        }
    }
}

fn accept_loop(inner: &Arc<Inner>, listener: TcpListener) {
    loop {
        let accepted = listener.accept();
        if inner.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let client = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) {
                    thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        inner.accepted.fetch_add(1, Ordering::SeqCst);
        inner.reap_finished();
        let mode = inner.mode();
        if mode == ProxyMode::Refuse {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        if let Err(e) = register(inner, client, mode == ProxyMode::Blackhole) {
            eprintln!("etcd-tests proxy {}: connection dropped: {e}", inner.addr);
        }
    }
}

/// Records a new connection and spawns its first thread.
fn register(inner: &Arc<Inner>, client: TcpStream, blackhole: bool) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    client.set_read_timeout(Some(POLL))?;
    client.set_write_timeout(Some(POLL))?;
    let client_reg = client.try_clone()?;
    let shared = Arc::new(ConnShared {
        cut: AtomicBool::new(false),
    });
    let mut reg = lock(&inner.registry);
    if reg.shutdown {
        return Ok(());
    }
    let id = reg.next_id;
    reg.next_id += 1;
    let token = ThreadToken::new(&inner.threads);
    let thread_inner = Arc::clone(inner);
    let thread_shared = Arc::clone(&shared);
    let handle = thread::Builder::new()
        .name(format!("proxy-conn-{}-{id}", inner.addr.port()))
        .spawn(move || {
            let _token = token;
            if blackhole {
                swallow(&thread_inner, &thread_shared, &client);
            } else {
                forward(&thread_inner, &thread_shared, id, client);
            }
            thread_inner.thread_done(id);
        })?;
    reg.conns.insert(
        id,
        ConnEntry {
            shared,
            client: client_reg,
            upstream: None,
            live: 1,
            handles: vec![handle],
        },
    );
    Ok(())
}

/// A black-holed connection: read and discard until it closes or is cut.
fn swallow(inner: &Inner, conn: &ConnShared, client: &TcpStream) {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut reader = client;
    while !inner.stopping(conn) {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if retryable(&e) => {}
            Err(_) => return,
        }
    }
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn connect_upstream(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no upstream address")))
}

/// The first thread of a forwarded connection: connects upstream, spawns
/// the upstream-to-client pump and runs the client-to-upstream one.
fn forward(inner: &Arc<Inner>, conn: &Arc<ConnShared>, id: u64, client: TcpStream) {
    let addrs = lock(&inner.upstream).clone();
    let upstream = match connect_upstream(&addrs) {
        Ok(s) => s,
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let setup = (|| -> io::Result<(TcpStream, TcpStream, TcpStream)> {
        upstream.set_read_timeout(Some(POLL))?;
        upstream.set_write_timeout(Some(POLL))?;
        Ok((
            upstream.try_clone()?,
            upstream.try_clone()?,
            client.try_clone()?,
        ))
    })();
    let Ok((upstream_reg, upstream_rd, client_wr)) = setup else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut guard = lock(&inner.registry);
        let reg = &mut *guard;
        let live = !reg.shutdown && !conn.cut.load(Ordering::SeqCst);
        let Some(entry) = reg.conns.get_mut(&id).filter(|_| live) else {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            return;
        };
        let token = ThreadToken::new(&inner.threads);
        let thread_inner = Arc::clone(inner);
        let thread_conn = Arc::clone(conn);
        let spawned = thread::Builder::new()
            .name(format!("proxy-down-{}-{id}", inner.addr.port()))
            .spawn(move || {
                let _token = token;
                pump(&thread_inner, &thread_conn, &upstream_rd, &client_wr);
                thread_inner.thread_done(id);
            });
        match spawned {
            Ok(h) => {
                entry.upstream = Some(upstream_reg);
                entry.live += 1;
                entry.handles.push(h);
            }
            Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
                return;
            }
        }
    }
    pump(inner, conn, &client, &upstream);
}

/// Copies `src` to `dst`, honouring the mode, until EOF, an error or a cut.
/// On EOF it half-closes `dst` (the other direction goes on); on an error
/// it closes both sockets so the other pump ends too.
fn pump(inner: &Inner, conn: &ConnShared, src: &TcpStream, dst: &TcpStream) {
    let mut buf = vec![0u8; BUF_SIZE];
    let close_both = || {
        let _ = src.shutdown(Shutdown::Both);
        let _ = dst.shutdown(Shutdown::Both);
    };
    let mut reader = src;
    loop {
        if inner.wait_not_stalled(conn).is_none() {
            return;
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                if !inner.stopping(conn) {
                    let _ = dst.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => n,
            Err(e) if retryable(&e) => continue,
            Err(_) => {
                close_both();
                return;
            }
        };
        // Bytes read just before a stall are held until it ends.
        let Some(mode) = inner.wait_not_stalled(conn) else {
            return;
        };
        if mode == ProxyMode::Blackhole {
            continue;
        }
        if !write_all(inner, conn, dst, &buf[..n]) {
            close_both();
            return;
        }
    }
}

/// Writes all of `data`, retrying on write timeouts; false on error or cut.
fn write_all(inner: &Inner, conn: &ConnShared, dst: &TcpStream, mut data: &[u8]) -> bool {
    let mut writer = dst;
    while !data.is_empty() {
        if inner.wait_not_stalled(conn).is_none() {
            return false;
        }
        match writer.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if retryable(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

/// SplitMix64: a tiny deterministic RNG for the chaos cutter.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server on loopback with its own thread counter; stops on drop.
    struct Echo {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        handle: Option<JoinHandle<()>>,
    }

    impl Echo {
        fn start() -> Echo {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let handle = thread::spawn(move || {
                let mut conns = Vec::new();
                while !flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                            let flag = Arc::clone(&flag);
                            conns.push(thread::spawn(move || {
                                let mut buf = [0u8; 4096];
                                let mut s = s;
                                while !flag.load(Ordering::SeqCst) {
                                    match s.read(&mut buf) {
                                        Ok(0) => return,
                                        Ok(n) => {
                                            if s.write_all(&buf[..n]).is_err() {
                                                return;
                                            }
                                        }
                                        Err(e) if retryable(&e) => {}
                                        Err(_) => return,
                                    }
                                }
                            }));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                for c in conns {
                    let _ = c.join();
                }
            });
            Echo {
                addr,
                stop,
                handle: Some(handle),
            }
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    fn connect(proxy: &TcpProxy) -> TcpStream {
        let s = TcpStream::connect(proxy.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    fn roundtrip(s: &mut TcpStream, msg: &[u8]) {
        s.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }

    /// Reads until EOF or error; true if the connection ended within `t`.
    fn closes_within(s: &mut TcpStream, t: Duration) -> bool {
        s.set_read_timeout(Some(t)).unwrap();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn forwards_both_ways() {
        let echo = Echo::start();
        let proxy = TcpProxy::start(echo.addr).unwrap();
        assert_eq!(proxy.url(), format!("http://127.0.0.1:{}", proxy.port()));
        let mut a = connect(&proxy);
        let mut b = connect(&proxy);
        roundtrip(&mut a, b"hello");
        roundtrip(&mut b, b"world");
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        roundtrip(&mut a, &big);
        wait_until("2 connections", || proxy.connections() == 2);
        assert_eq!(proxy.total_accepted(), 2);
        drop(a);
        wait_until("a's close to be seen", || proxy.connections() == 1);
        roundtrip(&mut b, b"still there");
    }

    #[test]
    fn string_targets() {
        let echo = Echo::start();
        let url = format!("http://{}/", echo.addr);
        let proxy = TcpProxy::start(url.as_str()).unwrap();
        assert_eq!(proxy.upstream(), vec![echo.addr]);
        roundtrip(&mut connect(&proxy), b"via url");
        proxy
            .set_upstream(format!("127.0.0.1:{}", echo.addr.port()))
            .unwrap();
        roundtrip(&mut connect(&proxy), b"via host:port");
        assert!(TcpProxy::start("no-port").is_err());
    }

    #[test]
    fn cut_all_closes_the_client() {
        let echo = Echo::start();
        let proxy = TcpProxy::start(echo.addr).unwrap();
        let mut a = connect(&proxy);
        let mut b = connect(&proxy);
        roundtrip(&mut a, b"x");
        roundtrip(&mut b, b"y");
        assert_eq!(proxy.cut_all(), 2);
        assert!(closes_within(&mut a, Duration::from_secs(2)));
        assert!(closes_within(&mut b, Duration::from_secs(2)));
        wait_until("no connections", || proxy.connections() == 0);
        assert_eq!(proxy.total_cut(), 2);
        // the proxy itself keeps working
        roundtrip(&mut connect(&proxy), b"after cut");
    }

    #[test]
    fn blackhole_never_answers() {
        let echo = Echo::start();
        let proxy = TcpProxy::start(echo.addr).unwrap();
        proxy.set_mode(ProxyMode::Blackhole);
        let mut s = connect(&proxy);
        s.write_all(b"anyone there?").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 16];
        let err = s.read(&mut buf).expect_err("a black hole must not answer");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        wait_until("1 connection", || proxy.connections() == 1);
        // the black-holed connection stays one after switching back
        proxy.set_mode(ProxyMode::Forward);
        s.write_all(b"more").unwrap();
        assert!(!closes_within(&mut s, Duration::from_millis(200)));
        roundtrip(&mut connect(&proxy), b"new ones forward");
        proxy.cut_all();
        assert!(closes_within(&mut s, Duration::from_secs(2)));
    }

    #[test]
    fn blackhole_drops_bytes_of_existing_connections() {
        let echo = Echo::start();
        let proxy = TcpProxy::start(echo.addr).unwrap();
        let mut s = connect(&proxy);
        roundtrip(&mut s, b"before");
        proxy.set_mode(ProxyMode::Blackhole);
        s.write_all(b"lost").unwrap();
        assert!(!closes_within(&mut s, Duration::from_millis(300)));
        proxy.set_mode(ProxyMode::Forward);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        roundtrip(&mut s, b"after");
    }

    #[test]
    fn stall_then_resume_delivers_the_bytes() {
        let echo = Echo::start();
        let proxy = TcpProxy::start(echo.addr).unwrap();
        let mut s = connect(&proxy);
        roundtrip(&mut s, b"warm");
        proxy.set_mode(ProxyMode::Stall);
        s.write_all(b"stalled bytes").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 13];
        assert!(s.read(&mut buf).is_err(), "nothing may pass while stalled");
        // a new connection during the stall is accepted but stalls too
        let mut t = connect(&proxy);
        t.write_all(b"t").unwrap();
        proxy.set_mode(ProxyMode::Forward);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"stalled bytes");
        let mut one = [0u8; 1];
        t.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"t");
    }

    #[test]
    fn refuse_closes_new_connections() {
        let echo = Echo::start();
        let proxy = TcpProxy::start(echo.addr).unwrap();
        let mut old = connect(&proxy);
        roundtrip(&mut old, b"old");
        proxy.set_mode(ProxyMode::Refuse);
        let mut s = connect(&proxy);
        assert!(closes_within(&mut s, Duration::from_secs(2)));
        roundtrip(&mut old, b"existing ones keep working");
        proxy.set_mode(ProxyMode::Forward);
        roundtrip(&mut connect(&proxy), b"back");
        assert_eq!(proxy.total_accepted(), 3);
    }

    #[test]
    fn upstream_down_closes_the_client() {
        let echo = Echo::start();
        let dead = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            l.local_addr().unwrap()
        };
        let proxy = TcpProxy::start(dead).unwrap();
        let mut s = connect(&proxy);
        assert!(closes_within(&mut s, Duration::from_secs(5)));
        proxy.set_upstream(echo.addr).unwrap();
        roundtrip(&mut connect(&proxy), b"switched");
    }

    #[test]
    fn chaos_cutter() {
        let echo = Echo::start();
        let proxy = TcpProxy::start(echo.addr).unwrap();
        proxy.start_cutting(Duration::from_millis(50));
        let mut s = connect(&proxy);
        assert!(closes_within(&mut s, Duration::from_secs(2)));
        proxy.stop_cutting();
        let mut s = connect(&proxy);
        roundtrip(&mut s, b"x");
        thread::sleep(Duration::from_millis(150));
        roundtrip(&mut s, b"not cut any more");

        proxy.cut_randomly(Duration::from_millis(20), Duration::from_millis(60), 7);
        assert!(closes_within(&mut s, Duration::from_secs(2)));
        assert!(proxy.total_cut() >= 2);
        // the cutter thread is part of live_threads until drop
        assert!(proxy.live_threads() >= 2);
    }

    #[test]
    fn proxies_etcd_plain_and_tls() {
        use crate::{EtcdVersion, Etcdctl, TestCerts};
        let server = EtcdServer::start(EtcdVersion::V3_5).unwrap();
        let proxy = TcpProxy::start(&server).unwrap();
        let ctl = Etcdctl::new([proxy.url()]).command_timeout(Duration::from_secs(2));
        ctl.run(["put", "k", "v"]).unwrap();
        proxy.set_mode(ProxyMode::Blackhole);
        let err = ctl
            .run(["get", "k"])
            .expect_err("a black hole must time out");
        assert!(err.to_string().contains("deadline exceeded"), "{err}");
        proxy.set_mode(ProxyMode::Forward);
        assert_eq!(
            ctl.run(["get", "k", "--print-value-only"]).unwrap().trim(),
            "v"
        );

        let certs = TestCerts::generate_temp().unwrap();
        let tls = EtcdServer::builder(EtcdVersion::V3_5)
            .tls(&certs, true)
            .start()
            .unwrap();
        proxy.set_upstream(&tls).unwrap();
        // TLS passes through untouched (the certificate is for 127.0.0.1)
        let ctl = Etcdctl::new([proxy.https_url()])
            .cacert(certs.ca_path())
            .cert(certs.client_cert_path(), certs.client_key_path());
        ctl.run(["put", "k", "tls"]).unwrap();
        proxy.cut_all();
        ctl.run(["get", "k"]).unwrap();
        assert!(proxy.total_accepted() >= 3);
    }

    #[test]
    fn rng_is_deterministic() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let mut c = SplitMix64::new(43);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn drop_leaves_no_threads() {
        let echo = Echo::start();
        let proxy = TcpProxy::start(echo.addr).unwrap();
        let counter = Arc::clone(&proxy.inner.threads);
        let mut fwd = connect(&proxy);
        roundtrip(&mut fwd, b"a");
        proxy.set_mode(ProxyMode::Blackhole);
        let mut hole = connect(&proxy);
        hole.write_all(b"b").unwrap();
        // the mode is read when the acceptor takes the connection
        wait_until("the black hole", || proxy.connections() == 2);
        proxy.set_mode(ProxyMode::Stall);
        let mut stalled = connect(&proxy);
        stalled.write_all(b"c").unwrap();
        proxy.cut_randomly(Duration::from_secs(60), Duration::from_secs(120), 1);
        // acceptor + 2 (fwd) + 1 (hole) + 2 (stalled) + cutter
        let deadline = Instant::now() + Duration::from_secs(5);
        while counter.load(Ordering::SeqCst) != 7 {
            let n = counter.load(Ordering::SeqCst);
            assert!(Instant::now() < deadline, "{n} threads instead of 7");
            thread::sleep(Duration::from_millis(10));
        }
        let started = Instant::now();
        drop(proxy);
        assert_eq!(counter.load(Ordering::SeqCst), 0, "threads left after drop");
        assert!(started.elapsed() < Duration::from_secs(2), "slow drop");
        for s in [&mut fwd, &mut hole, &mut stalled] {
            assert!(closes_within(s, Duration::from_secs(2)));
        }
    }
}
