//! Command line of the `etcd-bench/v1` peer contract: `WORKLOAD [--flag=value | --flag value |
//! --bool-flag ...]`. Every usage error exits with status 2 before anything connects.

use std::collections::BTreeMap;
use std::str::FromStr;

/// Flags every workload accepts.
const COMMON: &[&str] = &["endpoints", "conns", "clients", "max-seconds", "label"];
/// The one boolean flag (may be given bare).
const BOOL_FLAGS: &[&str] = &["sequential-keys"];

/// Prints a usage error and exits with status 2 (the contract's "invalid command line").
pub fn usage_error(msg: &str) -> ! {
    eprintln!("etcd-bench: {msg}");
    std::process::exit(2)
}

/// The workload and its flags, validated against the workload's flag set.
#[derive(Debug, Clone)]
pub struct Cli {
    /// `put`, `range`, `txn-put`, `watch` or `lease-keepalive`.
    pub workload: String,
    /// Every flag given, name without dashes -> value (a bare boolean flag -> `"true"`).
    pub params: BTreeMap<String, String>,
}

impl Cli {
    /// Parses `args` (without the program name); exits with status 2 on any usage error.
    pub fn parse(args: &[String]) -> Cli {
        let Some(workload) = args.first().filter(|a| !a.starts_with('-')) else {
            usage_error(
                "usage: etcd-bench <put|range|txn-put|watch|lease-keepalive> [--flag=value ...]",
            );
        };
        let mut params = BTreeMap::new();
        let mut i = 1;
        while i < args.len() {
            let a = &args[i];
            let Some(name) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
                usage_error(&format!("unexpected argument {a:?}"));
            };
            if let Some((k, v)) = name.split_once('=') {
                params.insert(k.to_string(), v.to_string());
            } else if BOOL_FLAGS.contains(&name) {
                params.insert(name.to_string(), "true".to_string());
            } else {
                let Some(v) = args.get(i + 1) else {
                    usage_error(&format!("flag --{name} needs a value"));
                };
                params.insert(name.to_string(), v.clone());
                i += 1;
            }
            i += 1;
        }
        let cli = Cli {
            workload: workload.clone(),
            params,
        };
        cli.validate();
        cli
    }

    fn allowed(&self) -> Vec<&'static str> {
        let own: &[&str] = match self.workload.as_str() {
            "put" => &[
                "total",
                "key-size",
                "val-size",
                "key-space-size",
                "sequential-keys",
            ],
            "txn-put" => &[
                "total",
                "key-size",
                "val-size",
                "key-space-size",
                "sequential-keys",
                "txn-ops",
            ],
            "range" => &["total", "consistency", "key", "val-size"],
            "watch" => &[
                "watchers",
                "streams",
                "watch-mode",
                "put-total",
                "put-rate",
                "key-size",
                "val-size",
            ],
            "lease-keepalive" => match self.str("mode", "once").as_str() {
                "once" => &["leases", "mode", "lease-ttl", "total"],
                "steady" => &["leases", "mode", "lease-ttl", "duration"],
                m => usage_error(&format!("--mode must be once or steady, got {m:?}")),
            },
            w => usage_error(&format!("unknown workload {w:?}")),
        };
        COMMON.iter().chain(own).copied().collect()
    }

    /// Checks names, then every value this workload reads, so that a typo never silently
    /// changes a workload.
    fn validate(&self) {
        let allowed = self.allowed();
        let unknown: Vec<&String> = self
            .params
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        if !unknown.is_empty() {
            usage_error(&format!(
                "flag(s) not read by workload {:?}: {unknown:?}",
                self.workload
            ));
        }
        for name in &allowed {
            match *name {
                "endpoints" | "label" | "key" => {}
                "max-seconds" | "put-rate" | "duration" => {
                    self.num::<f64>(name, 0.0);
                }
                "sequential-keys" => {
                    self.flag(name);
                }
                "consistency" => {
                    if !matches!(self.str(name, "l").as_str(), "l" | "s") {
                        usage_error("--consistency must be l or s");
                    }
                }
                "watch-mode" => {
                    if !matches!(self.str(name, "keys").as_str(), "keys" | "prefix") {
                        usage_error("--watch-mode must be keys or prefix");
                    }
                }
                "mode" => {}
                _ => {
                    self.num::<i64>(name, 0);
                }
            }
        }
        if self.workload == "txn-put" {
            let ops = self.num::<i64>("txn-ops", 1).max(1);
            let space = self.num::<i64>("key-space-size", 1).max(1);
            if ops > space {
                usage_error(&format!(
                    "--txn-ops ({ops}) must not exceed --key-space-size ({space}): the keys of one txn must differ"
                ));
            }
        }
    }

    /// A string flag.
    pub fn str(&self, name: &str, default: &str) -> String {
        self.params
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// A numeric flag; exits with status 2 when it does not parse.
    pub fn num<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.params.get(name) {
            None => default,
            Some(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| usage_error(&format!("bad value for --{name}: {v:?}"))),
        }
    }

    /// A boolean flag (bare, or `=true` / `=false`).
    pub fn flag(&self, name: &str) -> bool {
        match self.params.get(name).map(String::as_str) {
            None => false,
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(v) => usage_error(&format!("bad value for --{name}: {v:?}")),
        }
    }

    /// A count flag where values < 1 mean 1.
    pub fn at_least_one(&self, name: &str, default: i64) -> u64 {
        self.num::<i64>(name, default).max(1) as u64
    }

    /// A count flag where negative values mean 0.
    pub fn count(&self, name: &str, default: i64) -> u64 {
        self.num::<i64>(name, default).max(0) as u64
    }
}
