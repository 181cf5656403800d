//! The `MySQLCluster` controller: validate, build, apply, observe, repair, report.
//!
//! Each reconciliation of a cluster applies its objects (when they changed), probes
//! every instance, analyses the topology, attaches new instances and fences strays,
//! keeps the pods' role labels, and writes the status when something significant
//! changed. It then comes back after the cluster's probe interval, or at once when one
//! of its pods changes (a container died, a pod was deleted).

use super::bootstrap::{self, Plan};
use super::clone;
use super::decide::{
    ACKNOWLEDGE_ANNOTATION, Blocker, Decision, Situation, decide, recoverable_failure,
};
use super::election::Leadership;
use super::events::{self, Note};
use super::failover;
use super::hooks;
use super::metrics::{BlockLabels, RecoveryLabels};
use super::metrics::{ClusterLabels, CodeLabels, Metrics, OutcomeLabels};
use super::rotation::{self, PasswordState, Target};
use super::status::{self, Member, Observation, VOLATILE_REFRESH};
use super::tls::{Certificates, ClusterTls};
use crate::api::{AcknowledgementStatus, MySQLCluster, MySQLClusterStatus, RecoveryStatus};
use crate::provisioning::{
    self, Desired, INSTANCE_LABEL, MYSQL_PORT, Passwords, ROLE_LABEL, SourceAddress,
    credentials_secret, headless_service,
};
use crate::topology::analysis::{Analysis, analyze};
use crate::topology::dialect::{ReplicationCredentials, SourceCa};
use crate::topology::instance::{Instance, InstanceKey};
use crate::topology::policy::{Downtime, Policy};
use crate::topology::probe::{now_ms, probe_cluster};
use crate::topology::recovery::RecoveryContext;
use crate::topology::session::{ConnectionPools, Connector};
use crate::{Error, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, EvictParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The field manager of every object korc applies.
pub const FIELD_MANAGER: &str = "korc";
/// The label the StatefulSet controller puts on each pod: the revision it was made from.
const REVISION_LABEL: &str = "controller-revision-hash";
/// How soon a changed password in the credentials Secret is seen.
const PASSWORDS_REREAD: Duration = Duration::from_secs(5);
/// The condition saying korc cannot read the passwords it needs.
const CREDENTIALS_CONDITION: &str = "CredentialsAvailable";
/// Bound on each statement of a recovery (the probe's is 1 s).
const RECOVERY_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Objects are re-applied at least this often, to undo drift.
const REAPPLY: Duration = Duration::from_secs(60);

/// Operator-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How replicas name their source.
    pub source_address: SourceAddress,
    /// The namespaces korc watches; all when empty.
    pub watch_namespaces: Vec<String>,
    /// korc's own image (the agent of MariaDB pods comes from it).
    pub image: String,
}

/// What korc remembers of a cluster between reconciliations.
#[derive(Debug, Default)]
struct Memory {
    instances: Vec<Instance>,
    /// The passwords, the Secret they came from, and when they were read.
    passwords: Option<(PasswordState, String, Instant)>,
    applied: Option<(u64, Instant)>,
    written: Option<(MySQLClusterStatus, Instant)>,
    code: Option<String>,
    /// The reason the current failure is held, if it is.
    blocked: Option<&'static str>,
    /// The pods with a replication lag series.
    lagging: Vec<String>,
}

/// Shared state of the reconcilers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The pods korc manages, kept by one reflector per watched namespace (one for
    /// all namespaces when korc watches them all).
    pub pods: Vec<Store<Pod>>,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings.
    pub settings: Settings,
    /// Whether this replica leads: only the leader acts on clusters.
    pub leadership: Leadership,
    /// This operator replica's identity (its pod name), recorded in recoveries.
    pub identity: String,
    memory: Mutex<HashMap<String, Memory>>,
    zones: Mutex<HashMap<String, Option<String>>>,
    /// Connections to the instances, kept between reconciliations.
    pools: ConnectionPools,
    /// The clusters' certificates.
    certificates: Certificates,
    /// The copies korc runs into instances.
    copies: clone::Copies,
}

impl Context {
    /// A context for the controller.
    pub fn new(
        client: Client,
        recorder: Recorder,
        pods: Vec<Store<Pod>>,
        metrics: Metrics,
        settings: Settings,
        leadership: Leadership,
        identity: String,
    ) -> Self {
        Self {
            client,
            recorder,
            pods,
            metrics,
            settings,
            leadership,
            identity,
            memory: Mutex::default(),
            zones: Mutex::default(),
            pools: ConnectionPools::default(),
            certificates: Certificates::default(),
            copies: clone::Copies::default(),
        }
    }

