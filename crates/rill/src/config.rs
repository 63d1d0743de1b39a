//! `rill start` settings: every one has a default, and each can come from the TOML file named by
//! `--config`, from an environment variable (`RILL_*`) or from a flag. A flag or variable beats the
//! file, the file beats the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use rill_api::client_limits::{self, ClientLimits};
use rill_api::http::HttpConfig;
use rill_api::pb::server::PbConfig;
use rill_node::{BackendKind, DeleteMode, NodeConfig};
use serde::Deserialize;

/// Flags of `rill start` (each also read from its environment variable).
#[derive(Args, Debug, Default)]
pub struct StartArgs {
    /// TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "RILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Node name [default: rill@127.0.0.1]
    #[arg(long, env = "RILL_NAME")]
    pub name: Option<String>,
    /// HTTP API listen address [default: 127.0.0.1:8098]
    #[arg(long, env = "RILL_HTTP")]
    pub http: Option<SocketAddr>,
    /// Protocol Buffers API listen address [default: 127.0.0.1:8087]
    #[arg(long, env = "RILL_PB")]
    pub pb: Option<SocketAddr>,
    /// Internode listen address (cluster traffic, handoff) [default: 127.0.0.1:8099]
    #[arg(long, env = "RILL_INTERNODE")]
    pub internode: Option<SocketAddr>,
    /// Secret shared by the nodes of a cluster (required to listen for internode traffic on a
    /// non-loopback address); prefer --cluster-secret-file
    #[arg(long, env = "RILL_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret (its first line)
    #[arg(long, env = "RILL_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Ownership transfers this node sends at once; changeable with `rill admin transfer-limit` [default: 2]
    #[arg(long, env = "RILL_TRANSFER_LIMIT")]
    pub transfer_limit: Option<usize>,
    /// Handoff bandwidth per transfer in MiB/s, 0 for unlimited [default: 0]
    #[arg(long, env = "RILL_HANDOFF_RATE_MB")]
    pub handoff_rate_mb: Option<u64>,
    /// Data directory [default: ./data]
    #[arg(long, env = "RILL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Ring size: number of partitions, a power of two in 8..=1024 [default: 64]
    #[arg(long, env = "RILL_RING_SIZE")]
    pub ring_size: Option<u32>,
    /// Storage backend: fjall (durable) or memory [default: fjall]
    #[arg(long, env = "RILL_BACKEND")]
    pub backend: Option<String>,
    /// Acknowledge writes only after fsync (group-committed) [default: false]
    #[arg(long, env = "RILL_SYNC")]
    pub sync: Option<bool>,
    /// Storage block cache in MiB [default: 64]
    #[arg(long, env = "RILL_CACHE_MB")]
    pub cache_mb: Option<u64>,
    /// Cache of decoded objects in MiB, shared by the vnodes; 0 turns it off [default: 128]
    #[arg(long, env = "RILL_OBJECT_CACHE_MB")]
    pub object_cache_mb: Option<u64>,
    /// Recent writes not yet flushed to table files, all partitions together, in MiB: the journal holds them (a restart replays them), memtables half as much [default: 128]
    #[arg(long, env = "RILL_WRITE_BUFFER_MB")]
    pub write_buffer_mb: Option<u64>,
    /// Tombstone reaping: milliseconds (e.g. 3000), `keep` or `immediate` [default: 3000]
    #[arg(long, env = "RILL_DELETE_MODE")]
    pub delete_mode: Option<String>,
    /// Largest object accepted, in bytes (Riak's object.size.maximum) [default: 52428800]
    #[arg(long, env = "RILL_OBJECT_SIZE_MAX")]
    pub object_size_max: Option<usize>,
    /// Serve the admin endpoints to non-loopback clients too [default: false]
    #[arg(long, env = "RILL_ADMIN_REMOTE")]
    pub admin_remote: Option<bool>,
    /// Memory for request bytes being received, node-wide, in MiB: past it, connections wait
    /// (their sockets are not read); a request larger than all of it is refused [default: 256]
    #[arg(long, env = "RILL_REQUEST_MEMORY_MB")]
    pub request_memory_mb: Option<u64>,
    /// Open client connections allowed per listener (HTTP, PB); the next one is refused
    /// [default: 4096]
    #[arg(long, env = "RILL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to finish sending a request (header and body) once it has begun;
    /// slower ones are closed. Idle connections may stay open [default: 60]
    #[arg(long, env = "RILL_READ_TIMEOUT_SECS")]
    pub read_timeout_secs: Option<u64>,
    /// Log filter, e.g. `info` or `rill_node=debug` [default: info]
    #[arg(long, env = "RILL_LOG")]
    pub log: Option<String>,
}

