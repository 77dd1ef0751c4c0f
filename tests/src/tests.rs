//! Tests of the harness itself, against real etcd binaries.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// True if `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the parenthesised command name
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !stat[i + 1..].trim_start().starts_with('Z'),
            None => true,
        },
        Err(_) => false,
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn check_single_server(version: EtcdVersion) {
    let server = EtcdServer::builder(version)
        .name("m0")
        .flag("--max-request-bytes", "10485760")
        .start()
        .unwrap_or_else(|e| panic!("start {version}: {e}"));
    let pid = server.pid();
    let base = server.base_dir().to_path_buf();
    assert!(process_alive(pid), "etcd pid {pid} not running");
    let cmd = cmdline(pid);
    assert!(
        cmd.contains(&version.binary().display().to_string()),
        "pid {pid} is not etcd itself: {cmd}"
    );
    assert!(cmd.contains("--max-request-bytes=10485760"), "{cmd}");
    assert!(cmd.contains("--name=m0"), "{cmd}");
    assert!(server.is_running());
    assert!(server.is_healthy());
    assert!(server.client_url().starts_with("http://127.0.0.1:"));
    assert_eq!(server.client_url(), format!("http://{}", server.endpoint()));
    assert!(server.data_dir().join("member").is_dir());

    let health = http::get(server.client_port(), "/health", Duration::from_secs(5)).unwrap();
    assert_eq!(health.status, 200);
    assert!(
        health.body.contains("\"health\":\"true\""),
        "{}",
        health.body
    );
    let v = server.version_json().unwrap();
    assert!(
        v.contains(&format!("\"etcdserver\":\"{}\"", version.label())),
        "{v}"
    );
    let st = server.status().unwrap();
    assert!(st.is_leader(), "{st:?}");
    assert_eq!(st.version, version.label());
    assert!(!server.log().is_empty());

    server.stop().unwrap();
    assert!(!process_alive(pid), "etcd pid {pid} survived stop()");
    assert!(!server.is_running());
    assert!(server.data_dir().is_dir(), "stop() must keep the data dir");
    assert!(!server.is_healthy());
    drop(server);
    assert!(!base.exists(), "{} not removed on drop", base.display());
}

#[test]
fn single_server_3_5() {
    check_single_server(EtcdVersion::V3_5);
}

#[test]
fn single_server_3_4() {
    check_single_server(EtcdVersion::V3_4);
}

#[test]
fn drop_kills_and_cleans_up() {
    for version in EtcdVersion::ALL {
        let server = EtcdServer::start(version).unwrap();
        let (pid, base) = (server.pid(), server.base_dir().to_path_buf());
        drop(server);
        assert!(!process_alive(pid), "{version}: pid {pid} survived drop");
        assert!(
            !base.exists(),
            "{version}: {} survived drop",
            base.display()
        );
    }
}

#[test]
fn kill_pause_resume_restart() {
    let server = EtcdServer::start(EtcdVersion::V3_5).unwrap();
    let url = server.client_url();
    let member_id = server.status().unwrap().member_id;

    server.pause().unwrap();
    assert!(server.is_paused());
    assert!(!server.is_healthy(), "a paused server must not answer");
    server.resume().unwrap();
    assert!(!server.is_paused());
    server.wait_healthy(Duration::from_secs(10)).unwrap();

    let old_pid = server.pid();
    server.kill().unwrap();
    wait_until("the killed etcd is gone", Duration::from_secs(10), || {
        !process_alive(old_pid)
    });
    assert!(!server.is_running());
    assert!(server.pause().is_err(), "pause of a dead server must fail");

    server.restart().unwrap();
    assert_ne!(server.pid(), old_pid);
    assert_eq!(server.client_url(), url, "restart must keep the ports");
    assert_eq!(
        server.status().unwrap().member_id,
        member_id,
        "restart must keep the data dir"
    );
    // restart of a running server stops it first
    let pid = server.pid();
    server.restart().unwrap();
    wait_until("the old etcd is gone", Duration::from_secs(10), || {
        !process_alive(pid)
    });
    assert!(server.is_healthy());
    // kill of a paused server works
    server.pause().unwrap();
    let pid = server.pid();
    server.kill().unwrap();
    wait_until("the old etcd is gone", Duration::from_secs(10), || {
        !process_alive(pid)
    });
}

#[test]
fn start_failure_reports_the_log() {
    let err = EtcdServer::builder(EtcdVersion::V3_5)
        .flag("--no-such-flag", "1")
        .start()
        .expect_err("an unknown flag must fail the start");
    let msg = err.to_string();
    assert!(msg.contains("no-such-flag"), "error lacks the log: {msg}");
}

