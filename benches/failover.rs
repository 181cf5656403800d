//! korc's engine benchmarks, printed as medians of repeated runs:
//! - crash failover on real MariaDB and on real MySQL: from kill -9 of the primary until
//!   the new primary accepts an application write (detection by probing, analysis,
//!   recovery);
//! - analysis of a synthetic 10,000-instance snapshot.
//!
//! Run with `cargo bench --bench failover` (`KORC_BENCH_RUNS` sets the run count).

#[path = "../tests/support/mod.rs"]
mod support;

use korc::topology::analysis::{AnalysisCode, analyze};
use korc::topology::dialect::ReplicationCredentials;
use korc::topology::instance::{Flavor, Instance, InstanceKey, Replication, ThreadState};
use korc::topology::policy::Policy;
use korc::topology::probe::{now_ms, probe_cluster};
use korc::topology::recovery::{Outcome, RecoveryContext, Unguarded, recover};
use korc::topology::session::{Connector, Credentials};
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};

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

struct Run {
    detect_ms: f64,
    writable_ms: f64,
    write_accepted_ms: f64,
}

async fn crash_failover_once(flavor: support::Flavor) -> Run {
    let mut sb = support::Sandbox::replication(flavor, 3);
    let keys: Vec<InstanceKey> = sb
        .servers
        .iter()
        .map(|s| s.key().parse().unwrap())
        .collect();
    let ctx = RecoveryContext {
        connector: Connector::new(Credentials {
            user: support::ADMIN.0.into(),
            password: support::ADMIN.1.into(),
        }),
        policy: Policy::default(),
        replication: ReplicationCredentials {
            user: support::REPL.0.into(),
            password: support::REPL.1.into(),
            source_ca: None,
        },
    };
    let (connector, policy) = (&ctx.connector, &ctx.policy);
    let mut last = probe_cluster(connector, &keys, &[]).await;

    let t0 = Instant::now();
    sb.servers[0].kill9();
    let (analysis, detected) = loop {
        last = probe_cluster(connector, &keys, &last).await;
        let analysis = analyze(&last, policy, now_ms());
        if analysis
            .iter()
            .any(|a| a.actionable && a.code == AnalysisCode::DeadMaster)
        {
            break (analysis, t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let record = recover(&ctx, &last, &analysis, &Unguarded, None)
        .await
        .expect("a recovery");
    let writable = t0.elapsed();
    assert_eq!(record.outcome, Outcome::Recovered, "{record:#?}");
    let successor = record.successor.expect("a successor");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(successor.host.clone())
        .tcp_port(successor.port)
        .user(Some(support::APP.0))
        .pass(Some(support::APP.1))
        .db_name(Some("test"))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .expect("connect to the successor");
    conn.query_drop("INSERT INTO t (v) VALUES ('after failover')")
        .await
        .expect("write accepted");
    let accepted = t0.elapsed();
    let _ = conn.disconnect().await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Run {
        detect_ms: ms(detected),
        writable_ms: ms(detected) + record.writable_after_micros.unwrap_or(0) as f64 / 1000.0,
        write_accepted_ms: ms(accepted).max(ms(writable)),
    }
}

/// One primary, 99 intermediate masters, 100 replicas under each: 10,000 instances.
fn synthetic_snapshot() -> Vec<Instance> {
    let node = |key: String, source: Option<String>| {
        let mut i = Instance::unknown(key.parse().unwrap());
        i.reachable = true;
        i.last_seen_ms = Some(1);
        i.flavor = Some(Flavor::Mariadb);
        i.version = Some("10.11.19-MariaDB".into());
        i.read_only = Some(source.is_some());
        i.log_bin = Some(true);
        i.log_replica_updates = Some(true);
        i.binlog_format = Some("ROW".into());
        i.gtid.binlog_state = "0-1-1000".into();
        i.gtid.current_pos = "0-1-1000".into();
        i.replication = source.map(|s| {
            let k: InstanceKey = s.parse().unwrap();
            Replication {
                source_host: k.host,
                source_port: k.port,
                io_running: ThreadState::Yes,
                sql_running: ThreadState::Yes,
                using_gtid: "Slave_Pos".into(),
                seconds_behind: Some(0),
                ..Default::default()
            }
        });
        i
    };
    let mut v = vec![node("10.0.0.1:3306".into(), None)];
    for im in 0..99 {
        let im_key = format!("10.1.{im}.1:3306");
        v.push(node(im_key.clone(), Some("10.0.0.1:3306".into())));
        for r in 0..100 {
            v.push(node(format!("10.2.{im}.{r}:3306"), Some(im_key.clone())));
        }
    }
    v
}

fn main() {
    let runs: usize = std::env::var("KORC_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);

    let snapshot = synthetic_snapshot();
    let policy = Policy::default();
    let mut analysis_ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let out = analyze(&snapshot, &policy, now_ms());
        analysis_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(out.len(), 100);
    }
    println!(
        "analysis of {} instances: median {:.2} ms, max {:.2} ms over {} runs",
        snapshot.len(),
        median(analysis_ms.clone()),
        max(&analysis_ms),
        analysis_ms.len()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for flavor in [support::Flavor::MariaDb, support::Flavor::Mysql] {
        let results: Vec<Run> = (0..runs)
            .map(|_| rt.block_on(crash_failover_once(flavor)))
            .collect();
        for (name, values) in [
            (
                "kill -9 to DeadMaster detected",
                results.iter().map(|r| r.detect_ms).collect::<Vec<_>>(),
            ),
            (
                "kill -9 to successor writable",
                results.iter().map(|r| r.writable_ms).collect(),
            ),
            (
                "kill -9 to application write accepted",
                results.iter().map(|r| r.write_accepted_ms).collect(),
            ),
        ] {
            println!(
                "{}: {name}: median {:.1} ms, max {:.1} ms over {runs} runs",
                flavor.name(),
                median(values.clone()),
                max(&values)
            );
        }
    }
}