    /// The pods korc manages in namespace `ns`, from the caches.
    fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pods
            .iter()
            .flat_map(Store::state)
            .filter(|p| p.namespace().as_deref() == Some(ns))
            .collect()
    }

    /// Drops what korc keeps for clusters that no longer exist (`namespace/name` keys
    /// not in `present`): their memory and their metric series.
    pub fn forget_all_but(&self, present: &std::collections::HashSet<String>) {
        self.certificates.forget_all_but(present);
        self.copies.forget_all_but(present);
        let mut all = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = all
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for id in gone {
            let memory = all.remove(&id).unwrap_or_default();
            let (namespace, cluster) = id.split_once('/').unwrap_or(("", id.as_str()));
            self.metrics.forget(
                &ClusterLabels {
                    namespace: namespace.into(),
                    cluster: cluster.into(),
                },
                memory.code.as_deref(),
                memory.blocked,
                &memory.lagging,
            );
        }
    }

    fn memory<T>(&self, key: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut all = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(key.to_string()).or_default())
    }
}

fn cluster_labels(cluster: &MySQLCluster) -> ClusterLabels {
    ClusterLabels {
        namespace: cluster.namespace().unwrap_or_default(),
        cluster: cluster.name_any(),
    }
}

/// Reconciles one cluster.
pub async fn reconcile(cluster: Arc<MySQLCluster>, ctx: Arc<Context>) -> Result<Action> {
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::Invalid("MySQLCluster must be namespaced".into()))?;
    let id = format!("{ns}/{}", cluster.name_any());
    let interval = Duration::from_millis(cluster.spec.probe_interval_ms.clamp(100, 60_000) as u64);
    // Standbys keep their caches warm and wait; becoming leader reconciles everything.
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    if let Err(message) = provisioning::validate(&cluster.spec) {
        publish(&ctx, &cluster, events::invalid_spec(&message)).await;
        return Ok(Action::await_change());
    }
    let passwords = passwords(&ctx, &cluster, &ns, &id).await?;
    let tls = ctx
        .certificates
        .ensure(&ctx.client, &cluster, &id, !cluster.spec.paused)
        .await?;
    if !cluster.spec.paused {
        let desired = provisioning::build(
            &cluster,
            &passwords.desired,
            passwords.generated,
            ctx.settings.source_address,
            &ctx.settings.image,
        );
        let in_force = provisioning::passwords_in_force(&cluster, &passwords.in_force);
        apply_if_changed(&ctx, &cluster, &ns, &id, &desired, &in_force).await?;
    }

    let members = members(&ctx, &cluster, &ns).await;
    let connector = connector(&ctx, &members, &passwords, tls.as_ref());
    let keys: Vec<InstanceKey> = members.iter().map(|m| m.key.clone()).collect();
    let previous = ctx.memory(&id, |m| m.instances.clone());
    let mut instances = probe_cluster(&connector, &keys, &previous).await;
    if tls.is_some() && !cluster.spec.paused {
        ctx.certificates.reload(&id, &connector, &instances).await;
    }
    count_probes(&ctx, &instances);
    let policy = policy(&cluster, &members);
    let mut analysis = analyze(&instances, &policy, now_ms());
    let cluster = acknowledge(&ctx, &cluster).await?;
    let mut cluster = if cluster.spec.paused {
        cluster
    } else {
        hooks::jobs::follow(&ctx, cluster).await?
    };
    let status = cluster.status.clone().unwrap_or_default();
    let revision = update_revision(&ctx, &cluster, &ns).await;
    let situation = Situation {
        update_revision: revision.as_deref(),
        spec: &cluster.spec,
        status: &status,
        members: &members,
        instances: &instances,
        analysis: &analysis,
        now: Timestamp::now(),
    };
    let decision = decide(&situation);
    let detected = recoverable_failure(&situation).cloned();
    if let Some(failure) = detected.filter(|_| !cluster.spec.paused) {
        cluster = hooks::jobs::detect(&ctx, cluster, &failure, &members).await?;
    }
    let replication = ReplicationCredentials {
        user: provisioning::REPLICATION_USER.into(),
        password: passwords.desired.replication.clone(),
        source_ca: tls.as_ref().map(|_| SourceCa::ServerCa),
    };
    let semi_sync = cluster.spec.semi_sync.as_ref().is_some_and(|x| x.enabled);
    let (plan, blocker) = match decision {
        Decision::Recover(failure) => {
            let seen = seen_now(
                &cluster, &members, &instances, &analysis, &policy, semi_sync,
            );
            let engine = engine(&connector, &policy, &replication);
            let done = failover::run(&ctx, &seen, &members, &instances, &failure, &engine).await?;
            after_recovery(&ctx, &done).await;
            // The topology changed: the next round converges on what it is now.
            return Ok(Action::requeue(Duration::ZERO));
        }
        Decision::SwitchOver { request_id, to } => {
            let seen = seen_now(
                &cluster, &members, &instances, &analysis, &policy, semi_sync,
            );
            let engine = engine(&connector, &policy, &replication);
            let done = failover::switch_over(
                &ctx,
                &seen,
                &members,
                &instances,
                &request_id,
                to.as_deref(),
                &engine,
            )
            .await?;
            after_recovery(&ctx, &done).await;
            return Ok(Action::requeue(Duration::ZERO));
        }
        Decision::Resume(registered) => {
            failover::resume(
                &ctx,
                &cluster,
                &members,
                &instances,
                &analysis,
                &registered,
                &engine(&connector, &policy, &replication),
            )
            .await?;
            return Ok(Action::requeue(Duration::ZERO));
        }
        Decision::Converge(plan) => (plan, None),
        Decision::Hold(blocker, plan) => (plan, Some(blocker)),
        Decision::Restart(pod, plan) => {
            restart(&ctx, &cluster, &ns, &pod, revision.as_deref()).await;
            (plan, None)
        }
    };
    let copies = if cluster.spec.paused {
        clone::Followed::default()
    } else {
        copy_data(
            &ctx,
            &cluster,
            &clone::Round {
                id: &id,
                members: &members,
                instances: &instances,
                primary: plan.primary.as_deref(),
                policy: &policy,
                connector: &connector,
                replication: &replication,
                max_mib_per_second: cluster
                    .spec
                    .clone
                    .max_mib_per_second
                    .clamp(0, u32::MAX as i64) as u32,
                rebuild_errant: cluster.spec.recovery.rebuild_errant_instances,
            },
        )
        .await
    };
    let mut plan = plan;
    clone::hold_out(
        &mut plan,
        &members,
        &instances,
        &copies.copies,
        policy.reasonable_replication_lag_seconds,
    );
    let plan = if cluster.spec.paused || plan.actions.is_empty() {
        plan
    } else {
        let results = bootstrap::execute(&connector, &replication, &plan.actions).await;
        for (action, result) in plan.actions.iter().zip(&results) {
            ctx.metrics
                .actions
                .get_or_create(&OutcomeLabels {
                    kind: "topology".into(),
                    result: if result.is_ok() { "ok" } else { "failed" }.into(),
                })
                .inc();
            let note = events::topology_action(action, &members, result);
            publish(&ctx, &cluster, note).await;
        }
        instances = probe_cluster(&connector, &keys, &instances).await;
        analysis = analyze(&instances, &policy, now_ms());
        let mut replanned =
            bootstrap::plan(&members, &instances, plan.primary.as_deref(), semi_sync);
        clone::hold_out(
            &mut replanned,
            &members,
            &instances,
            &copies.copies,
            policy.reasonable_replication_lag_seconds,
        );
        replanned
    };
    if !cluster.spec.paused {
        label_roles(&ctx, &ns, &members, &plan).await?;
        if blocker.is_none()
            && let Some((primary, replicas)) = rotation_targets(&members, &instances, &plan)
            && rotation::run(
                &ctx,
                &cluster,
                &connector,
                &primary,
                &replicas,
                &passwords,
                &replication,
            )
            .await?
        {
            // Read again: the Secret of passwords in force changed.
            ctx.memory(&id, |m| m.passwords = None);
        }
    }
    ctx.memory(&id, |m| m.instances = instances.clone());
    report(
        &ctx,
        &cluster,
        &id,
        &members,
        &instances,
        &analysis,
        &policy,
        &plan,
        blocker.as_ref(),
        &copies,
    )
    .await?;
    Ok(Action::requeue(interval))
}