fn check_cluster(version: EtcdVersion) {
    let cluster = EtcdCluster::start(version, 3).unwrap_or_else(|e| panic!("{version}: {e}"));
    assert_eq!(cluster.len(), 3);
    assert_eq!(cluster.client_urls().len(), 3);
    let urls: HashSet<_> = cluster.client_urls().into_iter().collect();
    assert_eq!(urls.len(), 3);
    for (i, m) in cluster.members().iter().enumerate() {
        assert_eq!(m.name(), format!("m{i}"));
        assert!(m.is_healthy(), "member {i} unhealthy");
    }
    let leader = cluster.leader().unwrap();
    let ids: HashSet<u64> = cluster
        .members()
        .iter()
        .map(|m| m.status().unwrap().member_id)
        .collect();
    assert_eq!(ids.len(), 3, "members must form one 3-member cluster");
    for m in cluster.members() {
        let st = m.status().unwrap();
        assert_eq!(
            st.leader_id,
            cluster.member(leader).status().unwrap().member_id
        );
    }
    let bases: Vec<PathBuf> = cluster
        .members()
        .iter()
        .map(|m| m.base_dir().to_path_buf())
        .collect();
    let pids: Vec<u32> = cluster.members().iter().map(EtcdServer::pid).collect();
    drop(cluster);
    for (pid, base) in pids.iter().zip(&bases) {
        assert!(!process_alive(*pid));
        assert!(!base.exists());
    }
}

#[test]
fn cluster_3_5() {
    check_cluster(EtcdVersion::V3_5);
}

#[test]
fn cluster_3_4() {
    check_cluster(EtcdVersion::V3_4);
}

#[test]
fn cluster_member_kill_and_restart() {
    let cluster = EtcdCluster::start(EtcdVersion::V3_5, 3).unwrap();
    let leader = cluster.leader().unwrap();
    // kill the leader: the other two elect a new one
    let victim = cluster.member(leader);
    let (pid, id) = (victim.pid(), victim.status().unwrap().member_id);
    victim.kill().unwrap();
    assert!(!process_alive(pid));
    assert!(victim.data_dir().is_dir());
    let new_leader = cluster.leader().unwrap();
    assert_ne!(new_leader, leader);
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();

    victim.restart().unwrap();
    assert_eq!(victim.status().unwrap().member_id, id);
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    for m in cluster.members() {
        assert!(m.is_healthy(), "{} unhealthy after restart", m.name());
    }

    // a paused member does not answer; the others keep quorum
    let other = cluster.member((leader + 1) % 3);
    other.pause().unwrap();
    assert!(!other.is_healthy());
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    other.resume().unwrap();
    other.wait_healthy(Duration::from_secs(30)).unwrap();
}

#[test]
fn shared_endpoint_is_healthy() {
    for version in EtcdVersion::ALL {
        let url = shared_endpoint(version);
        assert_eq!(url, shared_endpoint(version), "must be stable");
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("bad shared endpoint {url}"));
        let r = http::get(port, "/version", Duration::from_secs(5)).unwrap();
        assert!(r.body.contains(version.label()), "{url}: {}", r.body);
    }
}

#[test]
fn unique_prefixes() {
    let a = unique_prefix("t");
    let b = unique_prefix("t");
    assert_ne!(a, b);
    assert!(a.starts_with("etcd-tests/t/") && a.ends_with('/'), "{a}");
    assert!(!b.starts_with(&a));
}

const HELPER_ENV: &str = "ETCD_TESTS_WATCHDOG_HELPER_OUT";

/// Not a test on its own: when `HELPER_ENV` is set (by
/// `watchdog_kills_etcd_when_the_test_process_dies`), it starts a server,
/// writes its pid and base dir to that file and hangs until killed.
#[test]
fn watchdog_helper() {
    let Some(out) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let server = EtcdServer::start(EtcdVersion::V3_5).unwrap();
    let tmp = Path::new(&out).with_extension("tmp");
    fs::write(
        &tmp,
        format!("{}\n{}\n", server.pid(), server.base_dir().display()),
    )
    .unwrap();
    fs::rename(&tmp, &out).unwrap();
    thread::sleep(Duration::from_secs(600));
    unreachable!("the parent test kills this process");
}

#[test]
fn watchdog_kills_etcd_when_the_test_process_dies() {
    let out = std::env::temp_dir().join(unique_prefix("watchdog").replace('/', "_"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tests::watchdog_helper", "--nocapture"])
        .env(HELPER_ENV, &out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let text = loop {
        if let Ok(t) = fs::read_to_string(&out) {
            break t;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("helper exited early: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("helper did not start etcd");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let _ = fs::remove_file(&out);
    let mut lines = text.lines();
    let pid: u32 = lines.next().unwrap().parse().unwrap();
    let base = PathBuf::from(lines.next().unwrap());
    assert!(process_alive(pid));

    child.kill().unwrap(); // SIGKILL: no destructors run in the helper
    child.wait().unwrap();
    wait_until(
        "etcd to die with its test process",
        Duration::from_secs(10),
        || !process_alive(pid),
    );
    wait_until(
        "the orphaned server's dir to be removed",
        Duration::from_secs(10),
        || !base.exists(),
    );
}
