//! Failover by the operator on the local control plane: korc installed by its Helm
//! chart (two replicas), a 3-instance semi-sync MariaDB cluster without an
//! anti-flapping block, and a writer inserting through the `-primary` EndpointSlice
//! address. Four scenarios, each repeated, each run printed, then median and maximum:
//! - `crash`: kill -9 of the primary's mariadbd → (a) the writer's first insert
//!   accepted by the new primary, (b) the `-primary` EndpointSlice listing only it;
//! - `hang`: SIGSTOP of the primary → the same two figures;
//! - `switchover`: `spec.switchover` → the write outage the engine measured, and the
//!   longest pause between the writer's acknowledged inserts around it;
//! - `leader`: the leading operator's node lost → the standby holding the Lease;
//! - `hook`: kill -9 with a trivial `preFailover` hook (`true`) → the hook's Job from
//!   its creation until korc saw it complete, and the first insert accepted.
//!
//! At the end every acknowledged insert must be on every instance.
//!
//! Run with `cargo bench -p korc-e2e --profile dev --bench operator_failover` after
//! `e2e/prereqs` and `cargo build -p korc`. `KORC_BENCH_RUNS` sets the runs per scenario
//! (default 10), `KORC_BENCH_SCENARIOS` which ones (default `crash,hang,switchover,leader,hook`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::korc::*;
use common::namespace;
use common::workload::{Writer, assert_everywhere, create_app_schema, wait_failover};
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
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

/// Median and maximum of a scenario's figures, printed.
fn summary(what: &str, figures: &[f64]) {
    println!(
        "{what}: median {:.3} s, max {:.3} s ({} runs)",
        median(figures.to_vec()),
        figures.iter().copied().fold(0.0, f64::max),
        figures.len()
    );
}