/// Follows the copies into this cluster's instances (see `clone`): tells what
/// happened in Events, removes served `korc.dev/rebuild` annotations, deletes pods
/// whose copy is staged, and returns the
/// copies to show and to keep out of the topology.
async fn copy_data(
    ctx: &Context,
    cluster: &MySQLCluster,
    round: &clone::Round<'_>,
) -> clone::Followed {
    let mut followed = ctx.copies.follow(round).await;
    for note in std::mem::take(&mut followed.notes) {
        publish(ctx, cluster, note).await;
    }
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    for pod in &followed.served {
        let patch =
            serde_json::json!({"metadata": {"annotations": {clone::REBUILD_ANNOTATION: null}}});
        if let Err(e) = pods
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(pod, error = %e, "cannot remove the served rebuild annotation");
        }
    }
    // A staged MariaDB copy is swapped in before the server's next start; the
    // StatefulSet makes the pod again (a failed deletion ends the copy's restart bound,
    // and the copy is tried again).
    for pod in &followed.restart {
        if let Err(e) = pods.delete(pod, &Default::default()).await {
            tracing::warn!(pod, error = %e, "cannot restart a pod on its copy");
        }
    }
    followed
}

/// Records an acknowledgement (`korc.dev/acknowledge`) in the status, marks every
/// recovery so far acknowledged (lifting the anti-flapping block), and removes the
/// annotation. Returns the cluster as last written.
async fn acknowledge(ctx: &Context, cluster: &MySQLCluster) -> Result<MySQLCluster> {
    let Some(value) = cluster.annotations().get(ACKNOWLEDGE_ANNOTATION).cloned() else {
        return Ok(cluster.clone());
    };
    let mut status = cluster.status.clone().unwrap_or_default();
    for r in &mut status.recoveries {
        r.acknowledged = Some(true);
    }
    status.recovery_blocked_until = None;
    status.last_acknowledgement = Some(AcknowledgementStatus {
        value: value.clone(),
        at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
    });
    let written = write_status(ctx, cluster, status).await?;
    let api = Api::<MySQLCluster>::namespaced(
        ctx.client.clone(),
        &cluster.namespace().unwrap_or_default(),
    );
    let patch = serde_json::json!({"metadata": {"annotations": {ACKNOWLEDGE_ANNOTATION: null}}});
    api.patch(
        &cluster.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    publish(ctx, cluster, events::acknowledged(&value)).await;
    Ok(written)
}

/// Writes the whole status with the cluster's `resourceVersion` as precondition: a
/// stale view (another leader wrote since) fails with a conflict instead of
/// overwriting what it did. Returns the cluster as written.
pub async fn write_status(
    ctx: &Context,
    cluster: &MySQLCluster,
    status: MySQLClusterStatus,
) -> Result<MySQLCluster> {
    let api = Api::<MySQLCluster>::namespaced(
        ctx.client.clone(),
        &cluster.namespace().unwrap_or_default(),
    );
    let mut object = cluster.clone();
    object.status = Some(status);
    object.metadata.managed_fields = None;
    let written = api
        .replace_status(
            &cluster.name_any(),
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            },
            &object,
        )
        .await?;
    ctx.metrics
        .status_writes
        .get_or_create(&cluster_labels(cluster))
        .inc();
    Ok(written)
}

