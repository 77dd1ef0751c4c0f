//! A multi-member etcd cluster on loopback.

use std::io;
use std::time::{Duration, Instant};

use crate::install::EtcdVersion;
use crate::ports::try_free_port;
use crate::server::{unique_token, EtcdServer, START_TIMEOUT};
use crate::tls::{TestCerts, TlsMaterial};

/// How many times a cluster start is retried with fresh ports when a member
/// reports "address already in use".
const START_ATTEMPTS: usize = 3;

/// Builder for an [`EtcdCluster`]; see [`EtcdCluster::builder`].
#[derive(Debug, Clone)]
pub struct EtcdClusterBuilder {
    version: EtcdVersion,
    size: usize,
    name_prefix: String,
    flags: Vec<(String, String)>,
    tls: Option<TlsMaterial>,
}

impl EtcdClusterBuilder {
    /// Number of members (default 3).
    pub fn members(mut self, n: usize) -> Self {
        self.size = n;
        self
    }

    /// Member names are `PREFIX0`, `PREFIX1`, ... (default `m`).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// An etcd flag for every member; see [`crate::EtcdServerBuilder::flag`].
    pub fn flag(mut self, name: &str, value: impl Into<String>) -> Self {
        self.flags.push((name.to_string(), value.into()));
        self
    }

    /// Every member serves clients over TLS; see
    /// [`crate::EtcdServerBuilder::tls`]. Peer traffic stays plain http.
    pub fn tls(mut self, certs: &TestCerts, client_cert_auth: bool) -> Self {
        self.tls = Some(certs.server_material(client_cert_auth));
        self
    }

    /// Starts all members at once and waits (up to 30 s) until every member
    /// reports healthy.
    pub fn start(self) -> io::Result<EtcdCluster> {
        if self.size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a cluster needs at least one member",
            ));
        }
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            match self.try_start() {
                Ok(c) => return Ok(c),
                Err((e, true)) => last_err = Some(e),
                Err((e, false)) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("cluster failed to start")))
    }

    /// Err((error, retry_with_new_ports)).
    fn try_start(&self) -> Result<EtcdCluster, (io::Error, bool)> {
        let no_retry = |e| (e, false);
        let mut ports = Vec::with_capacity(self.size);
        for _ in 0..self.size {
            ports.push((
                try_free_port().map_err(no_retry)?,
                try_free_port().map_err(no_retry)?,
            ));
        }
        let names: Vec<String> = (0..self.size)
            .map(|i| format!("{}{i}", self.name_prefix))
            .collect();
        let initial_cluster = names
            .iter()
            .zip(&ports)
            .map(|(n, (_, peer))| format!("{n}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = unique_token("cluster");

        let mut members = Vec::with_capacity(self.size);
        for (name, (client, peer)) in names.iter().zip(&ports) {
            let mut b = EtcdServer::builder(self.version)
                .name(name.clone())
                .client_port(*client)
                .peer_port(*peer)
                .initial_cluster(initial_cluster.clone())
                .cluster_token(token.clone())
                .tls_material(self.tls.clone());
            for (k, v) in &self.flags {
                b = b.flag(k, v.clone());
            }
            members.push(b.start_no_wait().map_err(no_retry)?);
        }
        let cluster = EtcdCluster {
            version: self.version,
            members,
        };
        match cluster.wait_healthy(START_TIMEOUT) {
            Ok(()) => Ok(cluster),
            Err(e) => {
                let conflict = cluster
                    .members
                    .iter()
                    .any(|m| m.log().contains("address already in use"));
                Err((e, conflict))
            }
        }
    }
}

/// A cluster of real etcd servers on 127.0.0.1, all members started
/// together with a shared `--initial-cluster`. Dropping it kills every member
/// and removes their directories.
#[derive(Debug)]
pub struct EtcdCluster {
    version: EtcdVersion,
    members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// A builder for a cluster of `version` (3 members unless changed).
    pub fn builder(version: EtcdVersion) -> EtcdClusterBuilder {
        EtcdClusterBuilder {
            version,
            size: 3,
            name_prefix: "m".into(),
            flags: Vec::new(),
            tls: None,
        }
    }

    /// Starts an `n`-member cluster and waits until all members are healthy.
    pub fn start(version: EtcdVersion, n: usize) -> io::Result<EtcdCluster> {
        Self::builder(version).members(n).start()
    }

    /// The members' version.
    pub fn version(&self) -> EtcdVersion {
        self.version
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// All members, in order `m0`, `m1`, ...
    pub fn members(&self) -> &[EtcdServer] {
        &self.members
    }

    /// Member `i` (kill/pause/resume/stop/restart it through this).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn member(&self, i: usize) -> &EtcdServer {
        &self.members[i]
    }

    /// Every member's client URL (`http://127.0.0.1:PORT`, or `https://` for
    /// TLS), in member order.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::client_url).collect()
    }

    /// Every member's endpoint (`127.0.0.1:PORT`), in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }

    /// Waits until every running, unpaused member reports healthy.
    pub fn wait_healthy(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        for m in &self.members {
            if !m.is_running() || m.is_paused() {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            m.wait_healthy(left.max(Duration::from_millis(1)))?;
        }
        Ok(())
    }

    /// The index of the current leader, asking the running, unpaused members
    /// (`/v3/maintenance/status`); waits up to 10 s for one to be elected.
    pub fn leader(&self) -> io::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut leader_id = 0;
            let mut ids = Vec::with_capacity(self.members.len());
            for m in &self.members {
                let st = if m.is_running() && !m.is_paused() {
                    m.status().ok()
                } else {
                    None
                };
                if let Some(st) = &st {
                    if st.leader_id != 0 {
                        leader_id = st.leader_id;
                    }
                }
                ids.push(st.map(|s| s.member_id));
            }
            if let Some(i) = ids
                .iter()
                .position(|id| leader_id != 0 && *id == Some(leader_id))
            {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no running member is the cluster's leader",
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
