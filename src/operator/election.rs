//! Leader election on a `coordination.k8s.io/v1` Lease: only the leader acts.
//!
//! Invariants (why two operator replicas never act at once):
//! - Every write to the Lease carries the `resourceVersion` read just before, so two
//!   candidates can never both win the same round (optimistic concurrency).
//! - Expiry is judged on this process's monotonic clock, never on the timestamps in
//!   the Lease: a standby notes *when it saw* the holder's last renewal and takes over
//!   only `leaseDurationSeconds` after that. Clock skew between hosts plays no part.
//! - The leader counts itself leader only until `renew_deadline` after it *sent* its
//!   last successful renewal. `renew_deadline` is shorter than the lease duration, so a
//!   leader that cannot renew stops acting before any standby can take over.
//! - On SIGTERM the leader stops acting first, then releases the Lease (empty holder),
//!   so a rolling upgrade hands over at once instead of after an expiry.
//!
//! [`judge`] is the pure decision; [`run`] is the loop that reads and writes the Lease.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The election's command-line flags (`korc run`).
#[derive(Debug, Clone, clap::Args)]
pub struct ElectionArgs {
    /// Elect a leader among operator replicas; without it this replica always acts
    /// (run exactly one).
    #[arg(long, env = "KORC_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "KORC_LEASE_NAME", default_value = "korc-leader")]
    pub lease_name: String,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "korc-system")]
    pub lease_namespace: String,
    /// How long a standby waits after the leader's last renewal it saw before taking
    /// over, in milliseconds.
    #[arg(long, env = "KORC_LEASE_DURATION_MS", default_value_t = 5000)]
    pub lease_duration_ms: u64,
    /// How long the leader keeps acting after its last successful renewal, in
    /// milliseconds; shorter than the lease duration.
    #[arg(long, env = "KORC_LEASE_RENEW_DEADLINE_MS", default_value_t = 3000)]
    pub lease_renew_deadline_ms: u64,
    /// How often the leader renews and a standby looks, in milliseconds.
    #[arg(long, env = "KORC_LEASE_RETRY_PERIOD_MS", default_value_t = 500)]
    pub lease_retry_period_ms: u64,
}

impl ElectionArgs {
    /// The Lease settings, with `identity` naming this replica.
    pub fn settings(&self, identity: String) -> Result<LeaseSettings, String> {
        let s = LeaseSettings {
            namespace: self.lease_namespace.clone(),
            name: self.lease_name.clone(),
            identity,
            lease_duration: Duration::from_millis(self.lease_duration_ms),
            renew_deadline: Duration::from_millis(self.lease_renew_deadline_ms),
            retry_period: Duration::from_millis(self.lease_retry_period_ms),
        };
        s.validate()?;
        Ok(s)
    }
}

/// Lease timings and identity.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a standby waits after the holder's last renewal it saw.
    pub lease_duration: Duration,
    /// How long the leader acts after sending its last successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks at the Lease.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Refuses timings that would let two replicas act at once.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "--lease-renew-deadline-ms ({:?}) must be shorter than --lease-duration-ms ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(format!(
                "--lease-retry-period-ms ({:?}) must be shorter than --lease-renew-deadline-ms ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.lease_duration.as_secs() < 1 {
            return Err("--lease-duration-ms must be at least 1000".into());
        }
        Ok(())
    }
}

/// Whether this replica leads, shared by everything that acts on clusters.
#[derive(Debug, Clone)]
pub struct Leadership {
    valid_until: Arc<Mutex<Option<Instant>>>,
    changes: watch::Sender<bool>,
}

impl Default for Leadership {
    fn default() -> Self {
        Self {
            valid_until: Arc::default(),
            changes: watch::Sender::new(false),
        }
    }
}

impl Leadership {
    /// True while this replica holds the Lease and its last renewal is recent enough.
    pub fn is_leader(&self) -> bool {
        self.valid_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| Instant::now() < t)
    }

    /// Leadership changes (true: became leader), for triggering work at once.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    /// A leadership that always leads: for a single operator started with
    /// `--leader-election=false`.
    pub fn unconditional() -> Self {
        let l = Self::default();
        l.set(Some(
            Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
        ));
        l
    }

    fn set(&self, until: Option<Instant>) {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = until;
        let leading = until.is_some();
        self.changes.send_if_modified(|v| {
            let changed = *v != leading;
            *v = leading;
            changed
        });
    }
}