/// What the engine needs to recover this cluster.
fn engine(
    connector: &Connector,
    policy: &Policy,
    replication: &ReplicationCredentials,
) -> RecoveryContext {
    let mut connector = connector.clone();
    // Stopping a replica whose source hangs waits for its receiver to give up, up to
    // the net timeout: the engine's statements get more time than the probe's.
    connector.query_timeout = RECOVERY_QUERY_TIMEOUT;
    RecoveryContext {
        connector,
        policy: policy.clone(),
        replication: replication.clone(),
    }
}

/// The cluster with the status built from what korc sees now: a recovery's
/// registration carries it (the failure, not the last report's healthy picture), so
/// the status tells the truth while the recovery runs.
fn seen_now(
    cluster: &MySQLCluster,
    members: &[Member],
    instances: &[Instance],
    analysis: &[Analysis],
    policy: &Policy,
    semi_sync: bool,
) -> MySQLCluster {
    let recorded = cluster.status.as_ref().and_then(|s| s.primary.as_deref());
    let seen = bootstrap::plan(members, instances, recorded, semi_sync);
    let mut observed = cluster.clone();
    observed.status = Some(status::build(
        cluster,
        &Observation {
            members,
            instances,
            analysis,
            primary: seen.primary.as_deref(),
            excluded: &seen.excluded,
            blocker: None,
            primary_held: seen.primary_held.as_deref(),
            policy,
            now: Timestamp::now(),
        },
    ));
    observed
}

/// Events and metrics for the recovery or switchover that just ended.
async fn after_recovery(ctx: &Context, cluster: &MySQLCluster) {
    if let Some(r) = cluster.status.as_ref().and_then(|s| s.recoveries.last()) {
        record_recovery(ctx, cluster, r).await;
    }
}

