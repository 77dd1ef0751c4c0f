//! The transport pieces under the driver: the connect task (TCP, TLS, HTTP/2 handshake, first
//! PING), the write side of a connection, and the wakers that tell the driver which of its
//! HTTP/2 streams has something to read.
//!
//! Once a connection is up it is handed to the driver task, which polls it together with every
//! stream on it: there is no task per stream or per connection, so the frames of all requests
//! that became ready during one wake-up leave in one write, and a response costs no hop between
//! tasks.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use etcd_proto_core::{Endpoint, EndpointId, StreamId};
use h2::client::{Connection, SendRequest};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::runtime::{BoxIo, Runtime};
use crate::tls::TlsConnector;

/// The connection's byte stream as `h2` sees it: writes are never vectored. `h2` then copies
/// every frame shorter than 1 KiB into its 16 KiB write buffer instead of sending each DATA
/// payload with its own `writev`, so the frames of all streams queued since the last flush
/// leave in one write system call.
pub(crate) struct Unvectored(BoxIo);

impl AsyncRead for Unvectored {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Unvectored {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// An HTTP/2 connection as the driver holds it.
pub(crate) type H2Connection = Pin<Box<Connection<Unvectored, Bytes>>>;

/// A connection that completed its handshake and first PING.
pub(crate) struct Established {
    pub send: SendRequest<Bytes>,
    pub connection: H2Connection,
    pub ping_pong: Option<h2::PingPong>,
}

/// What connect tasks report.
pub(crate) enum Input {
    Connected {
        endpoint: EndpointId,
        generation: u64,
        established: Box<Established>,
    },
    ConnectFailed {
        endpoint: EndpointId,
        generation: u64,
        error: String,
    },
}

pub(crate) enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures, returning whichever finishes first (the left one wins ties).
pub(crate) async fn select<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}

/// Connects (TCP, TLS), runs the HTTP/2 handshake and a first PING (so a peer that accepts TCP
/// but never speaks HTTP/2 is not reported as connected), and hands the connection to the
/// driver. Dropping the sender of `cancel` abandons the attempt.
pub(crate) async fn connect_task<R: Runtime>(
    rt: R,
    endpoint: EndpointId,
    generation: u64,
    target: Endpoint,
    tls: Option<TlsConnector>,
    inbox: mpsc::UnboundedSender<Input>,
    mut cancel: mpsc::UnboundedReceiver<()>,
) {
    let failed = |error: String| Input::ConnectFailed {
        endpoint,
        generation,
        error,
    };
    let attempt = async {
        let io = rt
            .connect(&target, tls.as_ref())
            .await
            .map_err(|e| format!("connect to {target}: {e}"))?;
        h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(1 << 20)
            .handshake::<_, Bytes>(Unvectored(io))
            .await
            .map_err(|e| format!("HTTP/2 handshake with {target}: {e}"))
    };
    let (send, connection) = match select(attempt, cancel.recv()).await {
        Either::Left(Ok(pair)) => pair,
        Either::Left(Err(error)) => {
            let _ = inbox.send(failed(error));
            return;
        }
        Either::Right(_) => return,
    };
    let mut connection = Box::pin(connection);
    let mut ping_pong = connection.ping_pong();
    // The first PING: the peer must answer before the connection counts as up.
    if let Some(pp) = ping_pong.as_mut() {
        let outcome = select(
            select(pp.ping(h2::Ping::opaque()), connection.as_mut()),
            cancel.recv(),
        )
        .await;
        match outcome {
            Either::Left(Either::Left(Ok(_))) => {}
            Either::Left(Either::Left(Err(e))) => {
                let _ = inbox.send(failed(format!("HTTP/2 handshake with {target}: {e}")));
                return;
            }
            Either::Left(Either::Right(result)) => {
                let error = match result {
                    Ok(()) => format!("{target} closed the connection during the handshake"),
                    Err(e) => format!("HTTP/2 handshake with {target}: {e}"),
                };
                let _ = inbox.send(failed(error));
                return;
            }
            Either::Right(_) => return,
        }
    }
    let _ = inbox.send(Input::Connected {
        endpoint,
        generation,
        established: Box::new(Established {
            send,
            connection,
            ping_pong,
        }),
    });
}

/// The driver is polling (wake-ups only need noting).
const RUNNING: u8 = 0;
/// The driver is polling and something woke meanwhile: it goes round once more.
const NOTIFIED: u8 = 1;
/// The driver returned `Pending`: a wake-up must wake its task.
const PARKED: u8 = 2;

/// The waker of everything the driver polls (commands, connections, timers, streams).
/// While the driver runs, a wake-up only sets a flag that makes it go round once more, so the
/// frames it reads and the requests it queues never cost a round trip through the executor;
/// once it parked, the first wake-up wakes its task.
pub(crate) struct Notifier {
    state: AtomicU8,
    task: Mutex<Option<Waker>>,
    ready: Mutex<Vec<StreamId>>,
}

impl Notifier {
    pub(crate) fn new() -> Arc<Notifier> {
        Arc::new(Notifier {
            state: AtomicU8::new(RUNNING),
            task: Mutex::new(None),
            ready: Mutex::new(Vec::new()),
        })
    }

    /// Start of a poll of the driver: remember its task's waker.
    pub(crate) fn enter(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        match task.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *task = Some(waker.clone()),
        }
    }

    /// Start of a round: wake-ups from now on make the driver go round again.
    pub(crate) fn round(&self) {
        self.state.store(RUNNING, Ordering::Release);
    }

    /// End of a round: park unless something woke during it.
    pub(crate) fn try_park(&self) -> bool {
        self.state
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Makes the driver go round once more.
    pub(crate) fn poke(&self) {
        self.notify();
    }

    fn notify(&self) {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(task) = task {
                task.wake();
            }
        }
    }

    /// Marks a stream as having something to read.
    pub(crate) fn stream_ready(&self, stream: StreamId) {
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stream);
        self.notify();
    }

    /// Moves the streams marked ready to the end of `out`.
    pub(crate) fn take_ready(&self, out: &mut Vec<StreamId>) {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        if out.is_empty() {
            // Keeps both allocations in use.
            std::mem::swap(&mut *ready, out);
        } else {
            out.append(&mut ready);
        }
    }
}

impl Wake for Notifier {
    fn wake(self: Arc<Self>) {
        self.notify();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notify();
    }
}

/// The waker of one stream's receive side: marks the stream ready.
pub(crate) struct StreamWaker {
    pub stream: StreamId,
    pub notifier: Arc<Notifier>,
}

impl Wake for StreamWaker {
    fn wake(self: Arc<Self>) {
        self.notifier.stream_ready(self.stream);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notifier.stream_ready(self.stream);
    }
}
