//! CPU time from `/proc`, and the N-machine query model built on it (README,
//! "Cluster mode": what N machines give).
//!
//! Why CPU-seconds: on one 2-core machine every process (nodes, NATS servers,
//! clients) shares the same cores, so wall-clock throughput there says nothing
//! about N machines. The CPU-seconds each kind of process spends per query do
//! carry over: a machine of C cores serves at most C / (its CPU-s per query)
//! queries a second while the work is CPU-bound.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// `utime + stime` (clock ticks) of a `/proc/PID/stat` line. The command name
/// (field 2) is in parentheses and may hold spaces or `)`, so the fields are
/// counted from the last `)`: state is field 3, utime 14, stime 15.
pub fn process_ticks(stat: &str) -> Result<u64> {
    let close = stat.rfind(')').context("no ')' in a /proc/PID/stat line")?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state), so field k is fields[k - 3].
    let field = |k: usize| -> Result<u64> {
        fields
            .get(k - 3)
            .with_context(|| format!("/proc/PID/stat has no field {k}"))?
            .parse()
            .with_context(|| format!("/proc/PID/stat field {k} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// The command name (field 2) of a `/proc/PID/stat` line, and its parent's pid.
pub fn comm_and_parent(stat: &str) -> Result<(String, u32)> {
    let open = stat.find('(').context("no '(' in a /proc/PID/stat line")?;
    let close = stat.rfind(')').context("no ')' in a /proc/PID/stat line")?;
    let ppid = stat[close + 1..]
        .split_whitespace()
        .nth(1)
        .context("/proc/PID/stat has no field 4")?
        .parse()
        .context("/proc/PID/stat field 4 is not a number")?;
    Ok((stat[open + 1..close].to_string(), ppid))
}

/// (busy, total) clock ticks of all CPUs from `/proc/stat`'s `cpu` line: total is
/// user + nice + system + idle + iowait + irq + softirq + steal (guest time is
/// already inside user), busy is total less idle and iowait.
pub fn machine_ticks(proc_stat: &str) -> Result<(u64, u64)> {
    let line = proc_stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no 'cpu ' line")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().context("/proc/stat: not a number"))
        .collect::<Result<_>>()?;
    if v.len() < 8 {
        bail!("/proc/stat's cpu line has {} fields, expected 8", v.len());
    }
    let total: u64 = v.iter().sum();
    Ok((total - v[3] - v[4], total))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux almost everywhere,
/// read rather than assumed).
pub fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("run getconf CLK_TCK")?;
    let hz: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK did not print a number")?;
    if hz <= 0.0 {
        bail!("CLK_TCK {hz}");
    }
    Ok(hz)
}

/// CPU-seconds a process has used so far.
pub fn process_seconds(pid: u32, hz: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    Ok(process_ticks(&stat)? as f64 / hz)
}

/// The pids of `parent`'s children named `comm` (how the bench finds the
/// `nats-server` processes it started).
pub fn children_named(parent: u32, comm: &str) -> Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (name, ppid) = comm_and_parent(&stat)?;
        if ppid == parent && name == comm {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Queries a second that `machines` machines of `cores` cores each serve when a
/// query costs `cpu_s` CPU-seconds of the processes on those machines and the
/// work is CPU-bound; at most `client_cap` (what the clients can ask: clients /
/// latency). The assumptions: the load spreads evenly over the machines (clients
/// spread over the nodes, shards placed evenly), nothing but these processes
/// runs there, and no lock or I/O wait leaves cores idle.
pub fn throughput(machines: f64, cores: f64, cpu_s: f64, client_cap: f64) -> f64 {
    if cpu_s <= 0.0 {
        return client_cap;
    }
    (machines * cores / cpu_s).min(client_cap)
}

/// Expected remote shards of one query when each of `machines` nodes serves (and,
/// in the design where a node stores only its shards, holds) `replication` of
/// the `shards` replicas placed evenly: a node serves a shard with probability
/// min(R, N) / N, and the others are asked over NATS.
pub fn remote_shards(shards: u32, replication: u32, machines: u32) -> f64 {
    if machines == 0 {
        return 0.0;
    }
    let served = f64::from(replication.min(machines)) / f64::from(machines);
    f64::from(shards) * (1.0 - served)
}

/// The least-squares line through `points` (x, y): (intercept, slope); None when
/// fewer than two distinct x values.
pub fn fit_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if points.len() < 2 || sxx <= f64::EPSILON {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    Some((my - slope * mx, slope))
}

/// One query's latency: the node ranks its own shards while it asks the others
/// (`cluster/src/scatter.rs` runs both at once), so the slower of the local walk
/// and the slowest remote shard (round trip + its walk), then the merge.
pub fn latency(local_walk: f64, remote: &[f64], merge: f64) -> f64 {
    remote.iter().copied().fold(local_walk, f64::max) + merge
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line from `cat /proc/self/stat`, the name changed to one with a
    // space and a ')' (which a process may choose).
    const STAT: &str = "16974 (a b) c) R 16970 16970 15963 0 -1 4194304 97 0 0 0 \
        37 12 0 0 20 0 1 0 210762 3133440 360 18446744073709551615";

    #[test]
    fn process_ticks_adds_utime_and_stime_after_an_odd_name() {
        assert_eq!(process_ticks(STAT).unwrap(), 49);
        assert_eq!(
            comm_and_parent(STAT).unwrap(),
            ("a b) c".to_string(), 16970)
        );
    }

    #[test]
    fn bad_stat_lines_are_errors_not_panics() {
        assert!(process_ticks("").is_err());
        assert!(process_ticks("1 (x) R 0 0").is_err());
        assert!(process_ticks("1 (x) R 0 0 0 0 0 0 0 0 0 0 x 2").is_err());
        assert!(comm_and_parent("1 x").is_err());
    }

    #[test]
    fn own_process_is_found_and_counts_up() {
        let hz = clock_ticks().unwrap();
        let me = std::process::id();
        let before = process_seconds(me, hz).unwrap();
        // Burn some CPU: the count must not go down, and must move within a second.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while process_seconds(me, hz).unwrap() == before && t.elapsed().as_secs() < 5 {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        assert!(process_seconds(me, hz).unwrap() > before);
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (_, parent) = comm_and_parent(&stat).unwrap();
        assert_eq!(parent, std::os::unix::process::parent_id());
    }

    #[test]
    fn machine_ticks_leave_out_idle_and_iowait() {
        let s = "cpu  329705 0 29626 60029 802 0 91 327 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let (busy, total) = machine_ticks(s).unwrap();
        assert_eq!(total, 329705 + 29626 + 60029 + 802 + 91 + 327);
        assert_eq!(busy, total - 60029 - 802);
        assert!(machine_ticks("cpu0 1 2 3\n").is_err());
        assert!(machine_ticks("cpu  1 2 3\n").is_err());
    }

    #[test]
    fn throughput_scales_with_machines_until_the_clients_cap_it() {
        // 1 ms of CPU a query: 2 cores serve 2,000/s, 10 machines 20,000/s.
        assert!((throughput(1.0, 2.0, 0.001, f64::INFINITY) - 2000.0).abs() < 1e-6);
        assert!((throughput(10.0, 2.0, 0.001, f64::INFINITY) - 20000.0).abs() < 1e-6);
        assert_eq!(throughput(10.0, 2.0, 0.001, 5000.0), 5000.0);
        assert_eq!(throughput(1.0, 2.0, 0.0, 7.0), 7.0);
    }

    #[test]
    fn remote_shards_follow_the_replicas_a_node_serves() {
        // Replication = nodes: every shard is local.
        assert_eq!(remote_shards(8, 3, 3), 0.0);
        assert_eq!(remote_shards(8, 3, 2), 0.0);
        // Replication 1 on 3 nodes: two thirds of 8 are remote.
        assert!((remote_shards(8, 1, 3) - 16.0 / 3.0).abs() < 1e-12);
        // Many machines: nearly every shard is remote.
        assert!((remote_shards(8, 3, 30) - 7.2).abs() < 1e-12);
        assert_eq!(remote_shards(8, 3, 0), 0.0);
    }

    #[test]
    fn fit_line_recovers_a_line_and_refuses_one_point() {
        let (a, b) = fit_line(&[(0.0, 1.0), (2.0, 5.0), (4.0, 9.0)]).unwrap();
        assert!((a - 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12);
        assert!(fit_line(&[(1.0, 1.0)]).is_none());
        assert!(fit_line(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
        assert!(fit_line(&[]).is_none());
    }

    #[test]
    fn latency_waits_for_the_slowest_part_then_merges() {
        assert_eq!(latency(1.0, &[], 0.5), 1.5);
        assert_eq!(latency(1.0, &[0.4, 3.0, 2.0], 0.5), 3.5);
    }
}
