//! The operator: reconciles `MySQLCluster` resources.
//!
//! [`run`] starts the controller and the HTTP endpoints; [`controller`] holds the
//! reconciliation; [`bootstrap`] and [`status`] are its pure decisions.

pub mod bootstrap;
pub mod clone;
pub mod controller;
pub mod decide;
pub mod election;
pub mod events;
pub mod failover;
pub mod hooks;
pub mod metrics;
pub mod rollout;
pub mod rotation;
pub mod server;
pub mod status;
pub mod tls;

use crate::api::MySQLCluster;
use crate::provisioning::INSTANCE_LABEL;
use crate::{Error, Result};
use controller::{Context, Settings, error_policy, reconcile};
use election::{ElectionArgs, Leadership};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where korc watches: every namespace, or one.
enum Scope {
    All,
    Namespace(String),
}

impl Scope {
    /// One scope per watched namespace; all namespaces when none is named.
    fn of(namespaces: &[String]) -> Vec<Scope> {
        let named: Vec<Scope> = namespaces
            .iter()
            .filter(|ns| !ns.is_empty())
            .cloned()
            .map(Scope::Namespace)
            .collect();
        if named.is_empty() {
            vec![Scope::All]
        } else {
            named
        }
    }

    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match self {
            Scope::All => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// Fires each time this replica becomes leader: every cluster is then reconciled at
/// once.
fn became_leader(leadership: &Leadership) -> impl futures::Stream<Item = ()> + use<> {
    futures::stream::unfold(leadership.subscribe(), |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
}

/// How often state kept for deleted clusters is dropped.
const FORGET_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the operator until SIGTERM or Ctrl-C: the election, the controller (which acts
/// only while this replica leads), and `/metrics`, `/healthz` and `/readyz` on `listen`
/// (served by every replica).
pub async fn run(settings: Settings, election: &ElectionArgs, listen: SocketAddr) -> Result<()> {
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("korc-{}", uuid::Uuid::new_v4().simple()));
    let lease = election
        .settings(identity.clone())
        .map_err(Error::Invalid)?;
    let client = Client::try_default().await?;
    let scopes = Scope::of(&settings.watch_namespaces);
    if let Err(e) = scopes[0]
        .api::<MySQLCluster>(&client)
        .list(&ListParams::default().limit(1))
        .await
    {
        return Err(Error::Invalid(format!(
            "cannot list MySQLClusters ({e}); install the CRD: kubectl apply --server-side -f crds/"
        )));
    }
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let shared = Arc::new(server::Shared {
        registry,
        ready: AtomicBool::new(false),
    });
    let reporter = Reporter {
        controller: "korc".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);

    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=korc");
    // The reconcilers read pods from these stores (one per scope); the controllers
    // watch them too, to react to a pod event at once.
    let mut pods = Vec::new();
    for scope in &scopes {
        let (store, writer) = reflector::store();
        let pod_store =
            reflector::reflector(writer, watcher(scope.api::<Pod>(&client), managed.clone()))
                .default_backoff()
                .touched_objects()
                .for_each(|_| futures::future::ready(()));
        tokio::spawn(pod_store);
        pods.push(store);
    }
    let leadership = if election.leader_election {
        Leadership::default()
    } else {
        Leadership::unconditional()
    };
    let (stop_electing, election_stopped) = tokio::sync::oneshot::channel::<()>();
    let elector = election.leader_election.then(|| {
        tokio::spawn(election::run(
            client.clone(),
            lease,
            leadership.clone(),
            async {
                let _ = election_stopped.await;
            },
        ))
    });
    let leader_gauge = metrics.leader.clone();
    let mut changes = leadership.subscribe();
    tokio::spawn(async move {
        loop {
            leader_gauge.set(i64::from(*changes.borrow_and_update()));
            if changes.changed().await.is_err() {
                break;
            }
        }
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        recorder,
        pods,
        metrics,
        settings,
        leadership,
        identity,
    ));
    let controllers: Vec<_> = scopes
        .iter()
        .map(|scope| {
            Controller::new(
                scope.api::<MySQLCluster>(&client),
                watcher::Config::default(),
            )
        })
        .collect();
    // What korc keeps per cluster (memory, metric series) goes with the cluster.
    let known: Vec<_> = controllers.iter().map(Controller::store).collect();
    // Ready once the pod caches hold what the API server has: a replica that took over
    // before that would act on a partial view. (The controllers' own caches of
    // MySQLClusters need no check: kube holds every reconcile until they are synced.)
    let (synced_pods, ready) = (ctx.pods.clone(), shared.clone());
    tokio::spawn(async move {
        let pods = futures::future::join_all(synced_pods.iter().map(|s| s.wait_until_ready()));
        if pods.await.iter().all(Result::is_ok) {
            ready.ready.store(true, Ordering::SeqCst);
            tracing::info!("pod caches synced: ready");
        }
    });
    let sweeper = ctx.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(FORGET_PERIOD).await;
            // A standby exports no per-cluster series: a deposed leader's would be stale.
            let present = if sweeper.leadership.is_leader() {
                known
                    .iter()
                    .flat_map(|k| k.state())
                    .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
                    .collect()
            } else {
                Default::default()
            };
            sweeper.forget_all_but(&present);
        }
    });
    let runs = controllers
        .into_iter()
        .zip(&scopes)
        .map(|(controller, scope)| {
            controller
                .owns(scope.api::<StatefulSet>(&client), managed.clone())
                // A pod event (container died, pod deleted) probes its cluster at once.
                .watches(scope.api::<Pod>(&client), managed.clone(), |pod: Pod| {
                    let ns = pod.namespace().unwrap_or_default();
                    pod.labels()
                        .get(INSTANCE_LABEL)
                        .map(|c| ObjectRef::<MySQLCluster>::new(c).within(&ns))
                })
                .reconcile_all_on(became_leader(&ctx.leadership))
                .shutdown_on_signal()
                .run(reconcile, error_policy, ctx.clone())
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "reconcile error");
                    }
                })
        });
    let controller = futures::future::join_all(runs);
    tracing::info!(%listen, "korc operator running");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(server::serve(listen, shared, async {
        let _ = stopped.await;
    }));
    controller.await;
    // Stop acting before handing the Lease over, so a standby takes over at once.
    let _ = stop_electing.send(());
    if let Some(e) = elector {
        let _ = e.await;
    }
    let _ = stop.send(());
    http.await
        .map_err(|e| Error::Invalid(format!("HTTP server task: {e}")))?
        .map_err(|source| Error::File {
            path: listen.to_string(),
            source,
        })
}
