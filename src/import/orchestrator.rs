//! orchestrator's configuration (`orchestrator.conf.json`) as a `MySQLCluster`.
//!
//! [`import`] is pure: it reads the configuration's settings the way orchestrator
//! does (names matched without regard to case, legacy names and their quirks
//! included), carries every one korc honours into `spec.recovery`,
//! `spec.instances` and, on request, `spec.hooks`, and gives a reason for each one
//! it leaves behind. [`Imported::to_yaml`] prints the result with those reasons as
//! comments.

use crate::api::{HookSpec, HooksSpec, InstanceSpec, RecoverySpec, SqlThreadNotUpToDate};
use crate::operator::hooks::HookEvent;
use crate::topology::policy::PromotionRule;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// What to build besides the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The `MySQLCluster`'s name.
    pub name: String,
    /// Its namespace (none: the one `kubectl` uses).
    pub namespace: Option<String>,
    /// `spec.image`.
    pub image: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// The name orchestrator knew the cluster by (its alias), which
    /// `Recover*ClusterFilters` are matched against; the `MySQLCluster`'s name when
    /// not given.
    pub cluster_alias: Option<String>,
    /// Turn the `*Processes` hooks into `spec.hooks`.
    pub hooks: bool,
    /// The image hook commands run in (it needs the hook shell).
    pub hook_image: String,
    /// orchestrator's host names of the instances and the pod each one becomes.
    pub pods: Vec<(String, String)>,
    /// Promotion rules registered with orchestrator (`register-candidate`), by host
    /// (translated through `pods`) or pod.
    pub promotion_rules: Vec<(String, PromotionRule)>,
}

/// One setting carried over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    /// orchestrator's setting, as written in the file (or its name when absent).
    pub setting: String,
    /// Its value, as JSON.
    pub value: String,
    /// Where it went and as what (`spec.recovery.blockPeriodSeconds: 3600`).
    pub to: String,
}

/// One setting left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// orchestrator's setting, as written in the file.
    pub setting: String,
    /// Its value, as JSON (shortened).
    pub value: String,
    /// Why korc does not take it.
    pub why: String,
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The options it was built with.
    pub options: Options,
    /// `spec.recovery`.
    pub recovery: RecoverySpec,
    /// `spec.instances`.
    pub instances: BTreeMap<String, InstanceSpec>,
    /// `spec.hooks`, with `--hooks`.
    pub hooks: Option<HooksSpec>,
    /// The settings carried over.
    pub carried: Vec<Carried>,
    /// The settings left behind, in the file's order.
    pub left: Vec<Left>,
    /// Where korc behaves differently from orchestrator with these settings.
    pub differences: Vec<String>,
}

/// Why a configuration cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The document is not a JSON object.
    #[error("an orchestrator configuration is a JSON object")]
    NotAnObject,
    /// A setting korc takes has a value of the wrong type (orchestrator would refuse
    /// to start with it too).
    #[error("{setting}: expected {expected}, found {found}")]
    WrongType {
        /// The setting.
        setting: String,
        /// What orchestrator expects.
        expected: &'static str,
        /// What the file has.
        found: String,
    },
    /// A `Recover*ClusterFilters` or `PromotionIgnoreHostnameFilters` entry is not a
    /// regular expression.
    #[error("{setting}: {filter:?} is not a regular expression: {error}")]
    BadFilter {
        /// The setting.
        setting: String,
        /// The filter.
        filter: String,
        /// Why.
        error: String,
    },
}

/// orchestrator's hook lists and korc's hook points, in orchestrator's order.
const HOOK_POINTS: [(&str, &str); 8] = [
    ("OnFailureDetectionProcesses", "onFailureDetection"),
    ("PreGracefulTakeoverProcesses", "preGracefulTakeover"),
    ("PreFailoverProcesses", "preFailover"),
    ("PostMasterFailoverProcesses", "postMasterFailover"),
    (
        "PostIntermediateMasterFailoverProcesses",
        "postIntermediateMasterFailover",
    ),
    ("PostFailoverProcesses", "postFailover"),
    (
        "PostUnsuccessfulFailoverProcesses",
        "postUnsuccessfulFailover",
    ),
    ("PostGracefulTakeoverProcesses", "postGracefulTakeover"),
];