/// The same settings as read from the TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    http: Option<SocketAddr>,
    pb: Option<SocketAddr>,
    internode: Option<SocketAddr>,
    cluster_secret: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    transfer_limit: Option<usize>,
    handoff_rate_mb: Option<u64>,
    data_dir: Option<PathBuf>,
    ring_size: Option<u32>,
    backend: Option<String>,
    sync: Option<bool>,
    cache_mb: Option<u64>,
    object_cache_mb: Option<u64>,
    write_buffer_mb: Option<u64>,
    delete_mode: Option<String>,
    object_size_max: Option<usize>,
    admin_remote: Option<bool>,
    request_memory_mb: Option<u64>,
    max_connections: Option<usize>,
    read_timeout_secs: Option<u64>,
    log: Option<String>,
}

/// Everything `rill start` needs, resolved.
#[derive(Debug)]
pub struct Settings {
    pub node: NodeConfig,
    pub http_addr: SocketAddr,
    pub pb_addr: SocketAddr,
    pub http: HttpConfig,
    pub pb: PbConfig,
    pub log: String,
}

impl Settings {
    pub fn resolve(args: StartArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut node = NodeConfig::default();
        if let Some(v) = args.name.or(file.name) {
            node.name = v;
        }
        if let Some(v) = args.data_dir.or(file.data_dir) {
            node.data_dir = v;
        }
        if let Some(v) = args.ring_size.or(file.ring_size) {
            node.ring_size = v;
        }
        if let Some(v) = args.backend.or(file.backend) {
            node.backend = match v.as_str() {
                "fjall" => BackendKind::Fjall,
                "memory" => BackendKind::Memory,
                other => bail!("unknown backend {other:?}: use fjall or memory"),
            };
        }
        if let Some(v) = args.sync.or(file.sync) {
            node.sync_writes = v;
        }
        if let Some(v) = args.cache_mb.or(file.cache_mb) {
            node.cache_bytes = v * 1024 * 1024;
        }
        if let Some(v) = args.object_cache_mb.or(file.object_cache_mb) {
            node.object_cache_bytes = v * 1024 * 1024;
        }
        if let Some(v) = args.write_buffer_mb.or(file.write_buffer_mb) {
            node.write_buffer_bytes = v * 1024 * 1024;
        }
        if let Some(v) = args.delete_mode.or(file.delete_mode) {
            node.delete_mode = parse_delete_mode(&v)?;
        }
        if let Some(v) = args.internode.or(file.internode) {
            node.internode_addr = v;
        }
        node.cluster_secret = match (
            args.cluster_secret.or(file.cluster_secret),
            args.cluster_secret_file.or(file.cluster_secret_file),
        ) {
            (Some(s), _) => Some(s.into_bytes()),
            (None, Some(path)) => Some(read_secret(&path)?),
            (None, None) => None,
        };
        if node.cluster_secret.as_ref().is_some_and(|s| s.is_empty()) {
            bail!("the cluster secret is empty");
        }
        if node.cluster_secret.is_none() && !node.internode_addr.ip().is_loopback() {
            bail!(
                "refusing to listen for internode traffic on {} without a cluster secret: \
                 give every node of the cluster the same --cluster-secret-file",
                node.internode_addr
            );
        }
        if let Some(v) = args.transfer_limit.or(file.transfer_limit) {
            node.transfer_limit = v;
        }
        if let Some(v) = args.handoff_rate_mb.or(file.handoff_rate_mb) {
            node.handoff_rate = v * 1024 * 1024;
        }
        if let Some(v) = args.object_size_max.or(file.object_size_max) {
            node.limits.size_max = v;
            node.limits.size_warn = node.limits.size_warn.min(v);
        }
        let request_memory = match args.request_memory_mb.or(file.request_memory_mb) {
            Some(0) => bail!("request_memory_mb must be at least 1"),
            Some(mb) => mb
                .checked_mul(1024 * 1024)
                .and_then(|b| usize::try_from(b).ok())
                .context("request_memory_mb is too large")?,
            None => client_limits::DEFAULT_REQUEST_MEMORY,
        };
        let max_connections = match args.max_connections.or(file.max_connections) {
            Some(0) => bail!("max_connections must be at least 1"),
            Some(n) => n,
            None => client_limits::DEFAULT_MAX_CONNECTIONS,
        };
        let read_timeout = match args.read_timeout_secs.or(file.read_timeout_secs) {
            Some(0) => bail!("read_timeout_secs must be at least 1"),
            Some(secs) => Duration::from_secs(secs),
            None => client_limits::DEFAULT_READ_TIMEOUT,
        };
        let clients = Arc::new(ClientLimits::new(
            request_memory,
            max_connections,
            read_timeout,
        ));
        let http = HttpConfig {
            admin_remote: args.admin_remote.or(file.admin_remote).unwrap_or(false),
            max_body: node.limits.size_max + 1024 * 1024,
            clients: clients.clone(),
        };
        let pb = PbConfig {
            max_frame: node.limits.size_max + 1024 * 1024,
            clients,
        };
        Ok(Settings {
            node,
            http_addr: args
                .http
                .or(file.http)
                .unwrap_or(([127, 0, 0, 1], 8098).into()),
            pb_addr: args.pb.or(file.pb).unwrap_or(([127, 0, 0, 1], 8087).into()),
            http,
            pb,
            log: args.log.or(file.log).unwrap_or_else(|| "info".into()),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The secret in a file: its first line, without surrounding whitespace.
fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the cluster secret from {}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").trim().as_bytes().to_vec())
}

fn parse_delete_mode(v: &str) -> anyhow::Result<DeleteMode> {
    match v {
        "keep" => Ok(DeleteMode::Keep),
        "immediate" => Ok(DeleteMode::Immediate),
        ms => ms
            .parse::<u64>()
            .map(|ms| DeleteMode::After(Duration::from_millis(ms)))
            .map_err(|_| {
                anyhow::anyhow!("delete_mode must be milliseconds, keep or immediate, not {ms:?}")
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_file_or_flags() {
        let s = Settings::resolve(StartArgs::default()).unwrap();
        assert_eq!(s.node.name, "rill@127.0.0.1");
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8098");
        assert_eq!(s.pb_addr.to_string(), "127.0.0.1:8087");
        assert_eq!(s.node.data_dir, PathBuf::from("./data"));
        assert_eq!(s.node.ring_size, 64);
        assert_eq!(s.node.backend, BackendKind::Fjall);
        let clients = &s.http.clients;
        assert_eq!(clients.budget.capacity(), 256 * 1024 * 1024);
        assert_eq!(clients.http.max(), 4096);
        assert_eq!(clients.read_timeout, Duration::from_secs(60));
        assert!(
            Arc::ptr_eq(clients, &s.pb.clients),
            "one budget for both listeners"
        );
        assert_eq!(s.node.internode_addr.to_string(), "127.0.0.1:8099");
        assert_eq!(s.node.cluster_secret, None);
        assert_eq!(s.node.transfer_limit, 2);
    }

    #[test]
    fn client_limits_come_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rill.toml");
        std::fs::write(
            &path,
            "request_memory_mb = 32\nmax_connections = 10\nread_timeout_secs = 5\n",
        )
        .unwrap();
        let s = Settings::resolve(StartArgs {
            config: Some(path),
            max_connections: Some(20),
            ..StartArgs::default()
        })
        .unwrap();
        let clients = &s.pb.clients;
        assert_eq!(clients.budget.capacity(), 32 * 1024 * 1024);
        assert_eq!((clients.http.max(), clients.pb.max()), (20, 20));
        assert_eq!(clients.read_timeout, Duration::from_secs(5));
        for bad in [
            StartArgs {
                request_memory_mb: Some(0),
                ..StartArgs::default()
            },
            StartArgs {
                max_connections: Some(0),
                ..StartArgs::default()
            },
            StartArgs {
                read_timeout_secs: Some(0),
                ..StartArgs::default()
            },
        ] {
            assert!(Settings::resolve(bad).is_err());
        }
    }

    #[test]
    fn a_public_internode_address_needs_a_secret() {
        let public = StartArgs {
            internode: Some("0.0.0.0:8099".parse().unwrap()),
            ..StartArgs::default()
        };
        let err = Settings::resolve(public).unwrap_err();
        assert!(
            format!("{err:#}").contains("without a cluster secret"),
            "{err:#}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "  s3cret \nignored\n").unwrap();
        let s = Settings::resolve(StartArgs {
            internode: Some("0.0.0.0:8099".parse().unwrap()),
            cluster_secret_file: Some(file),
            ..StartArgs::default()
        })
        .unwrap();
        assert_eq!(s.node.cluster_secret.as_deref(), Some(&b"s3cret"[..]));
    }

    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rill.toml");
        std::fs::write(
            &path,
            "ring_size = 16\nname = \"a@h\"\ndelete_mode = \"keep\"\n",
        )
        .unwrap();
        let args = StartArgs {
            config: Some(path),
            ring_size: Some(32),
            ..StartArgs::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.node.ring_size, 32);
        assert_eq!(s.node.name, "a@h");
        assert_eq!(s.node.delete_mode, DeleteMode::Keep);
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rill.toml");
        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let err = Settings::resolve(StartArgs {
            config: Some(path),
            ..StartArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("no_such_setting"), "{err:#}");
        let err = Settings::resolve(StartArgs {
            backend: Some("rocks".into()),
            ..StartArgs::default()
        });
        assert!(err.is_err());
        assert!(parse_delete_mode("soon").is_err());
    }
}
