//! The operator controls the plugin sets, as merge patches of the MySQLCluster, and how
//! a requested switchover shows in the status. Pure: no API calls here.

use crate::api::MySQLClusterStatus;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

pub use crate::operator::decide::ACKNOWLEDGE_ANNOTATION;

/// Sets `spec.switchover`. `to` is written even when absent (as null) so that the
/// target of an earlier request does not carry over into this one.
pub fn switchover_patch(request_id: &str, to: Option<&str>) -> Value {
    json!({ "spec": { "switchover": { "requestId": request_id, "to": to } } })
}

/// Sets `spec.paused`.
pub fn paused_patch(paused: bool) -> Value {
    json!({ "spec": { "paused": paused } })
}

/// Sets the acknowledgement annotation.
pub fn acknowledge_patch(value: &str) -> Value {
    json!({ "metadata": { "annotations": { ACKNOWLEDGE_ANNOTATION: value } } })
}

/// The acknowledgement's value: when (RFC 3339, UTC, whole seconds) and by whom.
pub fn acknowledgement(now: Timestamp, user: &str) -> String {
    let second = Timestamp::from_second(now.as_second()).unwrap_or(now);
    format!("{second} {user}")
}

/// Checks that `to` can be promoted: an instance of the cluster that is not already its
/// primary. Instances are those the status lists, or `<cluster>-<ordinal>` for every
/// ordinal of the spec while the status lists none.
pub fn check_target(
    cluster: &str,
    replicas: i64,
    status: &MySQLClusterStatus,
    to: &str,
) -> Result<(), String> {
    let names: Vec<String> = if status.instances.is_empty() {
        (0..replicas).map(|i| format!("{cluster}-{i}")).collect()
    } else {
        status.instances.iter().map(|i| i.name.clone()).collect()
    };
    if !names.iter().any(|n| n == to) {
        return Err(format!(
            "{to} is not an instance of {cluster} (instances: {})",
            names.join(", ")
        ));
    }
    if status.primary.as_deref() == Some(to) {
        return Err(format!("{to} is already the primary of {cluster}"));
    }
    Ok(())
}

/// Where a requested switchover stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Nothing shows the outcome yet.
    Pending,
    /// It happened: this is the primary now.
    Done {
        /// Pod name of the primary.
        primary: String,
    },
    /// korc recorded it as failed or rolled back.
    Failed {
        /// The recorded outcome.
        outcome: String,
        /// The recorded error, if any.
        error: Option<String>,
    },
}

