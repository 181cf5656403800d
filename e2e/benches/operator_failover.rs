//! Crash failover by the operator on the local control plane: korc installed by its
//! Helm chart (two replicas), a 3-instance semi-sync MariaDB cluster without an
//! anti-flapping block, and a writer inserting through the `-primary` EndpointSlice
//! address. Each run kills the primary's mariadbd with -9 and measures, from the kill,
//! (a) the writer's first insert accepted by the new primary and (b) the `-primary`
//! EndpointSlice listing only the new primary; then waits for `3/3 NoProblem`.
//! Prints every run, then the median and maximum, and checks at the end that every
//! acknowledged insert is on every instance.
//!
//! Run with `cargo bench -p korc-e2e --bench operator_failover` after `e2e/prereqs` and
//! `cargo build -p korc`. `KORC_BENCH_RUNS` sets the number of runs (default 10).

#[path = "../tests/common/mod.rs"]
mod common;

use common::korc::*;
use common::namespace;
use common::workload::{Writer, assert_everywhere, create_app_schema};
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("KORC_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench(runs));
}

async fn bench(runs: usize) {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    namespace(&client, "bench").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "bench");
    let mut cluster = sample("db", 3);
    cluster.spec.semi_sync = Some(korc::api::SemiSyncSpec {
        enabled: true,
        timeout_ms: None,
    });
    cluster.spec.recovery.block_period_seconds = 0;
    api.create(&PostParams::default(), &cluster).await.unwrap();
    let s = wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    let first = s["primary"].as_str().unwrap().to_string();
    let mut root = root_conn(&client, "bench", "db", &first).await;
    create_app_schema(&mut root).await;
    let writer = Writer::start(client.clone(), "bench", "db");
    let (mut accepted, mut moved) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let s = wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
        let old = s["primary"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_secs(1)).await;
        cp.inject(&Fault::Kill(ContainerRef::pod("bench", &old)))
            .await
            .unwrap();
        let killed = Instant::now();
        let new = wait_new_primary(&api, "db", &old, 30).await;
        let ip = pod_ip(&client, "bench", &new).await;
        let endpoint = common::wait_for("-primary on the new primary", 30, || async {
            (endpoint_ips(&client, "bench", "db-primary").await? == vec![ip.clone()])
                .then(|| killed.elapsed())
        })
        .await;
        let insert = common::wait_for("an insert on the new primary", 30, || async {
            writer.first_ack_after(killed, &ip).map(|t| t - killed)
        })
        .await;
        println!(
            "run {run}: {old} → {new}: first insert accepted {:.3} s, -primary EndpointSlice {:.3} s",
            insert.as_secs_f64(),
            endpoint.as_secs_f64()
        );
        accepted.push(insert.as_secs_f64());
        moved.push(endpoint.as_secs_f64());
    }
    let acknowledged = writer.stop().await;
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
    assert_everywhere(
        &client,
        "bench",
        "db",
        &["db-0", "db-1", "db-2"],
        &acknowledged,
    )
    .await;
    println!(
        "kill -9 → first insert accepted on the new primary: median {:.3} s, max {:.3} s ({runs} runs)",
        median(accepted.clone()),
        accepted.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "kill -9 → -primary EndpointSlice on the new primary: median {:.3} s, max {:.3} s",
        median(moved.clone()),
        moved.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "{} inserts acknowledged, every one on every instance",
        acknowledged.len()
    );
}