/// What a standby last saw of the holder: the holder and its Lease version, and when
/// (on this process's monotonic clock) that version was first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The holder.
    pub holder: String,
    /// The Lease's resourceVersion.
    pub version: String,
    /// When this replica first saw that version.
    pub seen_at: Instant,
}

/// What to do with the Lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// It is free or expired: take it.
    TakeOver,
    /// Someone else holds it; look again after this long at the latest.
    Wait(Duration),
}

/// The pure decision of one round: given the Lease as read now and what was observed
/// before, what to do, and the observation to keep.
pub fn judge(
    lease: Option<&Lease>,
    identity: &str,
    previous: Option<&Observed>,
    settings: &LeaseSettings,
    now: Instant,
) -> (Move, Option<Observed>) {
    let Some(lease) = lease else {
        return (Move::Create, None);
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return (Move::Renew, None);
    }
    if holder.is_empty() {
        return (Move::TakeOver, None);
    }
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let seen_at = match previous {
        Some(p) if p.holder == holder && p.version == version => p.seen_at,
        _ => now,
    };
    let duration = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map_or(settings.lease_duration, |s| Duration::from_secs(s as u64));
    let observed = Observed {
        holder,
        version,
        seen_at,
    };
    let expires = seen_at + duration;
    if now >= expires {
        (Move::TakeOver, Some(observed))
    } else {
        (
            Move::Wait(settings.retry_period.min(expires - now)),
            Some(observed),
        )
    }
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// The Lease as we write it when we take or renew it.
fn held(settings: &LeaseSettings, previous: Option<&Lease>, taking: bool) -> Lease {
    let mut lease = previous.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            namespace: Some(settings.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let mut spec: LeaseSpec = lease.spec.take().unwrap_or_default();
    let now = micro_now();
    if taking || spec.acquire_time.is_none() {
        spec.acquire_time = Some(now.clone());
        if previous.is_some() {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
    }
    spec.holder_identity = Some(settings.identity.clone());
    spec.lease_duration_seconds = Some(settings.lease_duration.as_secs().max(1) as i32);
    spec.renew_time = Some(now);
    lease.spec = Some(spec);
    lease
}

/// Takes part in the election until `shutdown` resolves, then releases the Lease if
/// held. `leadership` says at every moment whether this replica may act.
pub async fn run(
    client: Client,
    settings: LeaseSettings,
    leadership: Leadership,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let api = Api::<Lease>::namespaced(client, &settings.namespace);
    let mut observed: Option<Observed> = None;
    tokio::pin!(shutdown);
    loop {
        let wait = round(&api, &settings, &leadership, &mut observed).await;
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    release(&api, &settings, &leadership).await;
}

/// One round: read, decide, write. Returns how long to sleep.
async fn round(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    leadership: &Leadership,
    observed: &mut Option<Observed>,
) -> Duration {
    let sent = Instant::now();
    let current = match api.get_opt(&settings.name).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the leader Lease");
            expire_if_due(leadership);
            return settings.retry_period;
        }
    };
    let (decision, seen) = judge(
        current.as_ref(),
        &settings.identity,
        observed.as_ref(),
        settings,
        Instant::now(),
    );
    *observed = seen;
    let result = match decision {
        Move::Wait(d) => {
            if *leadership.changes.borrow() {
                tracing::warn!("another replica holds the leader Lease: stepping down");
                leadership.set(None);
            }
            return d;
        }
        Move::Create => api
            .create(&PostParams::default(), &held(settings, None, true))
            .await
            .map(|_| true),
        Move::Renew => api
            .replace(
                &settings.name,
                &PostParams::default(),
                &held(settings, current.as_ref(), false),
            )
            .await
            .map(|_| false),
        Move::TakeOver => api
            .replace(
                &settings.name,
                &PostParams::default(),
                &held(settings, current.as_ref(), true),
            )
            .await
            .map(|_| true),
    };
    match result {
        Ok(taken) => {
            if taken {
                tracing::info!(identity = %settings.identity, "became leader");
            }
            leadership.set(Some(sent + settings.renew_deadline));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the leader Lease");
            expire_if_due(leadership);
        }
    }
    settings.retry_period
}

/// A leader past its renew deadline stops acting and says so.
fn expire_if_due(leadership: &Leadership) {
    if *leadership.changes.borrow() && !leadership.is_leader() {
        tracing::warn!("leader Lease not renewed in time: stepping down");
        leadership.set(None);
    }
}

/// Stops acting, then hands the Lease back so a standby takes over at once.
async fn release(api: &Api<Lease>, settings: &LeaseSettings, leadership: &Leadership) {
    let was_leader = leadership.is_leader();
    leadership.set(None);
    if !was_leader {
        return;
    }
    let Ok(Some(mut lease)) = api.get_opt(&settings.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(micro_now());
    match api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!("released the leader Lease"),
        Err(e) => tracing::warn!(error = %e, "cannot release the leader Lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings {
            namespace: "korc-system".into(),
            name: "korc-leader".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(3),
            retry_period: Duration::from_millis(500),
        }
    }

    fn lease(holder: Option<&str>, version: &str, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("korc-leader".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn decisions() {
        let s = settings();
        let t0 = Instant::now();
        let seen = |holder: &str, version: &str, at: Instant| Observed {
            holder: holder.into(),
            version: version.into(),
            seen_at: at,
        };
        let other = lease(Some("other"), "7", 5);
        type Case = (&'static str, Option<Lease>, Option<Observed>, Instant, Move);
        let cases: Vec<Case> = vec![
            ("no lease", None, None, t0, Move::Create),
            (
                "ours",
                Some(lease(Some("me"), "7", 5)),
                None,
                t0,
                Move::Renew,
            ),
            (
                "released",
                Some(lease(None, "7", 1)),
                None,
                t0,
                Move::TakeOver,
            ),
            (
                "released with empty holder",
                Some(lease(Some(""), "7", 1)),
                None,
                t0,
                Move::TakeOver,
            ),
            (
                "first sight of a holder: wait a full duration",
                Some(other.clone()),
                None,
                t0,
                Move::Wait(s.retry_period),
            ),
            (
                "holder renewed since: the clock restarts",
                Some(other.clone()),
                Some(seen("other", "6", t0)),
                t0 + Duration::from_secs(10),
                Move::Wait(s.retry_period),
            ),
            (
                "unchanged but not yet expired: wake at expiry",
                Some(other.clone()),
                Some(seen("other", "7", t0)),
                t0 + Duration::from_millis(4800),
                Move::Wait(Duration::from_millis(200)),
            ),
            (
                "unchanged for a lease duration: take over",
                Some(other.clone()),
                Some(seen("other", "7", t0)),
                t0 + Duration::from_secs(5),
                Move::TakeOver,
            ),
            (
                "the lease's own duration counts, not ours",
                Some(lease(Some("other"), "7", 20)),
                Some(seen("other", "7", t0)),
                t0 + Duration::from_secs(10),
                Move::Wait(s.retry_period),
            ),
            (
                "same version, new holder: the clock restarts",
                Some(lease(Some("third"), "7", 5)),
                Some(seen("other", "7", t0)),
                t0 + Duration::from_secs(10),
                Move::Wait(s.retry_period),
            ),
        ];
        for (name, lease, previous, now, want) in cases {
            let (got, _) = judge(lease.as_ref(), "me", previous.as_ref(), &s, now);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn observation_keeps_the_first_sighting() {
        let s = settings();
        let t0 = Instant::now();
        let l = lease(Some("other"), "7", 5);
        let (_, first) = judge(Some(&l), "me", None, &s, t0);
        let first = first.unwrap();
        assert_eq!(first.seen_at, t0);
        let (_, again) = judge(
            Some(&l),
            "me",
            Some(&first),
            &s,
            t0 + Duration::from_secs(2),
        );
        assert_eq!(again.unwrap().seen_at, t0);
    }

    #[test]
    fn unsafe_timings_are_refused() {
        let mut s = settings();
        assert!(s.validate().is_ok());
        s.renew_deadline = s.lease_duration;
        assert!(s.validate().unwrap_err().contains("renew-deadline"));
        let mut s = settings();
        s.retry_period = s.renew_deadline;
        assert!(s.validate().unwrap_err().contains("retry-period"));
    }

    #[test]
    fn leadership_expires_by_itself() {
        let l = Leadership::default();
        assert!(!l.is_leader());
        l.set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(l.is_leader() && *l.subscribe().borrow());
        l.set(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!l.is_leader(), "past its deadline a leader stops acting");
        l.set(None);
        assert!(!*l.subscribe().borrow());
    }
}
