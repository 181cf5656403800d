//! The cost of healing by copy, on a real 3-instance cluster holding a data set of
//! `KORC_BENCH_CLONE_MIB` MiB (default 1024) while an application writes on: the
//! copy's throughput (MiB/s, from the bytes the recipient reports), the time from the
//! copy's start to a caught-up replica (copy, restart, attach, catch-up), and the
//! donor's replication lag while it gives its data. Three copies into the same new
//! instance; medians printed. MySQL copies with the clone plugin, MariaDB through
//! korc's agents (`mariadb-backup` streamed, prepared, swapped in by `korc agent
//! restore`). `KORC_BENCH_CLONE_FLAVOR` picks `mysql`, `mariadb` or `both` (default);
//! `KORC_BENCH_CLONE_LIMIT` sets the copy's limit in MiB/s (default 0: none).
//!
//! Run with `cargo bench --bench clone`.

#[path = "../tests/support/mod.rs"]
mod support;

use korc::agent::client::AgentClient;
use korc::agent::protocol::CloneRequest;
use korc::topology::clone::{
    choose_donor, clone_mariadb, clone_mysql, mysql_clone_progress, set_replica_position,
};
use korc::topology::dialect::ReplicationCredentials;
use korc::topology::instance::InstanceKey;
use korc::topology::policy::Policy;
use korc::topology::probe::{now_ms, probe, probe_cluster};
use korc::topology::recovery::point_to;
use korc::topology::session::{Connector, Credentials};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fills `test.bulk` with about `mib` MiB in 8 MiB transactions.
fn load(primary: &support::Server, mib: u64) {
    // MariaDB has no RANDOM_BYTES: incompressible enough from hashes.
    let random = match primary.flavor {
        support::Flavor::Mysql => "RANDOM_BYTES(1024)",
        support::Flavor::MariaDb => "REPEAT(SHA2(RAND(), 512), 8)",
    };
    primary.sql(&format!(
        "CREATE TABLE test.bulk (id INT AUTO_INCREMENT PRIMARY KEY, v BLOB NOT NULL); \
         INSERT INTO test.bulk (v) VALUES ({random}), ({random}); \
         INSERT INTO test.bulk (v) SELECT CONCAT(a.v, b.v, a.v, b.v, a.v, b.v, a.v, b.v) \
           FROM test.bulk a JOIN test.bulk b; DELETE FROM test.bulk WHERE LENGTH(v) < 8192"
    ));
    // Rows of 8 KiB: 1024 of them are 8 MiB.
    while primary
        .sql("SELECT COUNT(*) FROM test.bulk")
        .parse::<u64>()
        .unwrap()
        < mib * 128
    {
        primary.sql("INSERT INTO test.bulk (v) SELECT v FROM test.bulk ORDER BY id LIMIT 1024");
    }
}

struct Run {
    mib_per_second: f64,
    copy_seconds: f64,
    caught_up_seconds: f64,
    donor_max_lag: u64,
}

#[tokio::main]
async fn main() {
    let flavors = match std::env::var("KORC_BENCH_CLONE_FLAVOR").as_deref() {
        Ok("mysql") => vec![support::Flavor::Mysql],
        Ok("mariadb") => vec![support::Flavor::MariaDb],
        _ => vec![support::Flavor::Mysql, support::Flavor::MariaDb],
    };
    for flavor in flavors {
        bench(flavor).await;
    }
}

