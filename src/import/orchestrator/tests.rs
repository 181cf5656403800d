//! Imports of sample orchestrator configurations: orchestrator's own documented sample
//! (restated with the same settings and values), a raft deployment on Kubernetes, and
//! one with legacy names, other spellings and a setting that does not exist.

use super::*;
use crate::api::MySQLCluster;

fn fixture(name: &str) -> Value {
    let path = format!("{}/src/import/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn options() -> Options {
    Options {
        name: "db".into(),
        namespace: None,
        image: "mysql:8.4".into(),
        replicas: 3,
        cluster_alias: None,
        hooks: false,
        hook_image: "bash:5.2".into(),
        pods: Vec::new(),
        promotion_rules: Vec::new(),
    }
}

fn carried<'a>(i: &'a Imported, setting: &str) -> &'a str {
    &i.carried
        .iter()
        .find(|c| c.setting == setting)
        .unwrap_or_else(|| panic!("{setting} not carried: {:#?}", i.carried))
        .to
}

fn left<'a>(i: &'a Imported, setting: &str) -> &'a str {
    &i.left
        .iter()
        .find(|l| l.setting == setting)
        .unwrap_or_else(|| panic!("{setting} not left: {:#?}", i.left))
        .why
}

fn command(h: &HookSpec) -> Vec<String> {
    h.template.spec.as_ref().unwrap().containers[0]
        .command
        .clone()
        .unwrap()
}

#[test]
fn orchestrators_sample_configuration() {
    let config = fixture("orchestrator-sample.conf.json");
    let i = import(&config, &options()).unwrap();
    let r = &i.recovery;
    assert_eq!(r.block_period_seconds, 3600);
    assert_eq!(r.reasonable_replication_lag_seconds, 10);
    assert!(r.apply_promotion && r.detach_lost_replicas);
    assert!(!r.prevent_cross_data_center_failover && !r.prevent_cross_region_failover);
    assert_eq!(r.fail_promotion_on_lag_seconds, None);
    assert_eq!(r.sql_thread_not_up_to_date, SqlThreadNotUpToDate::Delay);
    // The sample's filters are placeholders that match no cluster: orchestrator
    // recovers nothing automatically with them, and neither does the import.
    assert!(!r.automatic_master_recovery && !r.automatic_intermediate_master_recovery);
    assert_eq!(
        carried(&i, "RecoverMasterClusterFilters"),
        "spec.recovery.automaticMasterRecovery: false (it does not match the cluster alias db)"
    );
    assert!(
        i.differences
            .iter()
            .any(|d| d.contains("sqlThreadNotUpToDate: Promote"))
    );
    assert!(i.hooks.is_none());
    assert_eq!(
        left(&i, "PostFailoverProcesses"),
        "a hook: korc imports hooks with --hooks"
    );
    // Every setting of the sample is either carried over or left with a reason of
    // its own.
    let settings = config.as_object().unwrap();
    for key in settings.keys() {
        let taken = i.carried.iter().any(|c| &c.setting == key);
        let reason = i
            .left
            .iter()
            .find(|l| &l.setting == key)
            .map(|l| l.why.as_str());
        assert!(
            taken ^ reason.is_some(),
            "{key}: carried {taken}, left {reason:?}"
        );
        assert_ne!(
            reason,
            Some("not an orchestrator setting korc knows"),
            "{key}"
        );
    }
    let password = i
        .left
        .iter()
        .find(|l| l.setting == "MySQLTopologyPassword")
        .unwrap();
    assert_eq!(password.value, "(hidden)", "credentials are not printed");
    assert!(!i.to_yaml(false).contains("orc_client_password"));
    assert_eq!(
        left(&i, "MySQLOrchestratorHost"),
        "orchestrator's backend database: korc keeps its state in the MySQLCluster's status"
    );
    assert_eq!(
        left(&i, "DataCenterPattern"),
        "korc takes each pod's zone from its node's topology.kubernetes.io/zone label"
    );
    assert_eq!(
        left(&i, "RemoveTextFromHostnameDisplay"),
        "korc names instances by pod; pods have stable names"
    );
}