/// The settings of one configuration, read as orchestrator reads them (Go's JSON
/// decoding matches names without regard to case); each one taken is marked.
struct Settings<'a> {
    entries: Vec<(&'a str, &'a Value)>,
    taken: BTreeSet<String>,
}

impl<'a> Settings<'a> {
    fn new(config: &'a Map<String, Value>) -> Self {
        Self {
            entries: config.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            taken: BTreeSet::new(),
        }
    }

    /// The setting named `name` (any case; percona/orchestrator's spelling with
    /// `Primary` for `Master` too) as written, and its value; marks it taken.
    fn take(&mut self, name: &str) -> Option<(&'a str, &'a Value)> {
        let primary = name.replace("Master", "Primary");
        let found = self
            .entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name) || k.eq_ignore_ascii_case(&primary))
            .copied()?;
        self.taken.insert(found.0.to_ascii_lowercase());
        Some(found)
    }

    fn boolean(&mut self, name: &str) -> Result<Option<(&'a str, bool)>, ImportError> {
        self.take(name)
            .map(|(k, v)| {
                v.as_bool()
                    .map(|b| (k, b))
                    .ok_or_else(|| wrong(k, "true or false", v))
            })
            .transpose()
    }

    fn number(&mut self, name: &str) -> Result<Option<(&'a str, i64)>, ImportError> {
        self.take(name)
            .map(|(k, v)| {
                v.as_u64()
                    .and_then(|n| i64::try_from(n).ok())
                    .map(|n| (k, n))
                    .ok_or_else(|| wrong(k, "a whole number, 0 or more", v))
            })
            .transpose()
    }

    fn strings(&mut self, name: &str) -> Result<Option<(&'a str, Vec<String>)>, ImportError> {
        self.take(name)
            .map(|(k, v)| {
                v.as_array()
                    .and_then(|items| {
                        items
                            .iter()
                            .map(|i| i.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .map(|list| (k, list))
                    .ok_or_else(|| wrong(k, "a list of strings", v))
            })
            .transpose()
    }

    fn string(&mut self, name: &str) -> Result<Option<(&'a str, String)>, ImportError> {
        self.take(name)
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k, s.to_owned()))
                    .ok_or_else(|| wrong(k, "a string", v))
            })
            .transpose()
    }

    /// The settings not taken, in the file's order.
    fn rest(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + '_ {
        self.entries
            .iter()
            .filter(|(k, _)| !self.taken.contains(&k.to_ascii_lowercase()))
            .copied()
    }
}

fn wrong(setting: &str, expected: &'static str, found: &Value) -> ImportError {
    ImportError::WrongType {
        setting: setting.to_owned(),
        expected,
        found: found.to_string(),
    }
}

/// Everything an import collects on the way.
struct Report {
    carried: Vec<Carried>,
    left: Vec<Left>,
    differences: Vec<String>,
}

impl Report {
    fn carry(&mut self, setting: &str, value: impl std::fmt::Display, to: String) {
        self.carried.push(Carried {
            setting: setting.to_owned(),
            value: value.to_string(),
            to,
        });
    }

    fn leave(&mut self, setting: &str, value: &Value, why: impl Into<String>) {
        let secret = ["password", "token", "secret"]
            .iter()
            .any(|w| setting.to_ascii_lowercase().contains(w));
        let value = match value {
            // A printed cluster must not carry orchestrator's credentials along.
            Value::String(s) if secret && !s.is_empty() => "(hidden)".to_owned(),
            _ => shorten(&value.to_string()),
        };
        self.left.push(Left {
            setting: setting.to_owned(),
            value,
            why: why.into(),
        });
    }
}

