//! Dry-run planning time on 10,000-instance snapshots, printed as medians of repeated
//! runs: a dead primary with 9,999 direct replicas at different positions (candidate
//! choice over all of them), the same with a live primary (switchover), and a dead
//! primary over 99 intermediate masters with 100 replicas each.
//!
//! Run with `cargo bench --bench dry_run` (`KORC_BENCH_RUNS` sets the run count).

use korc::topology::analysis::analyze;
use korc::topology::instance::{Flavor, Instance, InstanceKey, Replication, ThreadState};
use korc::topology::policy::{Policy, PromotionRule};
use korc::topology::recovery::dry_run::{self, Verdict};
use std::time::Instant;

const PRIMARY: &str = "10.0.0.1:3306";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MIN, f64::max)
}

/// An instance that applied `applied` and received `received`, replicating from
/// `source` (none: a master).
fn node(key: String, source: Option<&str>, applied: u64, received: u64) -> Instance {
    let mut i = Instance::unknown(key.parse().unwrap());
    i.reachable = true;
    i.last_seen_ms = Some(1);
    i.flavor = Some(Flavor::Mariadb);
    i.version = Some("10.11.19-MariaDB".into());
    i.server_id = Some(1);
    i.read_only = Some(source.is_some());
    i.log_bin = Some(true);
    i.log_replica_updates = Some(true);
    i.binlog_format = Some("ROW".into());
    i.gtid.binlog_state = format!("0-1-{applied}");
    i.gtid.current_pos = format!("0-1-{applied}");
    i.replication = source.map(|s| {
        let k: InstanceKey = s.parse().unwrap();
        Replication {
            source_host: k.host,
            source_port: k.port,
            io_running: ThreadState::Connecting,
            sql_running: ThreadState::Yes,
            using_gtid: "Slave_Pos".into(),
            received_gtids: format!("0-1-{received}"),
            ..Default::default()
        }
    });
    i
}

fn replica_key(n: usize) -> String {
    format!("10.2.{}.{}:3306", n / 250, n % 250)
}

/// A primary and 9,999 direct replicas whose received positions spread over 5,000
/// transactions; every 10th is `must_not`, every 100th unreachable.
fn flat(primary_alive: bool) -> (Vec<Instance>, Policy) {
    let mut master = node(PRIMARY.into(), None, 100_000, 0);
    master.reachable = primary_alive;
    let mut v = vec![master];
    let mut policy = Policy::default();
    for n in 0..9_999usize {
        let received = 95_000 + (n as u64 * 7919) % 5_000;
        let mut r = node(replica_key(n), Some(PRIMARY), received - 10, received);
        r.server_id = Some(n as u32 + 2);
        if primary_alive {
            r.replication.as_mut().unwrap().io_running = ThreadState::Yes;
        }
        if n % 100 == 99 {
            r.reachable = false;
        }
        if n % 10 == 3 {
            policy.instance_mut(&r.key).promotion_rule = PromotionRule::MustNot;
        }
        v.push(r);
    }
    (v, policy)
}

/// A dead primary, 99 intermediate masters, 100 replicas under each.
fn tree() -> Vec<Instance> {
    let mut master = node(PRIMARY.into(), None, 1_000, 0);
    master.reachable = false;
    let mut v = vec![master];
    for im in 0..99 {
        let im_key = format!("10.1.{im}.1:3306");
        v.push(node(im_key.clone(), Some(PRIMARY), 1_000, 1_000 - im));
        for r in 0..100 {
            let mut replica = node(format!("10.3.{im}.{r}:3306"), Some(&im_key), 990, 990);
            replica.replication.as_mut().unwrap().io_running = ThreadState::Yes;
            v.push(replica);
        }
    }
    v
}

fn report(what: &str, runs: usize, mut f: impl FnMut()) {
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{what}: median {:.2} ms, max {:.2} ms over {runs} runs",
        median(ms.clone()),
        max(&ms)
    );
}

fn main() {
    let runs: usize = std::env::var("KORC_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);

    let (crashed, policy) = flat(false);
    let analysis = analyze(&crashed, &policy, 0);
    let d = dry_run::recover(&crashed, &analysis, &policy, 0);
    assert_eq!(d.verdict, Verdict::Plan);
    assert_eq!(d.ranking.len(), 9_999);
    println!(
        "flat snapshot: {} instances, promoted {}, donor {:?}, {} steps",
        crashed.len(),
        d.promoted.as_ref().unwrap(),
        d.donor.as_ref().map(ToString::to_string),
        d.steps.len()
    );
    report(
        "recover --dry-run planning, dead primary with 9,999 replicas",
        runs,
        || {
            let d = dry_run::recover(&crashed, &analysis, &policy, 0);
            assert_eq!(d.verdict, Verdict::Plan);
        },
    );
    report(
        "analysis + recover --dry-run planning, same snapshot",
        runs,
        || {
            let analysis = analyze(&crashed, &policy, 0);
            let d = dry_run::recover(&crashed, &analysis, &policy, 0);
            assert_eq!(d.verdict, Verdict::Plan);
        },
    );

    let (live, policy) = flat(true);
    report(
        "switchover --dry-run planning, live primary with 9,999 replicas",
        runs,
        || {
            let d = dry_run::switchover(&live, None, &policy, 0);
            assert_eq!(d.verdict, Verdict::Plan);
        },
    );

    let tree = tree();
    let policy = Policy::default();
    let analysis = analyze(&tree, &policy, 0);
    report(
        "recover --dry-run planning, dead primary over 99 intermediate masters (10,000 instances)",
        runs,
        || {
            let d = dry_run::recover(&tree, &analysis, &policy, 0);
            assert_eq!(d.verdict, Verdict::Plan);
        },
    );
}
