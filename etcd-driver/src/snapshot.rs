//! Saving a snapshot to a file, verified against the checksum the server sends last.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use etcd_proto_core::{Endpoint, Error};
use sha2::{Digest, Sha256};

use crate::client::Client;

/// What [`Client::snapshot_save`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSnapshot {
    /// The file.
    pub path: PathBuf,
    /// Bytes written: the database followed by its 32-byte SHA-256, as `etcdctl snapshot
    /// save` writes it (and `etcdutl snapshot restore` expects it).
    pub size: u64,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Transport {
        message: format!("snapshot: {what} {}: {e}", path.display()),
        request_sent: true,
    }
}

fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

impl Client {
    /// Streams a snapshot from one member into `path`: written to `PATH.part` (mode 0600),
    /// checked against the trailing SHA-256 the server sends, synced, then renamed. Go's
    /// `snapshot.Save` asks for one endpoint too: a snapshot is one member's state. The file
    /// writes are plain blocking writes of 32 KiB chunks.
    pub async fn snapshot_save(
        &self,
        endpoint: &Endpoint,
        path: impl AsRef<Path>,
    ) -> Result<SavedSnapshot, Error> {
        let path = path.as_ref().to_path_buf();
        let part = PathBuf::from(format!("{}.part", path.display()));
        let mut options = self.options.clone();
        options.endpoint = Some(endpoint.clone());
        let mut stream = self
            .server_stream_with(etcd_proto_core::rpc::Snapshot, options)
            .await?;
        let mut file = create_private(&part).map_err(|e| io_error("create", &part, e))?;
        let result = async {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            // The last message is the checksum: write each chunk only once the next arrived.
            let mut previous: Option<Bytes> = None;
            while let Some(message) = stream.next().await {
                let blob = message?.blob;
                if let Some(chunk) = previous.replace(blob) {
                    hasher.update(&chunk);
                    file.write_all(&chunk)
                        .map_err(|e| io_error("write", &part, e))?;
                    size += chunk.len() as u64;
                }
            }
            let checksum = previous.unwrap_or_default();
            let digest = hasher.finalize();
            if checksum.len() != digest.len() || checksum[..] != digest[..] {
                return Err(Error::Protocol(format!(
                    "snapshot checksum mismatch after {size} bytes (got {} checksum bytes)",
                    checksum.len()
                )));
            }
            file.write_all(&checksum)
                .map_err(|e| io_error("write", &part, e))?;
            size += checksum.len() as u64;
            file.sync_all().map_err(|e| io_error("sync", &part, e))?;
            Ok(size)
        }
        .await;
        drop(file);
        let size = match result {
            Ok(size) => size,
            Err(e) => {
                let _ = fs::remove_file(&part);
                return Err(e);
            }
        };
        fs::rename(&part, &path).map_err(|e| io_error("rename", &path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(SavedSnapshot { path, size })
    }
}