/// A value short enough for one comment line.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Imports `config` (the parsed `orchestrator.conf.json`).
pub fn import(config: &Value, options: &Options) -> Result<Imported, ImportError> {
    let config = config.as_object().ok_or(ImportError::NotAnObject)?;
    let mut s = Settings::new(config);
    let mut report = Report {
        carried: Vec::new(),
        left: Vec::new(),
        differences: Vec::new(),
    };
    let recovery = recovery(&mut s, options, &mut report)?;
    let instances = instances(&mut s, options, &mut report)?;
    let hooks = if options.hooks {
        hooks(&mut s, options, &mut report)?
    } else {
        None
    };
    for (setting, value) in s.rest() {
        report.leave(setting, value, why_not(setting, options.hooks));
    }
    Ok(Imported {
        options: options.clone(),
        recovery,
        instances,
        hooks,
        carried: report.carried,
        left: report.left,
        differences: report.differences,
    })
}

fn recovery(
    s: &mut Settings<'_>,
    options: &Options,
    report: &mut Report,
) -> Result<RecoverySpec, ImportError> {
    let mut r = RecoverySpec::default();
    let alias = options.cluster_alias.as_deref().unwrap_or(&options.name);

    // orchestrator converts the legacy minutes only when the seconds are 0 (their
    // default is 3600).
    let seconds = s.number("RecoveryPeriodBlockSeconds")?;
    let minutes = s.number("RecoveryPeriodBlockMinutes")?;
    match (seconds, minutes) {
        (seconds, Some((k, m))) if seconds.is_some_and(|(_, s)| s == 0) && m > 0 => {
            r.block_period_seconds = m * 60;
            report.carry(
                k,
                m,
                format!("spec.recovery.blockPeriodSeconds: {}", m * 60),
            );
            if let Some((k, secs)) = seconds {
                report.leave(
                    k,
                    &json!(secs),
                    "0: orchestrator takes RecoveryPeriodBlockMinutes",
                );
            }
        }
        (seconds, minutes) => {
            if let Some((k, secs)) = seconds {
                r.block_period_seconds = secs;
                report.carry(k, secs, format!("spec.recovery.blockPeriodSeconds: {secs}"));
            }
            if let Some((k, m)) = minutes {
                report.leave(
                    k,
                    &json!(m),
                    "orchestrator ignores it unless RecoveryPeriodBlockSeconds is 0",
                );
            }
        }
    }

    for (setting, field, apply) in [
        (
            "PreventCrossDataCenterMasterFailover",
            "preventCrossDataCenterFailover",
            (|r: &mut RecoverySpec, b| r.prevent_cross_data_center_failover = b)
                as fn(&mut RecoverySpec, bool),
        ),
        (
            "PreventCrossRegionMasterFailover",
            "preventCrossRegionFailover",
            |r, b| r.prevent_cross_region_failover = b,
        ),
        (
            "ApplyMySQLPromotionAfterMasterFailover",
            "applyPromotion",
            |r, b| r.apply_promotion = b,
        ),
    ] {
        if let Some((k, b)) = s.boolean(setting)? {
            apply(&mut r, b);
            report.carry(k, b, format!("spec.recovery.{field}: {b}"));
        }
    }

    if let Some((k, lag)) = s.number("ReasonableReplicationLagSeconds")? {
        r.reasonable_replication_lag_seconds = lag;
        report.carry(
            k,
            lag,
            format!("spec.recovery.reasonableReplicationLagSeconds: {lag}"),
        );
    }

    if let Some((k, minutes)) = s.number("FailMasterPromotionOnLagMinutes")? {
        if minutes > 0 {
            r.fail_promotion_on_lag_seconds = Some(minutes * 60);
            report.carry(
                k,
                minutes,
                format!("spec.recovery.failPromotionOnLagSeconds: {}", minutes * 60),
            );
            report.differences.push(
                "FailMasterPromotionOnLagMinutes: orchestrator measures lag with \
                 ReplicationLagQuery; korc with Seconds_Behind_Master"
                    .into(),
            );
        } else {
            report.carry(
                k,
                minutes,
                "no lag limit (failPromotionOnLagSeconds unset)".into(),
            );
        }
    }

    let fail = s.boolean("FailMasterPromotionIfSQLThreadNotUpToDate")?;
    let delay = s.boolean("DelayMasterPromotionIfSQLThreadNotUpToDate")?;
    match (fail, delay) {
        (Some((fk, true)), Some((dk, true))) => {
            report.leave(
                fk,
                &json!(true),
                format!("{dk} is set too: orchestrator refuses both"),
            );
            report.leave(
                dk,
                &json!(true),
                format!("{fk} is set too: orchestrator refuses both"),
            );
        }
        (Some((k, true)), other) => {
            r.sql_thread_not_up_to_date = SqlThreadNotUpToDate::Fail;
            report.carry(k, true, "spec.recovery.sqlThreadNotUpToDate: Fail".into());
            if let Some((k, b)) = other {
                report.carry(k, b, "(Fail wins)".into());
            }
        }
        (other, Some((k, true))) => {
            r.sql_thread_not_up_to_date = SqlThreadNotUpToDate::Delay;
            report.carry(k, true, "spec.recovery.sqlThreadNotUpToDate: Delay".into());
            if let Some((k, b)) = other {
                report.carry(k, b, "(Delay wins)".into());
            }
        }
        (fail, delay) => {
            for (k, b) in fail.into_iter().chain(delay) {
                report.carry(
                    k,
                    b,
                    "spec.recovery.sqlThreadNotUpToDate: Delay (see below)".into(),
                );
            }
            report.differences.push(
                "neither Fail- nor DelayMasterPromotionIfSQLThreadNotUpToDate is set: \
                 orchestrator promotes a replica that has not applied all it received; \
                 korc waits while its applier progresses (Delay). sqlThreadNotUpToDate: \
                 Promote is orchestrator's behaviour"
                    .into(),
            );
        }
    }

    // The legacy name defaults to true and overrides the new one: only an explicit
    // `DetachLostSlavesAfterMasterFailover: false` turns detaching off.
    let new = s.boolean("DetachLostReplicasAfterMasterFailover")?;
    let legacy = s.boolean("DetachLostSlavesAfterMasterFailover")?;
    let detach = !matches!(legacy, Some((_, false)));
    r.detach_lost_replicas = detach;
    for (k, b) in new.into_iter().chain(legacy) {
        report.carry(k, b, format!("spec.recovery.detachLostReplicas: {detach}"));
    }
    if let (Some((k, false)), true) = (new, detach) {
        report.differences.push(format!(
            "{k} is false, but orchestrator detaches lost replicas unless \
             DetachLostSlavesAfterMasterFailover is false too: korc does as orchestrator did"
        ));
    }

    for (setting, field, apply) in [
        (
            "RecoverMasterClusterFilters",
            "automaticMasterRecovery",
            (|r: &mut RecoverySpec, b| r.automatic_master_recovery = b)
                as fn(&mut RecoverySpec, bool),
        ),
        (
            "RecoverIntermediateMasterClusterFilters",
            "automaticIntermediateMasterRecovery",
            |r, b| r.automatic_intermediate_master_recovery = b,
        ),
    ] {
        match s.strings(setting)? {
            Some((k, filters)) => {
                let on = filters_match(k, &filters, alias)?;
                apply(&mut r, on);
                let how = if on { "matches" } else { "does not match" };
                report.carry(
                    k,
                    json!(filters),
                    format!("spec.recovery.{field}: {on} (it {how} the cluster alias {alias})"),
                );
            }
            None => {
                apply(&mut r, false);
                report.carry(
                    setting,
                    "(not set)",
                    format!(
                        "spec.recovery.{field}: false (orchestrator recovers no cluster without it)"
                    ),
                );
            }
        }
    }
    Ok(r)
}

