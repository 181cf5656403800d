use super::*;

/// Pods db-0..db-n with these revisions (`None`: the label is missing) and readiness.
fn members(pods: &[(Option<&str>, bool)]) -> Vec<Member> {
    pods.iter()
        .enumerate()
        .map(|(i, (revision, ready))| Member {
            revision: revision.map(str::to_string),
            ready: *ready,
            rebuild: false,
            ..Member::numbered(i)
        })
        .collect()
}

fn takeover(request_id: &str, outcome: &str) -> RecoveryStatus {
    serde_json::from_value(serde_json::json!({
        "id": "r1",
        "kind": "GracefulTakeover",
        "failed": "db-0",
        "outcome": outcome,
        "leader": "korc-0",
        "startedAt": "2026-11-29T10:00:00Z",
        "requestId": request_id,
    }))
    .unwrap()
}

/// (case, pods' revision and readiness, primary, recoveries, healthy, expected)
type Case = (
    &'static str,
    Vec<(Option<&'static str>, bool)>,
    &'static str,
    Vec<RecoveryStatus>,
    bool,
    Rollout,
);

const OLD: Option<&str> = Some("v1");
const NEW: Option<&str> = Some("v2");

#[test]
fn rollout_steps() {
    let restart = |p: &str| Rollout::Restart(p.into());
    let switch = Rollout::SwitchOver {
        request_id: "rollout-v2".into(),
    };
    let cases: Vec<Case> = vec![
        (
            "all current",
            vec![(NEW, true), (NEW, true), (NEW, true)],
            "db-0",
            vec![],
            true,
            Rollout::Current,
        ),
        (
            "replicas first, highest ordinal first",
            vec![(OLD, true), (OLD, true), (OLD, true)],
            "db-1",
            vec![],
            true,
            restart("db-2"),
        ),
        (
            "the primary is skipped while a replica is outdated",
            vec![(OLD, true), (NEW, true), (OLD, true)],
            "db-2",
            vec![],
            true,
            restart("db-0"),
        ),
        (
            "only the primary outdated: switch over first",
            vec![(NEW, true), (OLD, true), (NEW, true)],
            "db-1",
            vec![],
            true,
            switch.clone(),
        ),
        (
            "after the switchover the old primary is a replica and restarts",
            vec![(NEW, true), (OLD, true), (NEW, true)],
            "db-2",
            vec![takeover("rollout-v2", "recovered")],
            true,
            restart("db-1"),
        ),
        (
            "a pod not ready holds the rollout",
            vec![(NEW, true), (OLD, true), (NEW, false)],
            "db-0",
            vec![],
            true,
            Rollout::Wait("db-2 is not ready".into()),
        ),
        (
            "a pod without a revision yet is outdated and waited for",
            vec![(NEW, true), (None, false), (OLD, true)],
            "db-0",
            vec![],
            true,
            Rollout::Wait("db-1 is not ready".into()),
        ),
        (
            "an unhealthy cluster holds the rollout",
            vec![(OLD, true), (OLD, true), (OLD, true)],
            "db-0",
            vec![],
            false,
            Rollout::Wait("the cluster is not healthy".into()),
        ),
        (
            "a single instance is restarted: nothing to switch over to",
            vec![(OLD, true)],
            "db-0",
            vec![],
            true,
            restart("db-0"),
        ),
        (
            "a rolled-back rollout switchover leaves the primary alone",
            vec![(NEW, true), (OLD, true), (NEW, true)],
            "db-1",
            vec![takeover("rollout-v2", "rolledBack")],
            true,
            Rollout::Stuck(
                "the switchover rollout-v2 ended rolledBack: db-1 keeps its revision until it \
                 is restarted or switched over (spec.switchover)"
                    .into(),
            ),
        ),
        (
            "an older revision's switchover does not count",
            vec![(NEW, true), (OLD, true), (NEW, true)],
            "db-1",
            vec![takeover("rollout-v0", "rolledBack")],
            true,
            switch.clone(),
        ),
        (
            "a failed switchover followed by other records is tried again",
            vec![(NEW, true), (OLD, true), (NEW, true)],
            "db-1",
            vec![
                takeover("rollout-v2", "failed"),
                takeover("user-1", "recovered"),
            ],
            true,
            switch,
        ),
    ];
    for (case, pods, primary, recoveries, healthy, expected) in cases {
        let m = members(&pods);
        assert_eq!(
            next(&m, Some("v2"), Some(primary), &recoveries, healthy),
            expected,
            "{case}"
        );
    }
}

#[test]
fn without_an_update_revision_nothing_rolls() {
    let m = members(&[(OLD, true), (OLD, false)]);
    assert_eq!(next(&m, None, Some("db-0"), &[], false), Rollout::Current);
}
