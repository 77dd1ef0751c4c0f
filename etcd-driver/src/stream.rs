//! Tasks that move bytes between `h2` and the driver: one per connection, one per stream.
//! They make no decisions; they report what happened to the driver's inbox.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use bytes::Bytes;
use etcd_proto_core::{Endpoint, EndpointId, StreamId};
use h2::client::SendRequest;
use http::{HeaderMap, Request, StatusCode};
use tokio::sync::mpsc;

use crate::runtime::{BoxFuture, Runtime};
use crate::tls::TlsConnector;

/// What connection and stream tasks report.
pub(crate) enum Input {
    Connected {
        endpoint: EndpointId,
        generation: u64,
        send: SendRequest<Bytes>,
    },
    ConnectFailed {
        endpoint: EndpointId,
        generation: u64,
        error: String,
    },
    ConnectionLost {
        endpoint: EndpointId,
        generation: u64,
        error: String,
    },
    Pong {
        endpoint: EndpointId,
        generation: u64,
    },
    Headers {
        stream: StreamId,
        status: StatusCode,
        headers: HeaderMap,
        end_stream: bool,
    },
    Data {
        stream: StreamId,
        data: Bytes,
        end_stream: bool,
    },
    Trailers {
        stream: StreamId,
        trailers: HeaderMap,
    },
    Reset {
        stream: StreamId,
        reason: u32,
    },
    StreamError {
        stream: StreamId,
        error: String,
        request_sent: bool,
    },
}

/// What a stream task opens: the core's `Transmit::OpenStream`.
pub(crate) struct StreamOpen {
    pub stream: StreamId,
    pub request: Request<()>,
    pub body: Bytes,
    pub end_stream: bool,
    pub manual_flow_control: bool,
}

