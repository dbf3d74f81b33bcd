//! Server configuration, layered: built-in defaults, then an optional TOML file,
//! then environment variables and command-line flags (clap reads both).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::answer::admission::GenerationLimits;
use crate::limits::Limits;
use crate::server::{parse_keys, validate_keys, ApiKey};

/// The port Engram listens on by default.
pub const DEFAULT_PORT: u16 = 6363;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub host: IpAddr,
    pub port: u16,
    pub api_keys: Vec<ApiKey>,
    /// Browser origins ("https://app.example") allowed to call besides the
    /// server's own; a request naming any other `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// Host names served when bound to loopback besides 127.0.0.1, localhost
    /// and [::1] (other names are refused: DNS rebinding).
    pub allowed_hosts: Vec<String>,
    pub limits: Limits,
    /// `[generation]`: concurrent answers, their queue, deadline and token cap.
    pub generation: GenerationLimits,
    /// `[cluster]`: cluster mode's NATS servers and this node's id (absent: one machine).
    pub cluster: Option<ClusterSettings>,
}

/// Cluster mode (`--cluster`, `--node-id`, or a `[cluster]` table).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// NATS server URLs, comma-separated: "nats://h1:4222,nats://h2:4222".
    pub servers: String,
    pub node_id: u32,
    /// Snapshot after this many messages since the newest one (0: never by count)
    /// [default: 100000].
    #[serde(default)]
    pub snapshot_every_writes: Option<u64>,
    /// Snapshot after this many seconds, if anything was written (0: never by
    /// time) [default: 3600].
    #[serde(default)]
    pub snapshot_every_secs: Option<u64>,
    /// Which shards' records the node keeps: "placed" (those placed on it) or "all"
    /// (every shard's, so any node's snapshot holds the database) [default: placed].
    #[serde(default)]
    pub shard_records: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./engram-data"),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            api_keys: Vec::new(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            limits: Limits::default(),
            generation: GenerationLimits::default(),
            cluster: None,
        }
    }
}

/// Values given on the command line or in the environment; each overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub api_keys: Option<String>,
    pub cluster: Option<String>,
    pub node_id: Option<u32>,
    pub snapshot_every_writes: Option<u64>,
    pub snapshot_every_secs: Option<u64>,
    pub shard_records: Option<String>,
}

