//! `engram cluster status`: the cluster as a running node sees it (`GET /cluster`),
//! as text: the stream, the live nodes with their applied sequence and lag, then each
//! shard with its last message and every placed replica's lag. `engram cluster
//! place`: a manual placement of one shard (`PUT /cluster/placement/...`). `engram
//! cluster snapshot`: a snapshot now, and the stream trimmed below it.

use std::fmt::Write;

use clap::Subcommand;
use engram_cluster::ClusterStatus;

use super::client::Client;
use super::Remote;

#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// Nodes, shards, replicas and lag per replica, as the node at --url sees them.
    Status {
        /// Print the response as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Places one shard's replicas on the given nodes by hand (compare-and-set: pass
    /// the shard's current override revision from `cluster status`, 0 for none).
    Place {
        collection: String,
        shard: u32,
        /// Node ids, comma-separated; left out: back to rendezvous hashing.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<u32>,
        #[arg(long, default_value_t = 0)]
        revision: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Snapshots the database of the node at --url to the object store now and
    /// trims the stream below it (admin; `POST /cluster/snapshot`).
    Snapshot {
        #[command(flatten)]
        remote: Remote,
    },
}

pub fn run(action: &ClusterAction) -> anyhow::Result<()> {
    match action {
        ClusterAction::Status { json, remote } => {
            let client = Client::new(&remote.url, remote.api_key.clone());
            let status: ClusterStatus = client.call("GET", "/cluster", None::<&()>)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render(&status));
            }
            Ok(())
        }
        ClusterAction::Place {
            collection,
            shard,
            nodes,
            revision,
            remote,
        } => {
            let client = Client::new(&remote.url, remote.api_key.clone());
            let body = serde_json::json!({"nodes": nodes, "revision": revision});
            let answer: serde_json::Value = client.call(
                "PUT",
                &format!("/cluster/placement/{collection}/{shard}"),
                Some(&body),
            )?;
            println!(
                "shard {shard} of {collection} placed on {nodes:?}: revision {}",
                answer["revision"]
            );
            Ok(())
        }
        ClusterAction::Snapshot { remote } => {
            let client = Client::new(&remote.url, remote.api_key.clone());
            let t: engram_cluster::snapshot::Taken =
                client.call("POST", "/cluster/snapshot", None::<&()>)?;
            println!(
                "snapshot {} at sequence {} ({} bytes, by node {}) in {:.2} s; the stream now begins at {} ({} messages purged)",
                t.snapshot.name, t.snapshot.seq, t.snapshot.bytes, t.snapshot.node_id, t.seconds,
                t.stream_first_seq, t.purged
            );
            Ok(())
        }
    }
}

/// The status as aligned text.
fn render(s: &ClusterStatus) -> String {
    let mut out = String::new();
    let leader = s.stream_leader.as_deref().unwrap_or("none");
    let _ = writeln!(
        out,
        "stream: last seq {}, {} replicas, leader {leader}; answered by node {} (applied {})",
        s.last_seq, s.stream_replicas, s.node_id, s.applied_seq
    );
    let _ = writeln!(
        out,
        "node {}'s requests to shards' replicas: writes forwarded {} sent / {} taken, reads {} sent / {} taken",
        s.node_id, s.forwarded.sent, s.forwarded.taken, s.fetched.sent, s.fetched.taken
    );
    let _ = writeln!(
        out,
        "\n{:>6}  {:>10}  {:>8}  address",
        "node", "applied", "lag"
    );
    for n in &s.nodes {
        let _ = writeln!(
            out,
            "{:>6}  {:>10}  {:>8}  {}",
            n.node_id, n.applied_seq, n.lag, n.address
        );
    }
    if !s.shards.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<20}  {:>5}  {:>10}  replicas (node:lag)",
            "collection", "shard", "last seq"
        );
    }
    for sh in &s.shards {
        let replicas: Vec<String> = sh
            .replicas
            .iter()
            .map(|r| format!("{}:{}", r.node_id, r.lag))
            .collect();
        let by_hand = match sh.override_revision {
            0 => String::new(),
            r => format!("  (placed by hand, revision {r})"),
        };
        let _ = writeln!(
            out,
            "{:<20}  {:>5}  {:>10}  {}{by_hand}",
            sh.collection,
            sh.shard,
            sh.last_seq,
            replicas.join(" ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_cluster::{NodeStatus, ReplicaStatus, ShardStatus};

    #[test]
    fn the_status_lists_nodes_and_every_replica_of_every_shard() {
        let node = |id, applied| NodeStatus {
            node_id: id,
            address: format!("http://127.0.0.1:{id}"),
            applied_seq: applied,
            lag: 9 - applied,
            at_ms: 0,
            serving: vec![],
        };
        let s = ClusterStatus {
            node_id: 1,
            applied_seq: 9,
            last_seq: 9,
            stream_replicas: 3,
            stream_leader: Some("n2".into()),
            nodes: vec![node(1, 9), node(2, 7)],
            shards: vec![ShardStatus {
                collection: "docs".into(),
                shard: 3,
                last_seq: 8,
                replicas: vec![
                    ReplicaStatus { node_id: 1, lag: 0 },
                    ReplicaStatus { node_id: 2, lag: 1 },
                ],
                override_revision: 0,
            }],
            forwarded: Default::default(),
            fetched: engram_cluster::ShardRequests { sent: 4, taken: 2 },
        };
        let text = render(&s);
        assert!(text.contains("reads 4 sent / 2 taken"), "{text}");
        assert!(text.contains("leader n2"), "{text}");
        assert!(text.contains("http://127.0.0.1:2"), "{text}");
        let row = text.lines().find(|l| l.starts_with("docs")).unwrap();
        assert!(row.ends_with("1:0 2:1"), "{row}");
    }
}