#[test]
fn the_samples_filters_match_a_cluster_of_that_alias() {
    let config = fixture("orchestrator-sample.conf.json");
    let i = import(
        &config,
        &Options {
            cluster_alias: Some("_master_pattern_".into()),
            ..options()
        },
    )
    .unwrap();
    assert!(i.recovery.automatic_master_recovery);
    assert!(!i.recovery.automatic_intermediate_master_recovery);
}

#[test]
fn the_samples_hooks_become_jobs_with_their_placeholders() {
    let i = import(
        &fixture("orchestrator-sample.conf.json"),
        &Options {
            hooks: true,
            ..options()
        },
    )
    .unwrap();
    let hooks = i.hooks.as_ref().unwrap();
    let counts = [
        hooks.on_failure_detection.len(),
        hooks.pre_graceful_takeover.len(),
        hooks.pre_failover.len(),
        hooks.post_master_failover.len(),
        hooks.post_intermediate_master_failover.len(),
        hooks.post_failover.len(),
        hooks.post_unsuccessful_failover.len(),
        hooks.post_graceful_takeover.len(),
    ];
    assert_eq!(counts, [1, 1, 1, 1, 1, 1, 0, 1]);
    let detection = &hooks.on_failure_detection[0];
    assert_eq!(detection.name, "echo-1");
    assert_eq!(detection.timeout_seconds, 300);
    assert_eq!(
        command(detection),
        [
            "bash",
            "-c",
            "echo 'Detected {failureType} on {failureCluster}. Affected replicas: {countSlaves}' >> /tmp/recovery.log"
        ]
    );
    let container = &detection.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("bash:5.2"));
    assert_eq!(
        carried(&i, "PostMasterFailoverProcesses"),
        "spec.hooks.postMasterFailover"
    );
    // Every placeholder the sample uses has a value in korc.
    assert!(
        !i.differences.iter().any(|d| d.contains("has no value")),
        "{:#?}",
        i.differences
    );
}

#[test]
fn a_raft_deployment_with_hooks_candidates_and_kubernetes_names() {
    let i = import(
        &fixture("raft-on-kubernetes.conf.json"),
        &Options {
            hooks: true,
            hook_image: "registry.example/ops-tools:3".into(),
            pods: vec![
                ("mysql-a.prod.example".into(), "db-0".into()),
                ("mysql-b.prod.example".into(), "db-1".into()),
                ("mysql-c-backup-.prod.example".into(), "db-2".into()),
            ],
            promotion_rules: vec![
                ("mysql-b.prod.example".into(), PromotionRule::Prefer),
                ("db-0".into(), PromotionRule::PreferNot),
            ],
            ..options()
        },
    )
    .unwrap();
    let r = &i.recovery;
    assert_eq!(r.block_period_seconds, 600);
    assert!(r.automatic_master_recovery && r.automatic_intermediate_master_recovery);
    assert_eq!(r.sql_thread_not_up_to_date, SqlThreadNotUpToDate::Fail);
    assert_eq!(r.fail_promotion_on_lag_seconds, Some(120));
    assert!(r.prevent_cross_data_center_failover);
    assert_eq!(r.reasonable_replication_lag_seconds, 5);
    // DetachLostReplicasAfterMasterFailover: false is overridden by the legacy name's
    // default, as in orchestrator.
    assert!(r.detach_lost_replicas);
    assert!(
        i.differences
            .iter()
            .any(|d| d.starts_with("DetachLostReplicasAfterMasterFailover is false"))
    );
    let rules: Vec<(&str, PromotionRule)> = i
        .instances
        .iter()
        .map(|(pod, spec)| (pod.as_str(), spec.promotion_rule))
        .collect();
    assert_eq!(
        rules,
        [
            ("db-0", PromotionRule::PreferNot),
            ("db-1", PromotionRule::Prefer),
            ("db-2", PromotionRule::MustNot)
        ]
    );
    let hooks = i.hooks.as_ref().unwrap();
    assert_eq!(
        command(&hooks.on_failure_detection[0]),
        [
            "sh",
            "-c",
            "/usr/local/bin/page-oncall --cluster {failureClusterAlias} --code {failureType}"
        ]
    );
    assert_eq!(hooks.on_failure_detection[0].name, "page-oncall-1");
    assert_eq!(hooks.pre_failover[0].name, "proxysql-drain-1");
    for expected in [
        "OnFailureDetectionProcesses[0] ends in `&`",
        "PostMasterFailoverProcesses[0]: korc has no value for {successorBinlogCoordinates}",
        "FailMasterPromotionOnLagMinutes: orchestrator measures lag with ReplicationLagQuery",
    ] {
        assert!(
            i.differences.iter().any(|d| d.starts_with(expected)),
            "{expected}: {:#?}",
            i.differences
        );
    }
    for (setting, why) in [
        ("RaftEnabled", "orchestrator's own high availability"),
        ("SQLite3DataFile", "orchestrator's backend database"),
        (
            "KVClusterMasterPrefix",
            "a key-value store for the master's address",
        ),
        (
            "PostTakeMasterProcesses",
            "korc has no take-master operation",
        ),
        (
            "RecoverLockedSemiSyncMaster",
            "not configurable on a MySQLCluster yet",
        ),
        ("ReplicationLagQuery", "korc reads Seconds_Behind_Master"),
        ("DetectDataCenterQuery", "korc takes each pod's zone"),
        ("DiscoveryMaxConcurrency", "korc knows its instances"),
        ("WebMessage", "orchestrator's HTTP API"),
    ] {
        assert!(
            left(&i, setting).starts_with(why),
            "{setting}: {}",
            left(&i, setting)
        );
    }
}