/// Where the switchover `request_id` stands in `status` (raw JSON, so fields this
/// version of korc does not know are read too).
///
/// The record in `status.recoveries` with this `requestId` decides once it has an
/// `outcome`: `recovered` is success, `failed` or `rolledBack` failure. Without such a
/// record, the switchover is done when `status.primary` is the requested pod, or, with
/// no pod requested, any pod other than `primary_before`.
pub fn progress(
    status: &Value,
    request_id: &str,
    to: Option<&str>,
    primary_before: Option<&str>,
) -> Progress {
    let primary = status["primary"].as_str();
    let record = status["recoveries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["requestId"] == request_id);
    if let Some(outcome) = record.and_then(|r| r["outcome"].as_str()) {
        match outcome {
            "recovered" => {
                if let Some(p) = primary {
                    return Progress::Done { primary: p.into() };
                }
            }
            "failed" | "rolledBack" | "abandoned" => {
                return Progress::Failed {
                    outcome: outcome.into(),
                    error: record.and_then(|r| r["error"].as_str()).map(Into::into),
                };
            }
            // Still running.
            _ => return Progress::Pending,
        }
    }
    match (primary, to) {
        (Some(p), Some(to)) if p == to => Progress::Done { primary: p.into() },
        (Some(p), None) if Some(p) != primary_before => Progress::Done { primary: p.into() },
        _ => Progress::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InstanceStatus;

    #[test]
    fn switchover_patch_clears_an_earlier_target() {
        assert_eq!(
            switchover_patch("r1", Some("db-1")),
            json!({"spec": {"switchover": {"requestId": "r1", "to": "db-1"}}})
        );
        assert_eq!(
            switchover_patch("r2", None),
            json!({"spec": {"switchover": {"requestId": "r2", "to": null}}})
        );
    }

    #[test]
    fn pause_and_acknowledge_patches() {
        assert_eq!(paused_patch(true), json!({"spec": {"paused": true}}));
        assert_eq!(paused_patch(false), json!({"spec": {"paused": false}}));
        assert_eq!(
            acknowledge_patch("v"),
            json!({"metadata": {"annotations": {"korc.dev/acknowledge": "v"}}})
        );
    }

    #[test]
    fn acknowledgement_is_whole_seconds_then_user() {
        let now = Timestamp::from_millisecond(1_795_430_000_789).unwrap();
        assert_eq!(acknowledgement(now, "alice"), "2026-11-23T10:33:20Z alice");
    }

    fn status(primary: Option<&str>, names: &[&str]) -> MySQLClusterStatus {
        MySQLClusterStatus {
            primary: primary.map(Into::into),
            instances: names
                .iter()
                .map(|n| InstanceStatus {
                    name: (*n).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn switchover_target_must_be_a_replica_of_the_cluster() {
        let s = status(Some("db-0"), &["db-0", "db-1", "db-2"]);
        let cases: [(&str, Result<(), &str>); 3] = [
            ("db-1", Ok(())),
            (
                "db-7",
                Err("db-7 is not an instance of db (instances: db-0, db-1, db-2)"),
            ),
            ("db-0", Err("db-0 is already the primary of db")),
        ];
        for (to, expected) in cases {
            assert_eq!(
                check_target("db", 3, &s, to),
                expected.map_err(str::to_string),
                "{to}"
            );
        }
        // No status yet: the spec's ordinals.
        let empty = status(None, &[]);
        assert_eq!(check_target("db", 2, &empty, "db-1"), Ok(()));
        assert!(check_target("db", 2, &empty, "db-2").is_err());
    }

    #[test]
    fn switchover_progress_from_the_status() {
        let done = |p: &str| Progress::Done { primary: p.into() };
        let cases = [
            // No record: the primary decides.
            (json!({"primary": "db-0"}), Some("db-1"), Progress::Pending),
            (json!({"primary": "db-1"}), Some("db-1"), done("db-1")),
            (json!({"primary": "db-0"}), None, Progress::Pending),
            (json!({"primary": "db-2"}), None, done("db-2")),
            (json!({}), None, Progress::Pending),
            // Another request's record does not count.
            (
                json!({"primary": "db-0", "recoveries": [{"requestId": "other", "outcome": "failed"}]}),
                Some("db-1"),
                Progress::Pending,
            ),
            // This request's record decides.
            (
                json!({"primary": "db-1", "recoveries": [{"requestId": "r", "outcome": "recovered"}]}),
                Some("db-1"),
                done("db-1"),
            ),
            (
                json!({"primary": "db-0", "recoveries": [{"requestId": "r", "outcome": "rolledBack", "error": "catch-up timed out"}]}),
                Some("db-1"),
                Progress::Failed {
                    outcome: "rolledBack".into(),
                    error: Some("catch-up timed out".into()),
                },
            ),
            (
                json!({"primary": "db-0", "recoveries": [{"requestId": "r", "outcome": "failed"}]}),
                None,
                Progress::Failed {
                    outcome: "failed".into(),
                    error: None,
                },
            ),
            (
                json!({"primary": "db-1", "recoveries": [{"requestId": "r", "outcome": "running"}]}),
                Some("db-1"),
                Progress::Pending,
            ),
        ];
        for (status, to, expected) in cases {
            assert_eq!(
                progress(&status, "r", to, Some("db-0")),
                expected,
                "{status} to {to:?}"
            );
        }
    }
}