/// orchestrator's cluster filter match: `*`, `alias=NAME`, `alias~=REGEX`, the name
/// itself, or a regular expression on it. korc knows the cluster by its alias only.
fn filters_match(setting: &str, filters: &[String], alias: &str) -> Result<bool, ImportError> {
    for f in filters {
        let hit = if f == "*" {
            true
        } else if let Some(name) = f.strip_prefix("alias=") {
            name == alias
        } else if let Some(re) = f.strip_prefix("alias~=") {
            regex(setting, re)?.is_match(alias)
        } else {
            f == alias || regex(setting, f)?.is_match(alias)
        };
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

fn regex(setting: &str, pattern: &str) -> Result<regex::Regex, ImportError> {
    regex::Regex::new(pattern).map_err(|e| ImportError::BadFilter {
        setting: setting.to_owned(),
        filter: pattern.to_owned(),
        error: e.to_string(),
    })
}

fn instances(
    s: &mut Settings<'_>,
    options: &Options,
    report: &mut Report,
) -> Result<BTreeMap<String, InstanceSpec>, ImportError> {
    let pod_of = |host: &str| {
        options
            .pods
            .iter()
            .find(|(h, _)| h == host)
            .map_or_else(|| host.to_owned(), |(_, p)| p.clone())
    };
    let mut instances: BTreeMap<String, InstanceSpec> = BTreeMap::new();
    for (host, rule) in &options.promotion_rules {
        let pod = pod_of(host);
        instances.entry(pod.clone()).or_default().promotion_rule = *rule;
        report.carry(
            &format!("register-candidate {host}"),
            rule,
            format!("spec.instances.{pod}.promotionRule: {rule}"),
        );
    }
    if let Some((k, filters)) = s.strings("PromotionIgnoreHostnameFilters")? {
        let mut banned = Vec::new();
        for (host, pod) in &options.pods {
            for f in &filters {
                if regex(k, f)?.is_match(host) {
                    instances.entry(pod.clone()).or_default().promotion_rule =
                        PromotionRule::MustNot;
                    banned.push(format!("spec.instances.{pod}.promotionRule: must_not"));
                    break;
                }
            }
        }
        if banned.is_empty() && !filters.is_empty() {
            report.leave(
                k,
                &json!(filters),
                "no instance given with --pod HOST=POD matches it",
            );
        } else {
            let to = if banned.is_empty() {
                "nothing (no filter)".to_owned()
            } else {
                banned.join(", ")
            };
            report.carry(k, json!(filters), to);
        }
    }
    Ok(instances)
}

fn hooks(
    s: &mut Settings<'_>,
    options: &Options,
    report: &mut Report,
) -> Result<Option<HooksSpec>, ImportError> {
    let shell = match s.string("ProcessesShellCommand")? {
        Some((k, shell)) => {
            report.carry(k, &shell, format!("each hook runs {shell} -c COMMAND"));
            shell
        }
        None => "bash".to_owned(),
    };
    let known: Vec<&str> = HookEvent {
        successor: Some(String::new()),
        ..HookEvent::default()
    }
    .values()
    .into_iter()
    .map(|(name, _)| name)
    .collect();
    let mut spec = HooksSpec::default();
    let mut any = false;
    for (setting, point) in HOOK_POINTS {
        let Some((k, commands)) = s.strings(setting)? else {
            continue;
        };
        let mut list = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            let trimmed = command.trim_end();
            let command = match trimmed.strip_suffix('&') {
                Some(rest) if !rest.ends_with('&') => {
                    report.differences.push(format!(
                        "{k}[{i}] ends in `&` (orchestrator runs it in the background and \
                         ignores its failure): korc runs it as a Job{}",
                        if point.starts_with("pre") {
                            ", and a pre hook that fails aborts the recovery"
                        } else {
                            " and never waits for it"
                        }
                    ));
                    rest.trim_end()
                }
                _ => trimmed,
            };
            for unknown in placeholders(command).filter(|p| !known.contains(p)) {
                report.differences.push(format!(
                    "{k}[{i}]: korc has no value for {{{unknown}}}; it stays as written"
                ));
            }
            list.push(hook(i, command, &shell, &options.hook_image));
        }
        report.carry(
            k,
            format!("{} command(s)", list.len()),
            format!("spec.hooks.{point}"),
        );
        any |= !list.is_empty();
        *point_mut(&mut spec, point) = list;
    }
    if any {
        report.differences.push(
            "hooks: {failedHost}, {successorHost} and the ORC_*_HOST variables name pods; \
             each hook runs as a Job (timeout 300 s unless timeoutSeconds says otherwise), \
             where orchestrator ran a local process without a timeout"
                .into(),
        );
    }
    Ok(any.then_some(spec))
}

fn point_mut<'a>(spec: &'a mut HooksSpec, point: &str) -> &'a mut Vec<HookSpec> {
    match point {
        "onFailureDetection" => &mut spec.on_failure_detection,
        "preGracefulTakeover" => &mut spec.pre_graceful_takeover,
        "preFailover" => &mut spec.pre_failover,
        "postMasterFailover" => &mut spec.post_master_failover,
        "postIntermediateMasterFailover" => &mut spec.post_intermediate_master_failover,
        "postFailover" => &mut spec.post_failover,
        "postUnsuccessfulFailover" => &mut spec.post_unsuccessful_failover,
        _ => &mut spec.post_graceful_takeover,
    }
}