/// One copy into `new` from the donor `choose_donor` picks, until it is a caught-up
/// replica of `keys[0]`.
async fn copy_once(
    sb: &mut support::Sandbox,
    keys: &[InstanceKey],
    new: usize,
    limit: u32,
    connector: &Connector,
    repl: &ReplicationCredentials,
) -> (String, u64, Run) {
    let instances = probe_cluster(connector, keys, &[]).await;
    let choice = choose_donor(
        &instances,
        &keys[0],
        &keys[new],
        &Policy::default(),
        now_ms(),
    )
    .expect("a donor");
    let donor = keys.iter().position(|k| k == &choice.donor).unwrap();
    let t0 = Instant::now();
    let mut donor_max_lag = 0u64;
    let progress = Arc::new(std::sync::Mutex::new(None));
    let (bytes, position, copy_seconds) = match sb.servers[new].flavor {
        support::Flavor::Mysql => {
            let copy = {
                let (connector, to, from, repl) = (
                    connector.clone(),
                    keys[new].clone(),
                    choice.donor.clone(),
                    repl.clone(),
                );
                tokio::spawn(async move {
                    clone_mysql(
                        &connector,
                        &to,
                        &from,
                        &repl,
                        limit,
                        Duration::from_secs(3600),
                    )
                    .await
                })
            };
            let mut bytes = 0u64;
            while !copy.is_finished() {
                if let Ok(Some(p)) = mysql_clone_progress(connector, &keys[new]).await {
                    bytes = bytes.max(p.bytes_copied);
                }
                let donor = probe(connector, &choice.donor).await;
                donor_max_lag = donor_max_lag.max(donor.lag_seconds().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            copy.await.unwrap().expect("the copy");
            let copied = t0.elapsed().as_secs_f64();
            sb.servers[new].wait_exited(120);
            (bytes, None, copied)
        }
        support::Flavor::MariaDb => {
            let donor_agent = support::Agent::start(&sb.servers[donor], None);
            let recipient_agent = support::Agent::start(&sb.servers[new], None);
            let copy = {
                let client = AgentClient::new(support::REPL.0, support::REPL.1, None);
                let (to, progress) = (recipient_agent.address.clone(), progress.clone());
                let request = CloneRequest {
                    donor: donor_agent.address.clone(),
                    max_mib_per_second: limit,
                    save: None,
                };
                tokio::spawn(async move {
                    clone_mariadb(&client, &to, &request, &progress, Duration::from_secs(3600))
                        .await
                })
            };
            while !copy.is_finished() {
                let donor = probe(connector, &choice.donor).await;
                donor_max_lag = donor_max_lag.max(donor.lag_seconds().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let gtid = copy.await.unwrap().expect("the copy");
            let copied = t0.elapsed().as_secs_f64();
            let bytes = progress
                .lock()
                .unwrap()
                .as_ref()
                .map_or(0, |p| p.bytes_copied);
            // The pod's restart: the init container swaps the copy in.
            drop(recipient_agent);
            sb.servers[new].kill9();
            support::restore(&sb.servers[new]);
            (bytes, Some(gtid), copied)
        }
    };
    sb.servers[new].start();
    if let Some(gtid) = position {
        set_replica_position(connector, &keys[new], &gtid)
            .await
            .expect("the copy's replica position");
    }
    point_to(connector, &keys[new], &keys[0], Some(repl), true)
        .await
        .expect("attach the copy");
    sb.servers[new].wait_caught_up(&sb.servers[0]);
    let run = Run {
        mib_per_second: bytes as f64 / (1 << 20) as f64 / copy_seconds,
        copy_seconds,
        caught_up_seconds: t0.elapsed().as_secs_f64(),
        donor_max_lag,
    };
    (choice.donor.to_string(), bytes, run)
}

async fn bench(flavor: support::Flavor) {
    let mib = env_u64("KORC_BENCH_CLONE_MIB", 1024);
    let limit = env_u64("KORC_BENCH_CLONE_LIMIT", 0) as u32;
    let mut sb = support::Sandbox::replication(flavor, 3);
    let started = Instant::now();
    load(&sb.servers[0], mib);
    for i in 1..3 {
        sb.servers[i].wait_caught_up(&sb.servers[0]);
    }
    println!(
        "loaded {mib} MiB and replicated it in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for s in &sb.servers {
        s.sql("FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY");
    }

    let connector = Connector::new(Credentials {
        user: support::ADMIN.0.into(),
        password: support::ADMIN.1.into(),
    });
    let repl = ReplicationCredentials {
        user: support::REPL.0.into(),
        password: support::REPL.1.into(),
        source_ca: None,
    };
    let new = sb.add_empty();
    let keys: Vec<InstanceKey> = sb
        .servers
        .iter()
        .map(|s| s.key().parse().unwrap())
        .collect();

    let writing = Arc::new(AtomicBool::new(true));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (writing, acknowledged) = (writing.clone(), acknowledged.clone());
        let primary_ip = sb.servers[0].ip;
        let app = sb.servers[0]
            .app_command("SELECT 1")
            .get_program()
            .to_owned();
        std::thread::spawn(move || {
            while writing.load(Ordering::SeqCst) {
                let ok = std::process::Command::new(&app)
                    .args(["--no-defaults", "-h", &primary_ip.to_string(), "-P", "3306"])
                    .args(["-u", support::APP.0, &format!("-p{}", support::APP.1)])
                    .args(["test", "-e", "INSERT INTO t (v) VALUES ('during a copy')"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let mut runs = Vec::new();
    for run in 0..3 {
        let (donor, bytes, r) = copy_once(&mut sb, &keys, new, limit, &connector, &repl).await;
        println!(
            "copy {run} from {donor}: {:.0} MiB in {:.1} s ({:.0} MiB/s), caught up after {:.1} s, donor lag at most {} s",
            bytes as f64 / (1 << 20) as f64,
            r.copy_seconds,
            r.mib_per_second,
            r.caught_up_seconds,
            r.donor_max_lag
        );
        runs.push(r);
    }
    writing.store(false, Ordering::SeqCst);
    writer.join().unwrap();
    println!(
        "{}, {mib} MiB, limit {}: median copy {:.0} MiB/s ({:.1} s), caught up after {:.1} s, donor lag at most {} s; {} application writes during the copies",
        match flavor {
            support::Flavor::Mysql => "MySQL",
            support::Flavor::MariaDb => "MariaDB",
        },
        if limit == 0 {
            "none".to_string()
        } else {
            format!("{limit} MiB/s")
        },
        median(runs.iter().map(|r| r.mib_per_second).collect()),
        median(runs.iter().map(|r| r.copy_seconds).collect()),
        median(runs.iter().map(|r| r.caught_up_seconds).collect()),
        runs.iter().map(|r| r.donor_max_lag).max().unwrap_or(0),
        acknowledged.load(Ordering::SeqCst)
    );
}
