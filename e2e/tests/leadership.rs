//! Leader election between the two operator replicas the Helm chart runs: the standby
//! takes the Lease when the leader's node is lost, and acts. In its own test binary
//! (its own control plane), because losing a node disturbs every other test.

mod common;

use common::korc::*;
use common::{namespace, wait_for};
use korc::api::MySQLCluster;
use korc_e2e::{ContainerRef, Fault};
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};

/// The chart's default lease duration.
const LEASE_DURATION: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn the_standby_takes_over_when_the_leaders_node_is_lost_and_acts() {
    let cp = korc_installed().await;
    let client = cp.client().await.unwrap();
    let operators = operator_pods(&client).await;
    assert_eq!(operators.len(), 2, "two operator replicas");
    wait_for("both operator replicas ready", 60, || async {
        let pods = operator_pods(&client).await;
        pods.iter().all(common::is_ready).then_some(())
    })
    .await;
    let leader = leader_pod(&client).await;
    let leader_node = node_of(&client, "korc-system", &leader).await;
    let standby = operators
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .find(|n| *n != leader)
        .unwrap();
    assert_ne!(
        node_of(&client, "korc-system", &standby).await,
        leader_node,
        "the chart spreads the replicas over nodes"
    );

    namespace(&client, "lead").await;
    let api = Api::<MySQLCluster>::namespaced(client.clone(), "lead");
    api.create(&PostParams::default(), &sample("db", 3))
        .await
        .unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;

    cp.inject(&Fault::LoseNode(leader_node.clone()))
        .await
        .unwrap();
    let lost = Instant::now();
    wait_for("the standby holds the Lease", 30, || async {
        (leader_pod(&client).await == standby).then_some(())
    })
    .await;
    let takeover = lost.elapsed();
    println!("leader's node lost → standby holds the Lease after {takeover:?}");
    assert!(
        takeover <= LEASE_DURATION + Duration::from_secs(1),
        "took {takeover:?}"
    );

    // The new leader acts: a primary crash is recovered, recorded under its name.
    let primary = status(&api, "db").await["primary"]
        .as_str()
        .unwrap()
        .to_string();
    let primary_alive = node_of(&client, "lead", &primary).await != leader_node;
    if primary_alive {
        cp.inject(&Fault::Kill(ContainerRef::pod("lead", &primary)))
            .await
            .unwrap();
    }
    let record = wait_status(&api, "db", "a recovery by the new leader", 30, |s| {
        s["recoveries"]
            .as_array()?
            .iter()
            .find(|r| r["leader"] == standby.as_str() && r["outcome"] == "recovered")
            .cloned()
    })
    .await;
    assert_eq!(record["failed"], primary.as_str(), "{record:#}");
    cp.inject(&Fault::RestoreNode(leader_node)).await.unwrap();
    wait_settled(&api, "db", "3/3", "NoProblem", 120).await;
}