/// Events and metrics for a finished recovery.
async fn record_recovery(ctx: &Context, cluster: &MySQLCluster, r: &RecoveryStatus) {
    ctx.metrics
        .recoveries
        .get_or_create(&RecoveryLabels {
            kind: r.kind.clone(),
            outcome: r.outcome.clone(),
        })
        .inc();
    if let Some(ms) = r.writable_after_ms {
        ctx.metrics.failover_seconds.observe(ms as f64 / 1000.0);
    }
    publish(ctx, cluster, events::recovery_ended(r)).await;
}

/// Requeues a failed reconciliation after a pause.
pub fn error_policy(cluster: Arc<MySQLCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&cluster_labels(&cluster))
        .inc();
    Action::requeue(Duration::from_secs(5))
}

/// Publishes `note` as an Event on the cluster (a failure is logged, never fatal).
pub(crate) async fn publish(ctx: &Context, cluster: &MySQLCluster, note: Note) {
    let event = Event {
        type_: note.type_,
        reason: note.reason.into(),
        note: Some(note.text),
        action: note.action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

/// Reads the passwords the accounts should have and those they have; generates them
/// (and so owns the Secret) for a new cluster whose user gave none. They are read again
/// every [`PASSWORDS_REREAD`], not on every probe.
async fn passwords(
    ctx: &Context,
    cluster: &MySQLCluster,
    ns: &str,
    id: &str,
) -> Result<PasswordState> {
    let name = credentials_secret(cluster);
    let cached = ctx.memory(id, |m| {
        m.passwords
            .as_ref()
            .filter(|(_, secret, at)| *secret == name && at.elapsed() < PASSWORDS_REREAD)
            .map(|(p, _, _)| p.clone())
    });
    if let Some(cached) = cached {
        return Ok(cached);
    }
    let read = match read_passwords(ctx, cluster, ns, &name).await {
        Err(Error::Invalid(message)) => {
            report_credentials_problem(ctx, cluster, &message).await;
            return Err(Error::Invalid(message));
        }
        other => other?,
    };
    ctx.memory(id, |m| {
        m.passwords = Some((read.clone(), name, Instant::now()))
    });
    Ok(read)
}

async fn read_passwords(
    ctx: &Context,
    cluster: &MySQLCluster,
    ns: &str,
    name: &str,
) -> Result<PasswordState> {
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), ns);
    let read = |secret: Option<Secret>, name: String| {
        secret.and_then(|s| s.data).map(|data| {
            let data: BTreeMap<String, Vec<u8>> = data.into_iter().map(|(k, v)| (k, v.0)).collect();
            Passwords::from_secret_data(&data)
                .map_err(|e| Error::Invalid(format!("Secret {name}: {e}")))
        })
    };
    let generated = cluster.spec.credentials_secret.is_none();
    let in_force_name = provisioning::in_force_secret(cluster);
    let desired = read(secrets.get_opt(name).await?, name.to_string()).transpose()?;
    let in_force = read(
        secrets.get_opt(&in_force_name).await?,
        in_force_name.clone(),
    )
    .transpose()?;
    let desired = match (desired, &in_force) {
        (Some(d), _) => d,
        (None, _) if !generated => {
            return Err(Error::Invalid(format!(
                "the credentials Secret {name} does not exist"
            )));
        }
        (None, Some(_)) => {
            return Err(Error::Invalid(format!(
                "the credentials Secret {name} is gone while the instances have korc's accounts: \
                 korc does not make new passwords for them; recreate it from Secret {in_force_name} \
                 (the passwords in force)"
            )));
        }
        (None, None) => {
            let claim = provisioning::data_claim(cluster, 0);
            let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns);
            if claims.get_opt(&claim).await?.is_some() {
                return Err(Error::Invalid(format!(
                    "the credentials Secret {name} does not exist but volume {claim} holds data \
                     initialised with its passwords: recreate {name} with them (keys root-password, \
                     operator-password, replication-password, monitor-password) or delete the \
                     cluster's PersistentVolumeClaims"
                )));
            }
            Passwords::generate()
        }
    };
    // A cluster without a record has the passwords it was created with.
    let in_force = in_force.unwrap_or_else(|| desired.clone());
    Ok(PasswordState {
        desired,
        in_force,
        generated,
    })
}

