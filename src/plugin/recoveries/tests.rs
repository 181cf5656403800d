use super::*;

#[test]
fn a_recovery_shows_its_outcome_steps_and_hooks_newest_first() {
    let status: MySQLClusterStatus = serde_json::from_value(serde_json::json!({
        "recoveries": [
            {"id": "old", "kind": "GracefulTakeover", "failed": "db-1", "outcome": "failed",
             "leader": "korc-a", "startedAt": "2026-11-30T00:00:00Z",
             "error": "switchover cancelled: preGracefulTakeover hook drain (Job db-pre-takeover-old-0) failed"},
            {"id": "r2", "kind": "DeadMaster", "analysisCode": "DeadMaster", "failed": "db-0",
             "successor": "db-2", "outcome": "recovered", "leader": "korc-b",
             "startedAt": "2026-11-30T00:01:00Z", "endedAt": "2026-11-30T00:01:01Z",
             "writableAfterMs": 310, "lostReplicas": [],
             "steps": [{"kind": "promote", "instance": "db-2", "durationMs": "4.200", "ok": true}],
             "hooks": [
                {"hook": "preFailover", "name": "ask", "index": 0, "job": "db-pre-failover-r2-0",
                 "outcome": "succeeded", "startedAt": "2026-11-30T00:01:00.000000Z",
                 "endedAt": "2026-11-30T00:01:00.250000Z"},
                {"hook": "postFailover", "name": "audit", "index": 0, "job": "db-post-failover-r2-0",
                 "outcome": "running", "startedAt": "2026-11-30T00:01:01.000000Z"}
             ]}
        ],
        "failureDetection": {"id": "d1", "code": "DeadMaster", "instance": "db-0", "description": "",
            "detectedAt": "2026-11-30T00:00:59Z",
            "hooks": [{"hook": "onFailureDetection", "name": "page", "index": 0,
                       "job": "db-detect-d1-0", "outcome": "failed", "message": "container hook exited with code 1 (Error)"}]}
    }))
    .unwrap();
    assert_eq!(
        render(&status, 10),
        "recovery r2: DeadMaster (DeadMaster) of db-0 -> db-2: recovered\n\
         \x20 by korc-b, started 2026-11-30T00:01:00Z, ended 2026-11-30T00:01:01Z, writable after 310 ms\n\
         \x20 step promote                  db-2              4.200 ms  ok\n\
         \x20 hook preFailover ask (Job db-pre-failover-r2-0): succeeded in 0.25 s\n\
         \x20 hook postFailover audit (Job db-post-failover-r2-0): running\n\
         recovery old: GracefulTakeover of db-1: failed\n\
         \x20 by korc-a, started 2026-11-30T00:00:00Z\n\
         \x20 error: switchover cancelled: preGracefulTakeover hook drain (Job db-pre-takeover-old-0) failed\n\
         failure detection d1: DeadMaster of db-0, detected 2026-11-30T00:00:59Z\n\
         \x20 hook onFailureDetection page (Job db-detect-d1-0): failed: container hook exited with code 1 (Error)\n"
    );
    assert!(render(&status, 1).starts_with("recovery r2:"));
    assert!(!render(&status, 1).contains("recovery old"));
    assert_eq!(render(&MySQLClusterStatus::default(), 5), "no recoveries\n");
}
