//! Analysis of a MySQL cluster whose GTID sets have 60,000 intervals each (a set with
//! holes everywhere, as years of errant-transaction cleanups or `gtid_purged` edits
//! leave it), printed as median and max of repeated runs; plus the set operations
//! alone.
//!
//! Run with `cargo bench --bench gtid_sets` (`KORC_BENCH_RUNS` sets the run count).

use korc::topology::analysis::{AnalysisCode, analyze};
use korc::topology::gtid::MysqlGtidSet;
use korc::topology::instance::{Flavor, Instance, InstanceKey, Replication, ThreadState};
use korc::topology::policy::Policy;
use std::time::Instant;

const INTERVALS: u64 = 60_000;
const PRIMARY_UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const ERRANT_UUID: &str = "4f22ab58-82db-22f2-8f44-d91bb8530673";

/// Every other transaction of the primary: `uuid:1:3:5:…`, 60,000 intervals.
fn holey_set() -> String {
    let mut text = String::from(PRIMARY_UUID);
    for n in 0..INTERVALS {
        text.push_str(&format!(":{}", 2 * n + 1));
    }
    text
}

fn mysql(key: &str, uuid: &str, executed: String, source: Option<&str>) -> Instance {
    let mut i = Instance::unknown(key.parse().unwrap());
    i.reachable = true;
    i.last_seen_ms = Some(1);
    i.flavor = Some(Flavor::Mysql);
    i.version = Some("8.4.3".into());
    i.server_uuid = Some(uuid.into());
    i.read_only = Some(source.is_some());
    i.super_read_only = Some(source.is_some());
    i.log_bin = Some(true);
    i.log_replica_updates = Some(true);
    i.binlog_format = Some("ROW".into());
    i.gtid.mode = Some("ON".into());
    i.gtid.executed = executed;
    i.replication = source.map(|s| {
        let k: InstanceKey = s.parse().unwrap();
        Replication {
            source_host: k.host,
            source_port: k.port,
            io_running: ThreadState::Yes,
            sql_running: ThreadState::Yes,
            using_gtid: "Auto_Position".into(),
            seconds_behind: Some(0),
            ..Default::default()
        }
    });
    i
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn report(what: &str, runs: usize, mut f: impl FnMut()) {
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let max = ms.iter().copied().fold(f64::MIN, f64::max);
    println!(
        "{what}: median {:.2} ms, max {max:.2} ms over {runs} runs",
        median(ms)
    );
}

fn main() {
    let runs: usize = std::env::var("KORC_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let set = holey_set();
    let errant = format!("{set},{ERRANT_UUID}:1-3");
    let snapshot = vec![
        mysql("10.0.0.1:3306", PRIMARY_UUID, set.clone(), None),
        mysql(
            "10.0.0.2:3306",
            "5a33bc69-93ec-33a3-9a55-ea2cc9641784",
            set.clone(),
            Some("10.0.0.1:3306"),
        ),
        mysql(
            "10.0.0.3:3306",
            ERRANT_UUID,
            errant.clone(),
            Some("10.0.0.1:3306"),
        ),
    ];
    let policy = Policy::default();
    let out = analyze(&snapshot, &policy, 0);
    let flagged = out
        .iter()
        .find(|a| a.instance.to_string() == "10.0.0.3:3306")
        .expect("the errant replica is reported");
    assert_eq!(flagged.code, AnalysisCode::ErrantGTIDDetected);
    assert_eq!(
        flagged.errant_gtids.as_deref(),
        Some(format!("{ERRANT_UUID}:1-3").as_str())
    );

    println!(
        "GTID sets of {INTERVALS} intervals ({} KiB of text each)",
        set.len() / 1024
    );
    report("analysis of a 3-instance snapshot", runs, || {
        assert_eq!(analyze(&snapshot, &policy, 0).len(), 2);
    });
    report("parse", runs, || {
        MysqlGtidSet::parse(&set).unwrap();
    });
    let (a, b) = (
        MysqlGtidSet::parse(&errant).unwrap(),
        MysqlGtidSet::parse(&set).unwrap(),
    );
    report("subtract", runs, || {
        assert_eq!(a.subtract(&b).transactions(), 3);
    });
    report("union", runs, || {
        assert_eq!(a.union(&b), a);
    });
    report("contains", runs, || {
        assert!(a.contains(&b) && !b.contains(&a));
    });
}