/// The `{name}` placeholders of a command.
fn placeholders(command: &str) -> impl Iterator<Item = &str> {
    command.split('{').skip(1).filter_map(|rest| {
        let name = rest.split('}').next().filter(|_| rest.contains('}'))?;
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric())).then_some(name)
    })
}

/// One hook: the command run by the shell in `image`, named after its program.
fn hook(index: usize, command: &str, shell: &str, image: &str) -> HookSpec {
    let program = command
        .split_whitespace()
        .next()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("hook");
    let mut name: String = program
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(50);
    let name = format!("{}-{}", name.trim_matches('-'), index + 1);
    let template = serde_json::from_value(json!({
        "spec": {"containers": [{
            "name": "hook",
            "image": image,
            "command": [shell, "-c", command],
        }]}
    }))
    .expect("a container with a name, an image and a command is a pod template");
    HookSpec {
        name,
        timeout_seconds: 300,
        backoff_limit: 0,
        template,
    }
}

/// Why korc takes no setting by this name (`hooks`: hooks are being imported).
pub fn why_not(setting: &str, hooks: bool) -> String {
    let s = setting.to_ascii_lowercase();
    let has = |prefix: &str| s.starts_with(&prefix.to_ascii_lowercase());
    let is = |name: &str| s == name.to_ascii_lowercase();
    let why = if s.ends_with("processes") && !is("PostTakeMasterProcesses") && !hooks {
        "a hook: korc imports hooks with --hooks"
    } else if is("ProcessesShellCommand") {
        "the shell of hooks: used with --hooks"
    } else if is("PostTakeMasterProcesses") {
        "korc has no take-master operation (a switchover runs the graceful takeover hooks)"
    } else if has("MySQLOrchestrator") || is("BackendDB") || has("SQLite") {
        "orchestrator's backend database: korc keeps its state in the MySQLCluster's status"
    } else if has("Raft") || is("DefaultRaftPort") || is("ActiveNodeExpireSeconds") {
        "orchestrator's own high availability: korc's replicas elect a leader with a Lease \
         (chart values leaderElection.*)"
    } else if has("MySQLTopologySSL") || has("MySQLTopologyUseMutualTLS") {
        "TLS to the servers: korc reaches its pods over the cluster network"
    } else if has("MySQLTopology") {
        "korc creates its own accounts in the servers (spec.credentialsSecret holds the passwords)"
    } else if has("Agent")
        || has("UnseenAgent")
        || is("ServeAgentsHttp")
        || has("Seed")
        || is("StaleSeedFailMinutes")
    {
        "orchestrator-agent: korc has no agent"
    } else if has("Consul") || has("Zk") || has("KV") {
        "a key-value store for the master's address: korc's -primary Service follows the primary"
    } else if has("Graphite") {
        "korc exports Prometheus metrics on /metrics"
    } else if has("PseudoGTID")
        || has("DetectPseudoGTID")
        || has("BinlogEvents")
        || is("BinlogEventsChunkSize")
        || is("BufferBinlogEvents")
        || is("SkipBinlogEventsContaining")
    {
        "Pseudo-GTID: korc replicates with GTID only"
    } else if has("Audit") {
        "auditing: korc records what it does in Events and status.recoveries"
    } else if has("HTTPAuth")
        || has("Authentication")
        || has("AuthUser")
        || is("PowerAuthUsers")
        || is("ReadOnly")
        || is("URLPrefix")
        || has("Status")
        || is("ListenAddress")
        || has("UseSSL")
        || has("UseMutualTLS")
        || has("SSL")
        || is("HttpTimeoutSeconds")
        || has("WebMessage")
    {
        "orchestrator's HTTP API: korc serves none; kubectl korc and the MySQLCluster's status \
         replace it, RBAC decides who may change it"
    } else if is("Debug") || is("EnableSyslog") || has("Log") {
        "logging: korc logs to stderr (chart values logLevel and logJson)"
    } else if is("InstancePollSeconds") || is("ReasonableInstanceCheckSeconds") {
        "korc probes every spec.probeIntervalMs (1000 ms by default): detection stays faster \
         than orchestrator's poll"
    } else if is("MySQLConnectTimeoutSeconds") || is("MySQLDiscoveryReadTimeoutSeconds") {
        "korc bounds each probe to 1 s"
    } else if is("DefaultInstancePort") {
        "korc's servers listen on 3306"
    } else if has("Discover") || has("UnseenInstance") || is("SnapshotTopologiesIntervalHours") {
        "korc knows its instances from the StatefulSet's pods: nothing is discovered"
    } else if is("ProblemIgnoreHostnameFilters") {
        "korc analyses every pod; downtime one with spec.instances.<pod>.downtimeUntil"
    } else if is("RecoveryIgnoreHostnameFilters") {
        "korc may recover every pod; downtime one with spec.instances.<pod>.downtimeUntil, \
         or set spec.paused"
    } else if is("OSCIgnoreHostnameFilters") {
        "korc has no online-schema-change integration"
    } else if s.contains("hostname") || is("SkipBinlogServerUnresolveCheck") {
        "korc names instances by pod; pods have stable names"
    } else if is("VerifyReplicationFilters") {
        "korc sets replication up itself, without filters"
    } else if is("ReasonableMaintenanceReplicationLagSeconds") {
        "a switchover's target must catch up within 20 s, not configurable on a MySQLCluster"
    } else if is("InstanceBulkOperationsWaitTimeoutSeconds") {
        "the wait for a candidate's relay log is spec.recovery.relayLogApplyTimeoutSeconds"
    } else if has("Maintenance") {
        "korc has no maintenance locks; spec.paused stops it acting on a cluster"
    } else if is("CandidateInstanceExpireMinutes") {
        "promotion rules live in spec.instances and do not expire"
    } else if is("DetectPromotionRuleQuery") {
        "promotion rules live in spec.instances.<pod>.promotionRule"
    } else if has("ClusterNameToAlias")
        || has("DetectClusterAlias")
        || has("DetectClusterDomain")
        || has("DetectInstanceAlias")
    {
        "a cluster is named by its MySQLCluster; its domain is the -primary Service's DNS name"
    } else if has("DataCenter")
        || has("Region")
        || has("PhysicalEnvironment")
        || has("DetectDataCenter")
        || has("DetectRegion")
        || has("DetectPhysicalEnvironment")
    {
        "korc takes each pod's zone from its node's topology.kubernetes.io/zone label"
    } else if has("DetectSemiSync") || is("SemiSyncPriority") {
        "semi-sync is spec.semiSync"
    } else if is("ReplicationLagQuery") || is("SlaveLagQuery") {
        "korc reads Seconds_Behind_Master"
    } else if is("ReduceReplicationAnalysisCount") {
        "korc analyses every instance every round"
    } else if is("FailureDetectionPeriodBlockMinutes") {
        "onFailureDetection runs once per detected failure (status.failureDetection)"
    } else if is("RecoveryPollSeconds") {
        "korc analyses after every probe"
    } else if is("CoMasterRecoveryMustPromoteOtherCoMaster") {
        "korc runs one primary per cluster; co-masters are reported, never built"
    } else if has("MasterFailoverDetach") {
        "applyPromotion resets the promoted replica's replication"
    } else if is("MasterFailoverLostInstancesDowntimeMinutes")
        || is("LostInRecoveryDowntimeSeconds")
    {
        "lost replicas are detached and named in status.recoveries[].lostReplicas, not downtimed"
    } else if has("PostponeReplicaRecovery") || has("PostponeSlaveRecovery") {
        "korc repoints every replica within the recovery"
    } else if is("RecoverNonWriteableMaster")
        || is("RecoverLockedSemiSyncMaster")
        || is("EnforceExactSemiSyncReplicas")
        || is("ReasonableLockedSemiSyncMasterSeconds")
    {
        "not configurable on a MySQLCluster yet (korc recover takes it as a flag)"
    } else if has("ExpectFailureAnalysisConcensus")
        || is("ReadLongRunningQueries")
        || is("SlaveStartPostWaitMilliseconds")
        || has("DatabaselessMode")
    {
        "no counterpart in korc"
    } else {
        "not an orchestrator setting korc knows"
    };
    why.to_owned()
}