async fn bench(runs: usize) {
    let scenarios = std::env::var("KORC_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "crash,hang,switchover,leader,hook".into());
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
    for scenario in scenarios.split(',') {
        match scenario {
            "crash" | "hang" => {
                let (mut accepted, mut moved) = (Vec::new(), Vec::new());
                for run in 1..=runs {
                    let s = wait_settled(&api, "db", "3/3", "NoProblem", 180).await;
                    let old = s["primary"].as_str().unwrap().to_string();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let target = ContainerRef::pod("bench", &old);
                    let fault = if scenario == "crash" {
                        Fault::Kill(target)
                    } else {
                        Fault::Stop(target)
                    };
                    cp.inject(&fault).await.unwrap();
                    let f =
                        wait_failover(&client, &api, "bench", &old, Instant::now(), &writer, 30)
                            .await;
                    let (new, endpoint, insert) = (f.primary, f.endpoint_moved, f.first_insert);
                    // A hung primary is never woken: korc deletes its pod, and the
                    // stopped process is killed when the grace period ends.
                    println!(
                        "{scenario} run {run}: {old} → {new}: first insert accepted {:.3} s, -primary EndpointSlice {:.3} s",
                        insert.as_secs_f64(),
                        endpoint.as_secs_f64()
                    );
                    accepted.push(insert.as_secs_f64());
                    moved.push(endpoint.as_secs_f64());
                }
                let fault = if scenario == "crash" {
                    "kill -9"
                } else {
                    "SIGSTOP"
                };
                summary(
                    &format!("{fault} → first insert accepted on the new primary"),
                    &accepted,
                );
                summary(
                    &format!("{fault} → -primary EndpointSlice on the new primary"),
                    &moved,
                );
            }
            "switchover" => {
                let (mut outage, mut pause) = (Vec::new(), Vec::new());
                for run in 1..=runs {
                    wait_settled(&api, "db", "3/3", "NoProblem", 180).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let since = Instant::now();
                    let r = switch_over(&api, "db", &format!("bench-{run}"), None, 60).await;
                    assert_eq!(r["outcome"], "recovered", "{r:#}");
                    let ip = pod_ip(&client, "bench", r["successor"].as_str().unwrap()).await;
                    common::wait_for("an insert on the new primary", 30, || async {
                        writer.first_ack_after(since, &ip)
                    })
                    .await;
                    let gap = writer.longest_gap_since(Some(since));
                    let engine: f64 =
                        r["writeOutageMs"].as_i64().unwrap_or_default() as f64 / 1000.0;
                    println!(
                        "switchover run {run}: {} → {}: write outage {engine:.3} s (engine), longest pause between acknowledged inserts {:.3} s",
                        r["failed"].as_str().unwrap(),
                        r["successor"].as_str().unwrap(),
                        gap.as_secs_f64()
                    );
                    outage.push(engine);
                    pause.push(gap.as_secs_f64());
                }
                summary("switchover → write outage (engine)", &outage);
                summary(
                    "switchover → longest pause between acknowledged inserts",
                    &pause,
                );
            }
            "leader" => {
                let mut takeover = Vec::new();
                for run in 1..=runs {
                    wait_settled(&api, "db", "3/3", "NoProblem", 180).await;
                    let leader = leader_pod(&client).await;
                    let node = node_of(&client, "korc-system", &leader).await;
                    cp.inject(&Fault::LoseNode(node.clone())).await.unwrap();
                    let lost = Instant::now();
                    let took = common::wait_for("the standby holds the Lease", 30, || async {
                        (leader_pod(&client).await != leader).then(|| lost.elapsed())
                    })
                    .await;
                    println!(
                        "leader run {run}: {leader}'s node lost → standby leads after {:.3} s",
                        took.as_secs_f64()
                    );
                    takeover.push(took.as_secs_f64());
                    cp.inject(&Fault::RestoreNode(node)).await.unwrap();
                    common::wait_for("both operator replicas ready", 120, || async {
                        let pods = operator_pods(&client).await;
                        (pods.len() == 2 && pods.iter().all(common::is_ready)).then_some(())
                    })
                    .await;
                }
                summary("leader's node lost → standby holds the Lease", &takeover);
            }
            "hook" => {
                let gate = json!({"preFailover": [{"name": "gate", "timeoutSeconds": 30,
                    "template": {"spec": {"containers": [
                        {"name": "gate", "image": "busybox:1.37", "command": ["true"]}]}}}]});
                let patch = Patch::Merge(json!({"spec": {"hooks": gate}}));
                api.patch("db", &PatchParams::default(), &patch)
                    .await
                    .unwrap();
                let (mut hook, mut accepted) = (Vec::new(), Vec::new());
                for run in 1..=runs {
                    let s = wait_settled(&api, "db", "3/3", "NoProblem", 180).await;
                    let old = s["primary"].as_str().unwrap().to_string();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    cp.inject(&Fault::Kill(ContainerRef::pod("bench", &old)))
                        .await
                        .unwrap();
                    let f =
                        wait_failover(&client, &api, "bench", &old, Instant::now(), &writer, 30)
                            .await;
                    let s = status(&api, "db").await;
                    let r = s["recoveries"].as_array().unwrap().last().unwrap();
                    let h = &r["hooks"][0];
                    assert_eq!(h["outcome"], "succeeded", "{r:#}");
                    let at = |t: &serde_json::Value| {
                        t.as_str()
                            .unwrap()
                            .parse::<k8s_openapi::jiff::Timestamp>()
                            .unwrap()
                            .as_microsecond()
                    };
                    let took = (at(&h["endedAt"]) - at(&h["startedAt"])) as f64 / 1e6;
                    println!(
                        "hook run {run}: {old} → {}: preFailover Job created → complete {took:.3} s, first insert accepted {:.3} s",
                        f.primary,
                        f.first_insert.as_secs_f64()
                    );
                    hook.push(took);
                    accepted.push(f.first_insert.as_secs_f64());
                }
                summary("preFailover hook Job created → seen complete", &hook);
                summary(
                    "kill -9 with a preFailover hook → first insert accepted on the new primary",
                    &accepted,
                );
                let patch = Patch::Merge(json!({"spec": {"hooks": null}}));
                api.patch("db", &PatchParams::default(), &patch)
                    .await
                    .unwrap();
            }
            other => panic!("unknown scenario {other}"),
        }
    }
    let acknowledged = writer.stop().await;
    wait_settled(&api, "db", "3/3", "NoProblem", 180).await;
    assert_everywhere(
        &client,
        "bench",
        "db",
        &["db-0", "db-1", "db-2"],
        &acknowledged,
    )
    .await;
    println!(
        "{} inserts acknowledged, every one on every instance",
        acknowledged.len()
    );
}