/// Puts a credentials problem in the status (condition `CredentialsAvailable`): korc
/// cannot reach the instances until it is fixed. A failed write is logged.
async fn report_credentials_problem(ctx: &Context, cluster: &MySQLCluster, message: &str) {
    let mut status = cluster.status.clone().unwrap_or_default();
    let reported = status
        .conditions
        .iter()
        .any(|c| c.type_ == CREDENTIALS_CONDITION && c.status == "False" && c.message == message);
    if reported {
        return;
    }
    status
        .conditions
        .retain(|c| c.type_ != CREDENTIALS_CONDITION);
    status.conditions.push(Condition {
        type_: CREDENTIALS_CONDITION.into(),
        status: "False".into(),
        reason: "SecretMissing".into(),
        message: message.into(),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ),
        observed_generation: cluster.metadata.generation,
    });
    if let Err(e) = write_status(ctx, cluster, status).await {
        tracing::warn!(error = %e, "cannot report the credentials problem");
    }
}

/// Server-side applies `object` as korc.
pub(crate) async fn apply<K>(ctx: &Context, ns: &str, object: &K) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(ctx.client.clone(), ns);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

async fn apply_if_changed(
    ctx: &Context,
    cluster: &MySQLCluster,
    ns: &str,
    id: &str,
    d: &Desired,
    in_force: &Secret,
) -> Result<()> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let text = serde_json::to_string(&(
        in_force,
        &d.stateful_set,
        &d.services,
        &d.config_map,
        &d.credentials,
        &d.init_secret,
        &d.pdb,
        &d.network_policy,
    ))
    .map_err(|source| Error::Json {
        context: "desired objects".into(),
        source,
    })?;
    text.hash(&mut hasher);
    let hash = hasher.finish();
    let fresh = ctx.memory(id, |m| {
        m.applied
            .is_some_and(|(h, at)| h == hash && at.elapsed() < REAPPLY)
    });
    if fresh {
        return Ok(());
    }
    if let Some(secret) = &d.credentials {
        apply(ctx, ns, secret).await?;
    }
    apply(ctx, ns, in_force).await?;
    apply(ctx, ns, &d.init_secret).await?;
    apply(ctx, ns, &d.config_map).await?;
    for s in &d.services {
        apply(ctx, ns, s).await?;
    }
    if let Some(pdb) = &d.pdb {
        apply(ctx, ns, pdb).await?;
    } else {
        let api = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
            ctx.client.clone(),
            ns,
        );
        if api.get_opt(&headless_service(cluster)).await?.is_some() {
            api.delete(&headless_service(cluster), &Default::default())
                .await?;
        }
    }
    let policies = Api::<NetworkPolicy>::namespaced(ctx.client.clone(), ns);
    match &d.network_policy {
        Some(policy) => apply(ctx, ns, policy).await?,
        None => {
            if policies
                .get_opt(&headless_service(cluster))
                .await?
                .is_some()
            {
                policies
                    .delete(&headless_service(cluster), &Default::default())
                    .await?;
            }
        }
    }
    apply(ctx, ns, &d.stateful_set).await?;
    ctx.memory(id, |m| m.applied = Some((hash, Instant::now())));
    Ok(())
}

