//! `lock` and `elect`, on a session lease kept alive in the background (etcdctl's
//! `concurrency.Session`), with the server's Lock and Election services.

use std::sync::mpsc;

use etcd_blocking::proto::etcdserverpb as pb;
use etcd_blocking::proto::v3electionpb::LeaderKey;
use etcd_blocking::{Client, Error, KeepAliveTarget};

use crate::ctx::{exit, fail, go_err, Ctx, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::print;
use crate::watch::{exec_error, status_error};

/// What the main thread waits for.
enum Wake<T> {
    Done(T),
    Signal,
    SessionLost,
}

/// A session: a lease of `ttl` seconds, kept alive by a background thread that reports on
/// `tx` when the lease is lost.
fn session<T: Send + 'static>(ctx: &mut Ctx, ttl: i64, tx: &mpsc::Sender<Wake<T>>) -> i64 {
    let granted = match ctx.call_untimed(pb::LeaseGrantRequest { ttl, id: 0 }) {
        Ok(g) => g,
        Err(e) => fail(EXIT_ERROR, go_err(&e)),
    };
    let client = ctx.client().clone();
    let keeper = match client.keep_alive(KeepAliveTarget::from(&granted)) {
        Ok(k) => k,
        Err(e) => fail(EXIT_ERROR, go_err(&e)),
    };
    let tx = tx.clone();
    std::thread::spawn(move || {
        for item in keeper {
            if item.is_err() {
                break;
            }
        }
        let _ = tx.send(Wake::SessionLost);
    });
    granted.id
}

/// Forwards SIGINT/SIGTERM to `tx`.
fn forward_signals<T: Send + 'static>(tx: &mpsc::Sender<Wake<T>>) {
    let signals = crate::signals::catch();
    let tx = tx.clone();
    std::thread::spawn(move || {
        if signals.recv().is_ok() {
            let _ = tx.send(Wake::Signal);
        }
    });
}

/// Runs `call` on a thread, so that a signal can interrupt the wait.
fn spawn_call<T: Send + 'static>(
    tx: &mpsc::Sender<Wake<Result<T, Error>>>,
    call: impl FnOnce() -> Result<T, Error> + Send + 'static,
) {
    let tx = tx.clone();
    std::thread::spawn(move || {
        let _ = tx.send(Wake::Done(call()));
    });
}

fn print_key(ctx: &mut Ctx, key: &[u8]) {
    let resp = match ctx.call_untimed(pb::RangeRequest {
        key: key.to_vec().into(),
        ..Default::default()
    }) {
        Ok(r) => r,
        Err(e) => fail(EXIT_ERROR, go_err(&e)),
    };
    if resp.kvs.is_empty() && ctx.path == "lock" {
        fail(EXIT_ERROR, "lock lost on init");
    }
    print::get(ctx, &resp, false);
    crate::ctx::flush();
}

fn unlock(client: &Client, key: &[u8]) -> Result<(), Error> {
    client.unlock(key.to_vec()).map(|_| ())
}

pub fn lock(ctx: &mut Ctx, args: Vec<String>) {
    if args.is_empty() {
        fail(
            EXIT_BAD_ARGS,
            "lock takes a lock name argument and an optional command to execute",
        );
    }
    let client = ctx.client().clone();
    let (tx, rx) = mpsc::channel();
    let ttl = ctx.flags.int("ttl");
    let lease = session(ctx, ttl, &tx);
    forward_signals(&tx);
    let name = args[0].clone();
    let locker = client.clone();
    spawn_call(&tx, move || locker.lock(name.into_bytes(), lease));
    let locked = loop {
        match rx.recv() {
            Ok(Wake::Done(Ok(r))) => break r,
            Ok(Wake::Done(Err(e))) => fail(EXIT_ERROR, go_err(&e)),
            Ok(Wake::Signal) => fail(EXIT_ERROR, "context canceled"),
            Ok(Wake::SessionLost) => continue,
            Err(_) => fail(EXIT_ERROR, "context canceled"),
        }
    };
    let key = locked.key.to_vec();
    let revision = locked.header.map(|h| h.revision).unwrap_or_default();
    if args.len() > 1 {
        crate::ctx::flush();
        let status = std::process::Command::new(&args[1])
            .args(&args[2..])
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).as_ref())
            .env("ETCD_LOCK_REV", revision.to_string())
            .stdin(std::process::Stdio::null())
            .status();
        let unlocked = unlock(&client, &key);
        match status {
            Err(e) => fail(EXIT_ERROR, exec_error(&args[1], &e)),
            Ok(status) => {
                if let Some((msg, code)) = status_error(status) {
                    fail(code, msg);
                }
            }
        }
        if let Err(e) = unlocked {
            fail(EXIT_ERROR, go_err(&e));
        }
        return;
    }
    print_key(ctx, &key);
    loop {
        match rx.recv() {
            Ok(Wake::Signal) => {
                if let Err(e) = unlock(&client, &key) {
                    fail(EXIT_ERROR, go_err(&e));
                }
                exit(0);
            }
            Ok(Wake::SessionLost) | Err(_) => fail(EXIT_ERROR, "session expired"),
            Ok(Wake::Done(_)) => continue,
        }
    }
}