#[test]
fn legacy_names_other_spellings_and_unknown_settings() {
    let i = import(
        &fixture("legacy-names.conf.json"),
        &Options {
            name: "orders-db".into(),
            cluster_alias: Some("orders".into()),
            ..options()
        },
    )
    .unwrap();
    let r = &i.recovery;
    // Seconds 0: orchestrator takes the legacy minutes.
    assert_eq!(r.block_period_seconds, 1800);
    assert_eq!(
        left(&i, "recoveryperiodblockseconds"),
        "0: orchestrator takes RecoveryPeriodBlockMinutes"
    );
    assert!(r.automatic_master_recovery, "alias=orders");
    assert!(r.automatic_intermediate_master_recovery, "alias~=^ord");
    assert_eq!(r.sql_thread_not_up_to_date, SqlThreadNotUpToDate::Delay);
    assert!(r.prevent_cross_region_failover);
    assert_eq!(r.reasonable_replication_lag_seconds, 30);
    // The legacy name set to false turns detaching off, whatever the new one says.
    assert!(!r.detach_lost_replicas);
    assert_eq!(
        left(&i, "NotAnOrchestratorSetting"),
        "not an orchestrator setting korc knows"
    );
    assert_eq!(
        left(&i, "MaintenanceOwner"),
        "korc has no maintenance locks; spec.paused stops it acting on a cluster"
    );
}

#[test]
fn the_seconds_win_over_the_legacy_minutes_unless_they_are_zero() {
    for (config, block) in [
        (json!({"RecoveryPeriodBlockMinutes": 30}), 3600),
        (
            json!({"RecoveryPeriodBlockSeconds": 60, "RecoveryPeriodBlockMinutes": 30}),
            60,
        ),
        (
            json!({"RecoveryPeriodBlockSeconds": 0, "RecoveryPeriodBlockMinutes": 30}),
            1800,
        ),
        (json!({"RecoveryPeriodBlockSeconds": 0}), 0),
        (json!({}), 3600),
    ] {
        let i = import(&config, &options()).unwrap();
        assert_eq!(i.recovery.block_period_seconds, block, "{config}");
    }
}