impl Imported {
    /// The `MySQLCluster` (or, with `patch`, a merge patch of its `spec`) as YAML,
    /// headed by comments: what was carried over, what was not and why, and where
    /// korc behaves differently.
    pub fn to_yaml(&self, patch: bool) -> String {
        let mut spec = Map::new();
        if !patch {
            spec.insert("replicas".into(), json!(self.options.replicas));
            spec.insert("image".into(), json!(self.options.image));
        }
        spec.insert("recovery".into(), json!(self.recovery));
        if !self.instances.is_empty() {
            spec.insert("instances".into(), json!(self.instances));
        }
        if let Some(hooks) = &self.hooks {
            spec.insert("hooks".into(), json!(hooks));
        }
        let document = if patch {
            json!({ "spec": spec })
        } else {
            let mut metadata = Map::new();
            metadata.insert("name".into(), json!(self.options.name));
            if let Some(ns) = &self.options.namespace {
                metadata.insert("namespace".into(), json!(ns));
            }
            json!({
                "apiVersion": "korc.dev/v1alpha1",
                "kind": "MySQLCluster",
                "metadata": metadata,
                "spec": spec,
            })
        };
        let mut out = String::new();
        if patch {
            out += &format!(
                "# A merge patch of MySQLCluster {}'s spec, from an orchestrator configuration:\n\
                 #   kubectl patch myc {} --type merge --patch-file THIS_FILE\n",
                self.options.name, self.options.name
            );
        } else {
            out +=
                "# A MySQLCluster from an orchestrator configuration (korc import orchestrator).\n";
        }
        out += "#\n# Carried over:\n";
        for c in &self.carried {
            out += &format!("#   {} = {} -> {}\n", c.setting, c.value, c.to);
        }
        if !self.differences.is_empty() {
            out += "#\n# Different in korc:\n";
            for d in &self.differences {
                out += &format!("#   {d}\n");
            }
        }
        if !self.left.is_empty() {
            out += "#\n# Not carried over:\n";
            for l in &self.left {
                out += &format!("#   {} = {}: {}\n", l.setting, l.value, l.why);
            }
        }
        out += &serde_saphyr::to_string(&document).expect("a JSON document serializes as YAML");
        out
    }
}

#[cfg(test)]
mod tests;
