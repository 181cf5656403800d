use super::*;
use serde_json::json;

/// A status as the operator writes it; `instances` are (name, role, source, extra fields).
fn status(
    primary: &str,
    instances: serde_json::Value,
    analysis: serde_json::Value,
) -> MySQLClusterStatus {
    serde_json::from_value(json!({
        "primary": primary,
        "ready": "3/3",
        "analysisCode": analysis.as_array().and_then(|a| a.first()).map_or(json!("NoProblem"), |a| a["code"].clone()),
        "instances": instances,
        "analysis": analysis,
        "conditions": [],
    }))
    .unwrap()
}

fn primary(name: &str) -> serde_json::Value {
    json!({"name": name, "role": "primary", "reachable": true, "readOnly": false,
        "gtidPosition": "0-1-12", "promotionRule": "neutral"})
}

fn replica(name: &str, source: &str) -> serde_json::Value {
    json!({"name": name, "role": "replica", "reachable": true, "readOnly": true,
        "gtidPosition": "0-1-12", "source": source, "ioThread": "Yes", "sqlThread": "Yes",
        "lagSeconds": 0, "promotionRule": "neutral"})
}

fn names(nodes: &[Node]) -> Vec<(String, Vec<String>)> {
    nodes
        .iter()
        .map(|n| {
            (
                n.instance.name.clone(),
                n.replicas.iter().map(|r| r.instance.name.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn replicas_are_drawn_under_the_primary() {
    let s = status(
        "db-0",
        json!([
            replica("db-1", "db-0"),
            primary("db-0"),
            replica("db-2", "db-0")
        ]),
        json!([{"code": "NoProblem", "instance": "db-0", "description": "", "actionable": false, "evidence": {}}]),
    );
    let t = Topology::build("shop", "db", false, &s);
    assert_eq!(
        names(&t.topology),
        vec![("db-0".into(), vec!["db-1".into(), "db-2".into()])]
    );
    assert_eq!(
        t.render(),
        "shop/db: primary db-0, analysis NoProblem, ready 3/3\n\
         db-0  [primary, gtid 0-1-12, rw, reachable]\n\
         + db-1  [replica, gtid 0-1-12, lag 0s, io Yes, sql Yes, ro, reachable]\n\
         + db-2  [replica, gtid 0-1-12, lag 0s, io Yes, sql Yes, ro, reachable]\n"
    );
}

#[test]
fn an_intermediate_master_carries_its_own_replicas() {
    let mut im = replica("db-1", "db-0");
    im["lagSeconds"] = json!(null);
    im["ioThread"] = json!("Connecting");
    im["lastIoError"] = json!("error connecting to master");
    let s = status(
        "db-0",
        json!([
            primary("db-0"),
            im,
            replica("db-2", "db-1"),
            replica("db-3", "db-1"),
            replica("db-4", "db-0")
        ]),
        json!([{"code": "FirstTierReplicaFailingToConnectToMaster", "instance": "db-1", "description": "", "actionable": false, "evidence": {}}]),
    );
    let t = Topology::build("shop", "db", false, &s);
    assert_eq!(t.topology.len(), 1);
    let root = &t.topology[0];
    assert_eq!(
        names(&root.replicas),
        vec![
            ("db-1".into(), vec!["db-2".into(), "db-3".into()]),
            ("db-4".into(), vec![])
        ]
    );
    assert_eq!(
        t.render(),
        "shop/db: primary db-0, analysis FirstTierReplicaFailingToConnectToMaster, ready 3/3\n\
         db-0  [primary, gtid 0-1-12, rw, reachable]\n\
         + db-1  [replica, gtid 0-1-12, lag ?, io Connecting, sql Yes, ro, reachable]  FirstTierReplicaFailingToConnectToMaster  io error: error connecting to master\n\
         \x20 + db-2  [replica, gtid 0-1-12, lag 0s, io Yes, sql Yes, ro, reachable]\n\
         \x20 + db-3  [replica, gtid 0-1-12, lag 0s, io Yes, sql Yes, ro, reachable]\n\
         + db-4  [replica, gtid 0-1-12, lag 0s, io Yes, sql Yes, ro, reachable]\n"
    );
}

#[test]
fn an_unreachable_primary_keeps_its_replicas_and_shows_the_analysis() {
    let mut dead = primary("db-0");
    dead["reachable"] = json!(false);
    dead["error"] = json!("cannot connect to 127.0.0.1:3306: connection refused");
    let mut r1 = replica("db-1", "db-0");
    r1["ioThread"] = json!("Connecting");
    let mut r2 = replica("db-2", "db-0");
    r2["ioThread"] = json!("Connecting");
    let s = status(
        "db-0",
        json!([dead, r1, r2]),
        json!([{"code": "DeadMaster", "instance": "db-0", "description": "", "actionable": true, "evidence": {"replicas": 2}}]),
    );
    let t = Topology::build("shop", "db", false, &s);
    assert_eq!(
        names(&t.topology),
        vec![("db-0".into(), vec!["db-1".into(), "db-2".into()])]
    );
    let text = t.render();
    assert!(
        text.starts_with("shop/db: primary db-0, analysis DeadMaster,"),
        "{text}"
    );
    assert!(
        text.contains(
            "db-0  [primary, gtid 0-1-12, rw, unreachable]  DeadMaster  error: cannot connect"
        ),
        "{text}"
    );
    assert!(
        text.contains("+ db-1  [replica, gtid 0-1-12, lag 0s, io Connecting"),
        "{text}"
    );
}

#[test]
fn a_held_out_instance_is_drawn_with_its_reason() {
    let mut held = replica("db-2", "db-0");
    held["role"] = json!("excluded");
    held["error"] = json!("errant GTIDs 0-3-1");
    // An old primary held out replicates from nothing: it is a tree of its own.
    let mut old = primary("db-3");
    old["role"] = json!("excluded");
    old["readOnly"] = json!(null);
    let s = status(
        "db-0",
        json!([primary("db-0"), replica("db-1", "db-0"), held, old]),
        json!([{"code": "ErrantGTIDDetected", "instance": "db-2", "description": "", "actionable": false,
                "evidence": {}, "errantGtids": "0-3-1"}]),
    );
    let t = Topology::build("shop", "db", false, &s);
    assert_eq!(
        names(&t.topology),
        vec![
            ("db-0".into(), vec!["db-1".into(), "db-2".into()]),
            ("db-3".into(), vec![])
        ]
    );
    let text = t.render();
    assert!(
        text.contains("+ db-2  [excluded, gtid 0-1-12, lag 0s, io Yes, sql Yes, ro, reachable]  ErrantGTIDDetected  error: errant GTIDs 0-3-1\n"),
        "{text}"
    );
    assert!(
        text.contains("\ndb-3  [excluded, gtid 0-1-12, ro ?, reachable]\n"),
        "{text}"
    );
}

#[test]
fn the_primary_heads_the_list_and_a_ring_is_drawn_once() {
    // Co-masters replicate from each other; db-2 is listed first but is not primary.
    let s = status(
        "db-1",
        json!([
            replica("db-2", "db-9"),
            replica("db-0", "db-1"),
            replica("db-1", "db-0")
        ]),
        json!([{"code": "NoProblem", "instance": "db-9", "description": "", "actionable": false, "evidence": {}},
               {"code": "UnreachableMaster", "instance": "db-9", "description": "", "actionable": false, "evidence": {}}]),
    );
    let t = Topology::build("shop", "db", false, &s);
    // db-2's source is outside the cluster, so db-2 is a root; db-0 and db-1 form a
    // ring with no root and are drawn from the first listed.
    assert_eq!(
        names(&t.topology),
        vec![
            ("db-2".into(), vec![]),
            ("db-0".into(), vec!["db-1".into()])
        ]
    );
    assert_eq!(
        t.other_analysis,
        vec![Stray {
            code: "UnreachableMaster".into(),
            instance: "db-9".into()
        }]
    );
    assert!(t.render().contains("analysis UnreachableMaster on db-9\n"));
}

#[test]
fn paused_cluster_says_so_and_why_recovery_is_blocked() {
    let mut s = status("db-0", json!([primary("db-0")]), json!([]));
    s.conditions = serde_json::from_value(json!([
        {"type": "RecoveryBlocked", "status": "True", "reason": "Paused",
         "message": "spec.paused is set", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Recovering", "status": "False", "reason": "NoRecovery",
         "message": "no recovery is running", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]))
    .unwrap();
    let text = Topology::build("shop", "db", true, &s).render();
    assert!(
        text.starts_with("shop/db: primary db-0, analysis NoProblem, ready 3/3, paused\nrecovery blocked: Paused: spec.paused is set\n"),
        "{text}"
    );
}

#[test]
fn a_status_with_fields_korc_does_not_know_yet_is_read() {
    let s: MySQLClusterStatus = serde_json::from_value(json!({
        "primary": "db-0",
        "instances": [primary("db-0"), {"name": "db-1", "role": "replica", "reachable": true,
            "promotionRule": "prefer", "source": "db-0", "rebuildProgress": 0.5}],
        "switchovers": [{"requestId": "r", "outcome": "recovered"}],
        "hooks": [{"id": "x"}],
    }))
    .unwrap();
    let t = Topology::build("shop", "db", false, &s);
    assert_eq!(
        names(&t.topology),
        vec![("db-0".into(), vec!["db-1".into()])]
    );
    assert!(
        t.render()
            .contains("+ db-1  [replica, gtid ?, ro ?, reachable]\n")
    );
}

#[test]
fn no_status_yet() {
    let t = Topology::build("shop", "db", false, &MySQLClusterStatus::default());
    assert_eq!(
        t.render(),
        "shop/db: primary none, analysis unknown, ready ?\nno instances reported yet\n"
    );
}

#[test]
fn json_nests_replicas_and_flattens_the_instance() {
    let s = status(
        "db-0",
        json!([primary("db-0"), replica("db-1", "db-0")]),
        json!([{"code": "ReplicationStopped", "instance": "db-1", "description": "", "actionable": false, "evidence": {}}]),
    );
    let v = serde_json::to_value(Topology::build("shop", "db", false, &s)).unwrap();
    assert_eq!(v["namespace"], "shop");
    assert_eq!(v["cluster"], "db");
    assert_eq!(v["primary"], "db-0");
    assert_eq!(v["paused"], false);
    assert_eq!(v["topology"][0]["name"], "db-0");
    assert_eq!(v["topology"][0]["role"], "primary");
    assert_eq!(v["topology"][0]["replicas"][0]["name"], "db-1");
    assert_eq!(v["topology"][0]["replicas"][0]["gtidPosition"], "0-1-12");
    assert_eq!(
        v["topology"][0]["replicas"][0]["analysis"],
        json!(["ReplicationStopped"])
    );
    assert_eq!(v["topology"][0]["replicas"][0]["replicas"], json!([]));
}