#[test]
fn configurations_orchestrator_would_refuse_are_refused_or_reported() {
    assert_eq!(
        import(&json!([1]), &options()),
        Err(ImportError::NotAnObject)
    );
    assert_eq!(
        import(&json!({"RecoveryPeriodBlockSeconds": "1h"}), &options()),
        Err(ImportError::WrongType {
            setting: "RecoveryPeriodBlockSeconds".into(),
            expected: "a whole number, 0 or more",
            found: "\"1h\"".into(),
        })
    );
    assert!(matches!(
        import(
            &json!({"RecoverMasterClusterFilters": ["(unclosed"]}),
            &options()
        ),
        Err(ImportError::BadFilter { .. })
    ));
    let both = json!({
        "FailMasterPromotionIfSQLThreadNotUpToDate": true,
        "DelayMasterPromotionIfSQLThreadNotUpToDate": true,
    });
    let i = import(&both, &options()).unwrap();
    assert_eq!(
        i.recovery.sql_thread_not_up_to_date,
        SqlThreadNotUpToDate::Delay
    );
    assert!(
        left(&i, "FailMasterPromotionIfSQLThreadNotUpToDate")
            .ends_with("orchestrator refuses both")
    );
}

#[test]
fn the_printed_cluster_is_a_valid_mysqlcluster_with_the_reasons_as_comments() {
    let i = import(
        &fixture("raft-on-kubernetes.conf.json"),
        &Options {
            namespace: Some("shop".into()),
            hooks: true,
            ..options()
        },
    )
    .unwrap();
    let yaml = i.to_yaml(false);
    let cluster: MySQLCluster = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(cluster.metadata.name.as_deref(), Some("db"));
    assert_eq!(cluster.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(cluster.spec.replicas, 3);
    assert_eq!(cluster.spec.image, "mysql:8.4");
    assert_eq!(cluster.spec.recovery, i.recovery);
    assert_eq!(cluster.spec.hooks, i.hooks);
    for l in &i.left {
        assert!(
            yaml.contains(&format!("#   {} = {}: {}\n", l.setting, l.value, l.why)),
            "{} missing from\n{yaml}",
            l.setting
        );
    }
    assert!(
        yaml.contains(
            "#   RecoveryPeriodBlockSeconds = 600 -> spec.recovery.blockPeriodSeconds: 600\n"
        ),
        "{yaml}"
    );

    let patch = i.to_yaml(true);
    assert!(
        patch.starts_with("# A merge patch of MySQLCluster db's spec"),
        "{patch}"
    );
    let value: Value = serde_saphyr::from_str(&patch).unwrap();
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["spec"]);
    let spec: Vec<&String> = value["spec"].as_object().unwrap().keys().collect();
    assert_eq!(spec, ["hooks", "recovery"]);
    let recovery: RecoverySpec = serde_json::from_value(value["spec"]["recovery"].clone()).unwrap();
    assert_eq!(recovery, i.recovery);
}

#[test]
fn every_unmapped_setting_gets_a_reason() {
    let reasons = [
        ("RaftNodes", "orchestrator's own high availability"),
        ("MySQLTopologyPassword", "korc creates its own accounts"),
        ("ConsulAclToken", "a key-value store"),
        ("PseudoGTIDPattern", "Pseudo-GTID"),
        ("HTTPAuthPassword", "orchestrator's HTTP API"),
        (
            "InstancePollSeconds",
            "korc probes every spec.probeIntervalMs",
        ),
        (
            "PostponeReplicaRecoveryOnLagMinutes",
            "korc repoints every replica",
        ),
        ("DetectRegionQuery", "korc takes each pod's zone"),
        (
            "RecoveryIgnoreHostnameFilters",
            "korc may recover every pod",
        ),
        (
            "PostFailoverProcesses",
            "a hook: korc imports hooks with --hooks",
        ),
    ];
    for (setting, why) in reasons {
        assert!(
            why_not(setting, false).starts_with(why),
            "{setting}: {}",
            why_not(setting, false)
        );
    }
}