/// The cluster's pods, by ordinal, with the keys replicas use for them.
async fn members(ctx: &Context, cluster: &MySQLCluster, ns: &str) -> Vec<Member> {
    let name = headless_service(cluster);
    let mut pods: Vec<(i32, Arc<Pod>)> = ctx
        .pods_in(ns)
        .into_iter()
        .filter(|p| p.labels().get(INSTANCE_LABEL) == Some(&name))
        .filter_map(|p| {
            let ordinal = p
                .name_any()
                .strip_prefix(&format!("{name}-"))?
                .parse()
                .ok()?;
            Some((ordinal, p))
        })
        .filter(|(o, _)| *o < cluster.spec.replicas)
        .collect();
    pods.sort_by_key(|(o, _)| *o);
    let mut out = Vec::new();
    for (ordinal, pod) in pods {
        let pod_name = pod.name_any();
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let host = match ctx.settings.source_address {
            SourceAddress::PodDns => format!("{pod_name}.{name}.{ns}.svc"),
            SourceAddress::PodIp => ip.clone().unwrap_or_else(|| pod_name.clone()),
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let zone = match node {
            Some(n) => zone_of(ctx, &n).await,
            None => None,
        };
        let address = ip.map(|ip| InstanceKey::new(ip, MYSQL_PORT as u16));
        out.push(Member {
            pod: pod_name,
            ordinal,
            key: InstanceKey::new(host, MYSQL_PORT as u16),
            address,
            zone,
            revision: pod.labels().get(REVISION_LABEL).cloned(),
            ready: pod.metadata.deletion_timestamp.is_none() && pod_ready(&pod),
            rebuild: pod.annotations().contains_key(clone::REBUILD_ANNOTATION),
        });
    }
    out
}

/// The pod's `Ready` condition is true.
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The StatefulSet's update revision: the pod template its pods should run.
async fn update_revision(ctx: &Context, cluster: &MySQLCluster, ns: &str) -> Option<String> {
    Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
        .get_opt(&headless_service(cluster))
        .await
        .ok()
        .flatten()?
        .status?
        .update_revision
}

/// Restarts a pod of a rolling restart through the Eviction API, so the
/// PodDisruptionBudget is honoured (a refused eviction is tried again next round).
async fn restart(
    ctx: &Context,
    cluster: &MySQLCluster,
    ns: &str,
    pod: &str,
    revision: Option<&str>,
) {
    let api = Api::<Pod>::namespaced(ctx.client.clone(), ns);
    match api.evict(pod, &EvictParams::default()).await {
        Ok(_) => publish(ctx, cluster, events::rolling_restart(pod, revision)).await,
        Err(e) => tracing::info!(%pod, error = %e, "eviction refused; trying again later"),
    }
}

async fn zone_of(ctx: &Context, node: &str) -> Option<String> {
    if let Some(z) = ctx
        .zones
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(node)
    {
        return z.clone();
    }
    let n = Api::<Node>::all(ctx.client.clone())
        .get_opt(node)
        .await
        .ok()
        .flatten()?;
    let zone = n.labels().get("topology.kubernetes.io/zone").cloned();
    ctx.zones
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(node.to_string(), zone.clone());
    zone
}

/// The primary and replicas a password rotation goes through: a writable primary
/// and the replicas replicating from it.
fn rotation_targets(
    members: &[Member],
    instances: &[Instance],
    plan: &Plan,
) -> Option<(Target, Vec<Target>)> {
    let target = |pod: &str| {
        members.iter().find(|m| m.pod == pod).map(|m| Target {
            pod: m.pod.clone(),
            key: m.key.clone(),
        })
    };
    let primary = target(plan.primary.as_deref()?)?;
    let writable = instances
        .iter()
        .any(|i| i.key == primary.key && i.reachable && i.read_only == Some(false));
    let replicas = plan.replicas.iter().filter_map(|p| target(p)).collect();
    writable.then_some((primary, replicas))
}

/// Connects as korc's account, dialling each pod's IP whatever name replicas use.
fn connector(
    ctx: &Context,
    members: &[Member],
    passwords: &PasswordState,
    tls: Option<&ClusterTls>,
) -> Connector {
    let mut c = rotation::operator_connector(passwords);
    c.share_pools(&ctx.pools);
    if let Some(tls) = tls {
        c.tls = tls.connector_tls();
    }
    // A hung instance must not hold a probe round (every second) for long.
    c.query_timeout = Duration::from_secs(1);
    for m in members {
        if let Some(address) = m.address.as_ref().filter(|a| **a != m.key) {
            c.map_address(m.key.clone(), address.clone());
        }
    }
    c
}

/// The engine's policy from the spec: promotion rules, downtimes, zones.
fn policy(cluster: &MySQLCluster, members: &[Member]) -> Policy {
    let r = &cluster.spec.recovery;
    let mut p = Policy {
        reasonable_replication_lag_seconds: r.reasonable_replication_lag_seconds.max(0) as u64,
        prevent_cross_data_center_master_failover: r.prevent_cross_data_center_failover,
        prevent_cross_region_master_failover: r.prevent_cross_region_failover,
        fail_master_promotion_on_lag_seconds: r
            .fail_promotion_on_lag_seconds
            .map(|s| s.max(0) as u64),
        apply_promotion: r.apply_promotion,
        detach_lost_replicas: r.detach_lost_replicas,
        relay_log_apply_timeout_ms: r.relay_log_apply_timeout_seconds.max(1) as u64 * 1000,
        sql_thread_not_up_to_date: r.sql_thread_not_up_to_date,
        ..Policy::default()
    };
    for m in members {
        let ip = p.instance_mut(&m.key);
        ip.data_center = m.zone.clone();
        if let Some(spec) = cluster.spec.instances.get(&m.pod) {
            ip.promotion_rule = spec.promotion_rule;
            ip.downtime = spec.downtime_until.as_ref().map(|t| Downtime {
                until_ms: t.0.as_millisecond().max(0) as u64,
                reason: "spec.instances downtimeUntil".into(),
            });
        }
    }
    p
}

fn count_probes(ctx: &Context, instances: &[Instance]) {
    for i in instances {
        let result = if i.reachable { "ok" } else { "failed" };
        ctx.metrics
            .probes
            .get_or_create(&OutcomeLabels {
                kind: "probe".into(),
                result: result.into(),
            })
            .inc();
        if let Some(us) = i.probe_micros {
            ctx.metrics.probe_seconds.observe(us as f64 / 1e6);
        }
    }
}

/// Keeps `korc.dev/role` on each pod: `primary`, `replica`, or absent (held out).
async fn label_roles(ctx: &Context, ns: &str, members: &[Member], plan: &Plan) -> Result<()> {
    let api = Api::<Pod>::namespaced(ctx.client.clone(), ns);
    let labels: HashMap<String, String> = ctx
        .pods_in(ns)
        .into_iter()
        .filter_map(|p| Some((p.name_any(), p.labels().get(ROLE_LABEL)?.clone())))
        .collect();
    for m in members {
        let want = if plan.primary.as_deref() == Some(m.pod.as_str()) {
            Some("primary")
        } else if plan.replicas.contains(&m.pod) {
            Some("replica")
        } else {
            None
        };
        if labels.get(&m.pod).map(String::as_str) != want {
            let patch = serde_json::json!({"metadata": {"labels": {ROLE_LABEL: want}}});
            api.patch(&m.pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn report(
    ctx: &Context,
    cluster: &MySQLCluster,
    id: &str,
    members: &[Member],
    instances: &[Instance],
    analysis: &[Analysis],
    policy: &Policy,
    plan: &Plan,
    blocker: Option<&Blocker>,
    copies: &clone::Followed,
) -> Result<()> {
    let observation = Observation {
        members,
        instances,
        analysis,
        primary: plan.primary.as_deref(),
        excluded: &plan.excluded,
        blocker,
        primary_held: plan.primary_held.as_deref(),
        policy,
        now: Timestamp::now(),
    };
    let mut new = status::build(cluster, &observation);
    for instance in &mut new.instances {
        instance.clone_progress = copies.copies.get(&instance.name).cloned();
    }
    new.clones = clone::history(&new.clones, &copies.ended);
    let code = new.analysis_code.clone().unwrap_or_default();
    let labels = cluster_labels(cluster);
    // A block is counted and told once, when it begins (or its reason changes).
    let reason = blocker.map(Blocker::reason);
    let previous = ctx.memory(id, |m| std::mem::replace(&mut m.blocked, reason));
    ctx.metrics.record_blocked(&labels, previous, reason);
    let lagging = ctx.memory(id, |m| std::mem::take(&mut m.lagging));
    let lagging = ctx.metrics.record_lag(&labels, &lagging, &new.instances);
    ctx.memory(id, |m| m.lagging = lagging);
    if let Some(b) = blocker.filter(|_| previous != reason) {
        ctx.metrics
            .blocks
            .get_or_create(&BlockLabels {
                reason: b.reason().into(),
            })
            .inc();
        publish(
            ctx,
            cluster,
            events::recovery_blocked(b, &cluster.name_any()),
        )
        .await;
    }
    let previous_code = ctx.memory(id, |m| m.code.replace(code.clone()));
    if previous_code.as_deref() != Some(code.as_str()) {
        // One series per cluster: the current code's.
        if let Some(old) = &previous_code {
            ctx.metrics.analysis.remove(&code_labels(&labels, old));
        }
        // A cluster still being created has no code yet, and no series.
        if !code.is_empty() {
            ctx.metrics
                .analysis
                .get_or_create(&code_labels(&labels, &code))
                .set(1);
        }
        if let Some(note) = events::analysis_changed(previous_code.as_deref(), &new, blocker) {
            publish(ctx, cluster, note).await;
        }
    }
    let current = cluster.status.clone().unwrap_or_default();
    let stale = ctx.memory(id, |m| {
        m.written
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= VOLATILE_REFRESH)
    });
    let changed = status::significant(&new) != status::significant(&current);
    if changed || (stale && new != current) {
        let written = match write_status(ctx, cluster, new.clone()).await {
            // The cached object is older than the last write (ours, usually): build
            // the status again on the fresh object.
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 409 => {
                let api = Api::<MySQLCluster>::namespaced(
                    ctx.client.clone(),
                    &cluster.namespace().unwrap_or_default(),
                );
                let fresh = api.get_status(&cluster.name_any()).await?;
                let rebuilt = status::build(&fresh, &observation);
                write_status(ctx, &fresh, rebuilt).await?
            }
            other => other?,
        };
        ctx.memory(id, |m| {
            m.written = Some((written.status.unwrap_or_default(), Instant::now()))
        });
    }
    Ok(())
}

fn code_labels(c: &ClusterLabels, code: &str) -> CodeLabels {
    CodeLabels {
        namespace: c.namespace.clone(),
        cluster: c.cluster.clone(),
        code: code.into(),
    }
}