/// What the driver tells a stream task.
pub(crate) enum StreamCmd {
    Data { data: Bytes, end_stream: bool },
    Release(usize),
    Reset(u32),
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

/// What the driver tells a connection task. Dropping the sender closes the connection.
pub(crate) enum ConnCmd {
    Ping,
}

/// Connects (TCP, TLS), runs the HTTP/2 handshake and a first PING (so a peer that accepts TCP
/// but never speaks HTTP/2 is not reported as connected), reports the result, then drives the
/// connection until it ends or the driver drops the command sender.
pub(crate) async fn connection_task<R: Runtime>(
    rt: R,
    endpoint: EndpointId,
    generation: u64,
    target: Endpoint,
    tls: Option<TlsConnector>,
    inbox: mpsc::UnboundedSender<Input>,
    mut cmds: mpsc::UnboundedReceiver<ConnCmd>,
) {
    let attempt = async {
        let io = rt
            .connect(&target, tls.as_ref())
            .await
            .map_err(|e| format!("connect to {target}: {e}"))?;
        h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(1 << 20)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake with {target}: {e}"))
    };
    let closed = async { while cmds.recv().await.is_some() {} };
    let (send, mut connection) = match select(attempt, closed).await {
        Either::Left(Ok(pair)) => pair,
        Either::Left(Err(error)) => {
            let _ = inbox.send(Input::ConnectFailed {
                endpoint,
                generation,
                error,
            });
            return;
        }
        Either::Right(()) => return,
    };
    let mut ping_pong = connection.ping_pong();
    let mut connection = pin!(connection);
    // The first PING: the peer must answer before the connection counts as up.
    if let Some(pp) = ping_pong.as_mut() {
        let first = async {
            loop {
                match cmds.recv().await {
                    Some(ConnCmd::Ping) => continue,
                    None => return,
                }
            }
        };
        match select(
            select(pp.ping(h2::Ping::opaque()), connection.as_mut()),
            first,
        )
        .await
        {
            Either::Left(Either::Left(Ok(_))) => {}
            Either::Left(Either::Left(Err(e))) => {
                let _ = inbox.send(Input::ConnectFailed {
                    endpoint,
                    generation,
                    error: format!("HTTP/2 handshake with {target}: {e}"),
                });
                return;
            }
            Either::Left(Either::Right(result)) => {
                let error = match result {
                    Ok(()) => format!("{target} closed the connection during the handshake"),
                    Err(e) => format!("HTTP/2 handshake with {target}: {e}"),
                };
                let _ = inbox.send(Input::ConnectFailed {
                    endpoint,
                    generation,
                    error,
                });
                return;
            }
            Either::Right(()) => return,
        }
    }
    if inbox
        .send(Input::Connected {
            endpoint,
            generation,
            send,
        })
        .is_err()
    {
        return;
    }
    // Drive the connection; answer PING requests one at a time.
    type PingFuture = BoxFuture<(h2::PingPong, Result<h2::Pong, h2::Error>)>;
    let mut ping: Option<PingFuture> = None;
    loop {
        let cmd_or_pong = async {
            match ping.as_mut() {
                Some(p) => Either::Right(p.as_mut().await),
                None => Either::Left(cmds.recv().await),
            }
        };
        match select(connection.as_mut(), cmd_or_pong).await {
            Either::Left(result) => {
                let error = match result {
                    Ok(()) => "connection closed by the server".to_string(),
                    Err(e) => format!("connection to {target} failed: {e}"),
                };
                let _ = inbox.send(Input::ConnectionLost {
                    endpoint,
                    generation,
                    error,
                });
                return;
            }
            Either::Right(Either::Left(None)) => return,
            Either::Right(Either::Left(Some(ConnCmd::Ping))) => {
                // One ping at a time: the PingPong travels with the ping and comes back.
                if let Some(mut pp) = ping_pong.take() {
                    ping = Some(Box::pin(async move {
                        let result = pp.ping(h2::Ping::opaque()).await;
                        (pp, result)
                    }));
                }
            }
            Either::Right(Either::Right((pp, result))) => {
                ping = None;
                ping_pong = Some(pp);
                if result.is_ok() {
                    let _ = inbox.send(Input::Pong {
                        endpoint,
                        generation,
                    });
                }
            }
        }
    }
}

fn report_error(stream: StreamId, e: h2::Error, request_sent: bool) -> Input {
    match e.reason() {
        Some(reason) if e.is_reset() && e.is_remote() => Input::Reset {
            stream,
            reason: reason.into(),
        },
        Some(h2::Reason::REFUSED_STREAM) => Input::Reset {
            stream,
            reason: h2::Reason::REFUSED_STREAM.into(),
        },
        _ => Input::StreamError {
            stream,
            error: e.to_string(),
            request_sent,
        },
    }
}

/// Opens one stream, sends the request, and reports the response head, data and trailers.
pub(crate) async fn stream_task(
    send: SendRequest<Bytes>,
    open: StreamOpen,
    inbox: mpsc::UnboundedSender<Input>,
    mut cmds: mpsc::UnboundedReceiver<StreamCmd>,
) {
    let StreamOpen {
        stream,
        request,
        body,
        end_stream,
        manual_flow_control,
    } = open;
    // Wait for a stream slot; a reset before that means nothing was ever sent. Data queued
    // meanwhile (bidirectional streams) is sent right after the request body.
    let mut queued = Vec::new();
    let mut ready = pin!(send.ready());
    let mut send = loop {
        match select(ready.as_mut(), cmds.recv()).await {
            Either::Left(Ok(send)) => break send,
            Either::Left(Err(e)) => {
                let _ = inbox.send(report_error(stream, e, false));
                return;
            }
            Either::Right(Some(StreamCmd::Reset(_))) | Either::Right(None) => return,
            Either::Right(Some(StreamCmd::Data { data, end_stream })) => {
                queued.push((data, end_stream))
            }
            Either::Right(Some(StreamCmd::Release(_))) => {}
        }
    };
    let (response, mut tx) = match send.send_request(request, false) {
        Ok(pair) => pair,
        Err(e) => {
            let _ = inbox.send(report_error(stream, e, false));
            return;
        }
    };
    let first = std::iter::once((body, end_stream));
    for (data, end_stream) in first.chain(queued) {
        if let Err(e) = tx.send_data(data, end_stream) {
            let _ = inbox.send(report_error(stream, e, true));
            return;
        }
    }
    let mut cmds_open = true;
    let mut response = pin!(response);
    let response = loop {
        let cmd = async {
            if cmds_open {
                cmds.recv().await
            } else {
                std::future::pending().await
            }
        };
        match select(response.as_mut(), cmd).await {
            Either::Left(Ok(r)) => break r,
            Either::Left(Err(e)) => {
                let _ = inbox.send(report_error(stream, e, true));
                return;
            }
            Either::Right(Some(StreamCmd::Reset(reason))) => {
                tx.send_reset(reason.into());
                return;
            }
            Either::Right(Some(StreamCmd::Data { data, end_stream })) => {
                let _ = tx.send_data(data, end_stream);
            }
            Either::Right(Some(StreamCmd::Release(_))) => {}
            Either::Right(None) => cmds_open = false,
        }
    };
    let (head, mut body) = response.into_parts();
    let done = body.is_end_stream();
    if inbox
        .send(Input::Headers {
            stream,
            status: head.status,
            headers: head.headers,
            end_stream: done,
        })
        .is_err()
        || done
    {
        return;
    }
    loop {
        let cmd = async {
            if cmds_open {
                cmds.recv().await
            } else {
                std::future::pending().await
            }
        };
        match select(body.data(), cmd).await {
            Either::Left(Some(Ok(data))) => {
                if !manual_flow_control {
                    let _ = body.flow_control().release_capacity(data.len());
                }
                let end_stream = body.is_end_stream();
                if inbox
                    .send(Input::Data {
                        stream,
                        data,
                        end_stream,
                    })
                    .is_err()
                    || end_stream
                {
                    return;
                }
            }
            Either::Left(Some(Err(e))) => {
                let _ = inbox.send(report_error(stream, e, true));
                return;
            }
            Either::Left(None) => break,
            Either::Right(Some(StreamCmd::Reset(reason))) => {
                tx.send_reset(reason.into());
                return;
            }
            Either::Right(Some(StreamCmd::Data { data, end_stream })) => {
                let _ = tx.send_data(data, end_stream);
            }
            Either::Right(Some(StreamCmd::Release(bytes))) => {
                let _ = body.flow_control().release_capacity(bytes);
            }
            Either::Right(None) => cmds_open = false,
        }
    }
    let input = match body.trailers().await {
        Ok(Some(trailers)) => Input::Trailers { stream, trailers },
        Ok(None) => Input::Data {
            stream,
            data: Bytes::new(),
            end_stream: true,
        },
        Err(e) => report_error(stream, e, true),
    };
    let _ = inbox.send(input);
}