impl ServerConfig {
    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Self> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read config file {}: {e}", path.display())
                })?;
                let cfg: ServerConfig = toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("config file {} is invalid: {e}", path.display())
                })?;
                validate_keys(&cfg.api_keys).map_err(|e| {
                    anyhow::anyhow!("config file {}: api_keys: {e}", path.display())
                })?;
                cfg
            }
            None => ServerConfig::default(),
        };
        if let Some(d) = overrides.data_dir {
            cfg.data_dir = d;
        }
        if let Some(h) = overrides.host {
            cfg.host = h;
        }
        if let Some(p) = overrides.port {
            cfg.port = p;
        }
        if let Some(k) = overrides.api_keys {
            cfg.api_keys = parse_keys(&k).map_err(|e| anyhow::anyhow!("ENGRAM_API_KEYS: {e}"))?;
        }
        match (overrides.cluster, overrides.node_id, &mut cfg.cluster) {
            (Some(servers), Some(node_id), c) => {
                let file = c.take();
                cfg.cluster = Some(ClusterSettings {
                    servers,
                    node_id,
                    snapshot_every_writes: file.as_ref().and_then(|f| f.snapshot_every_writes),
                    snapshot_every_secs: file.as_ref().and_then(|f| f.snapshot_every_secs),
                    shard_records: file.and_then(|f| f.shard_records),
                })
            }
            (Some(servers), None, Some(c)) => c.servers = servers,
            (None, Some(node_id), Some(c)) => c.node_id = node_id,
            (Some(_), None, None) => {
                anyhow::bail!("--cluster needs --node-id N (this node's id, unique in the cluster)")
            }
            (None, Some(_), None) => {
                anyhow::bail!("--node-id is for cluster mode: give --cluster nats://... too")
            }
            (None, None, _) => {}
        }
        match (&mut cfg.cluster, overrides.shard_records) {
            (_, None) => {}
            (Some(c), records) => c.shard_records = records,
            (None, Some(_)) => {
                anyhow::bail!("--shard-records is for cluster mode: give --cluster nats://... too")
            }
        }
        let snapshots = (
            overrides.snapshot_every_writes,
            overrides.snapshot_every_secs,
        );
        match (&mut cfg.cluster, snapshots) {
            (_, (None, None)) => {}
            (Some(c), (writes, secs)) => {
                c.snapshot_every_writes = writes.or(c.snapshot_every_writes);
                c.snapshot_every_secs = secs.or(c.snapshot_every_secs);
            }
            (None, _) => anyhow::bail!(
                "--snapshot-every-* are for cluster mode: give --cluster nats://... too"
            ),
        }
        cfg.generation
            .validate()
            .map_err(|e| anyhow::anyhow!("config: {e}"))?;
        Ok(cfg)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engram.toml");
        std::fs::write(
            &file,
            "port = 7000\ndata_dir = \"/tmp/x\"\n[limits]\nmax_k = 50\n[[api_keys]]\nkey = \"abcdefgh\"\nscope = \"read\"\n",
        )
        .unwrap();
        let cfg = ServerConfig::load(
            Some(&file),
            Overrides {
                port: Some(7001),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.port, 7001);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(cfg.limits.max_k, 50);
        assert_eq!(cfg.limits.max_batch, Limits::default().max_batch);
        assert_eq!(cfg.api_keys.len(), 1);

        assert_eq!(cfg.generation, GenerationLimits::default());

        std::fs::write(&file, "[generation]\nmax_concurrent = 1\nmax_queue = 0\n").unwrap();
        let cfg = ServerConfig::load(Some(&file), Overrides::default()).unwrap();
        assert_eq!(
            (cfg.generation.max_concurrent, cfg.generation.max_queue),
            (1, 0)
        );
        assert_eq!(cfg.generation.deadline_s, 120.0);
        std::fs::write(&file, "[generation]\nmax_concurrent = 0\n").unwrap();
        let err = ServerConfig::load(Some(&file), Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("max_concurrent"), "{err}");

        std::fs::write(&file, "prot = 1\n").unwrap();
        let err = ServerConfig::load(Some(&file), Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");

        // Keys from the file follow the same rules as ENGRAM_API_KEYS.
        std::fs::write(&file, "[[api_keys]]\nkey = \"short\"\nscope = \"read\"\n").unwrap();
        let err = ServerConfig::load(Some(&file), Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("at least 8"), "{err}");
        std::fs::write(
            &file,
            "allowed_origins = [\"https://app.example\"]\n[[api_keys]]\nkey = \"reader-123\"\nscope = \"read\"\nscores = \"none\"\n",
        )
        .unwrap();
        let cfg = ServerConfig::load(Some(&file), Overrides::default()).unwrap();
        assert_eq!(cfg.api_keys[0].scores, crate::server::ScoreView::None);
        assert_eq!(cfg.allowed_origins, ["https://app.example"]);
        assert_eq!(cfg.cluster, None);

        // Cluster mode from the file, the node id from the command line.
        std::fs::write(
            &file,
            "[cluster]\nservers = \"nats://127.0.0.1:4222\"\nnode_id = 1\nsnapshot_every_writes = 50\n",
        )
        .unwrap();
        let over = Overrides {
            node_id: Some(3),
            snapshot_every_secs: Some(9),
            ..Default::default()
        };
        let cfg = ServerConfig::load(Some(&file), over).unwrap();
        let cluster = cfg.cluster.unwrap();
        assert_eq!(
            (cluster.servers.as_str(), cluster.node_id),
            ("nats://127.0.0.1:4222", 3)
        );
        assert_eq!(
            (cluster.snapshot_every_writes, cluster.snapshot_every_secs),
            (Some(50), Some(9))
        );
        assert_eq!(
            cluster.shard_records, None,
            "the cluster's default (placed) unless given"
        );
        std::fs::write(
            &file,
            "[cluster]\nservers = \"nats://127.0.0.1:4222\"\nnode_id = 1\nshard_records = \"placed\"\n",
        )
        .unwrap();
        let cfg = ServerConfig::load(Some(&file), Overrides::default()).unwrap();
        assert_eq!(
            cfg.cluster.unwrap().shard_records.as_deref(),
            Some("placed")
        );
        let alone = Overrides {
            snapshot_every_writes: Some(5),
            ..Default::default()
        };
        assert!(ServerConfig::load(None, alone).is_err());
        let alone = Overrides {
            shard_records: Some("placed".into()),
            ..Default::default()
        };
        assert!(ServerConfig::load(None, alone).is_err());
        let half = Overrides {
            cluster: Some("nats://127.0.0.1:4222".into()),
            ..Default::default()
        };
        let err = ServerConfig::load(None, half).unwrap_err();
        assert!(err.to_string().contains("--node-id"), "{err}");
    }
}