pub fn elect(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 && args.len() != 2 {
        fail(
            EXIT_BAD_ARGS,
            "elect takes one election name argument and an optional proposal argument",
        );
    }
    let client = ctx.client().clone();
    let listen = ctx.flags.bool("listen");
    if args.len() == 1 {
        if !listen {
            fail(EXIT_BAD_ARGS, "no proposal argument but -l not set");
        }
        observe(ctx, client, &args[0]);
    }
    if listen {
        fail(EXIT_BAD_ARGS, "proposal given but -l is set");
    }
    let (tx, rx) = mpsc::channel();
    let lease = session(ctx, 60, &tx);
    forward_signals(&tx);
    let (name, value) = (args[0].clone(), args[1].clone());
    let campaigner = client.clone();
    spawn_call(&tx, move || {
        campaigner.campaign(name.into_bytes(), lease, value.into_bytes())
    });
    let elected = loop {
        match rx.recv() {
            Ok(Wake::Done(Ok(r))) => break r,
            Ok(Wake::Done(Err(e))) => fail(EXIT_ERROR, go_err(&e)),
            Ok(Wake::Signal) | Err(_) => fail(EXIT_ERROR, "context canceled"),
            Ok(Wake::SessionLost) => continue,
        }
    };
    let leader: LeaderKey = elected.leader.unwrap_or_default();
    print_key(ctx, &leader.key);
    loop {
        match rx.recv() {
            Ok(Wake::Signal) => break,
            Ok(Wake::SessionLost) | Err(_) => fail(EXIT_ERROR, "elect: session expired"),
            Ok(Wake::Done(_)) => continue,
        }
    }
    if let Err(e) = client.resign(leader) {
        fail(EXIT_ERROR, go_err(&e));
    }
    exit(0)
}

/// `elect -l NAME`: every proclamation, as etcdctl prints them (a get response of the
/// leader's key-value).
fn observe(ctx: &mut Ctx, client: Client, name: &str) -> ! {
    let (tx, rx) = mpsc::channel::<Wake<()>>();
    session(ctx, 60, &tx);
    forward_signals(&tx);
    let stream = match client.observe(name.as_bytes().to_vec()) {
        Ok(s) => s,
        Err(e) => fail(EXIT_ERROR, go_err(&e)),
    };
    let (format, hex) = (ctx.format, ctx.hex);
    let done = tx.clone();
    std::thread::spawn(move || {
        for item in stream {
            let Ok(resp) = item else { break };
            let got = pb::RangeResponse {
                header: resp.header,
                kvs: resp.kv.into_iter().collect(),
                ..Default::default()
            };
            print_observed(format, hex, &got);
        }
        let _ = done.send(Wake::Done(()));
    });
    loop {
        match rx.recv() {
            Ok(Wake::Signal) => exit(0),
            Ok(Wake::Done(())) | Err(_) => fail(EXIT_ERROR, "elect: observer lost"),
            Ok(Wake::SessionLost) => continue,
        }
    }
}

fn print_observed(format: crate::ctx::Format, hex: bool, r: &pb::RangeResponse) {
    use crate::ctx::{outln, Format};
    match format {
        Format::Simple => {
            for kv in &r.kvs {
                print::kv_simple(hex, false, kv);
            }
        }
        Format::Json => outln(crate::json::range(r)),
        Format::Fields => {
            print::fields_hdr(&r.header);
            for kv in &r.kvs {
                print::fields_kv("", kv);
            }
            outln(format!("\"More\" : {}", r.more));
            outln(format!("\"Count\" : {}", r.count));
        }
        Format::Protobuf => print::protobuf(r),
        Format::Table => format.unsupported(),
    }
    crate::ctx::flush();
}
