use super::*;
use crate::api::{FailureDetectionStatus, RecoveryStatus};
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

fn hook(name: &str, command: &[&str], args: &[&str]) -> HookSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "template": {
            "metadata": {"labels": {"team": "dba"}},
            "spec": {
                "restartPolicy": "OnFailure",
                "initContainers": [{"name": "wait", "image": "busybox"}],
                "containers": [{
                    "name": "notify",
                    "image": "busybox",
                    "command": command,
                    "args": args,
                    "env": [{"name": "ORC_FAILED_HOST", "value": "mine"}, {"name": "KEEP", "value": "1"}]
                }]
            }
        }
    }))
    .unwrap()
}

fn cluster(name: &str) -> MySQLCluster {
    let mut c = MySQLCluster::new(
        name,
        serde_json::from_value(serde_json::json!({"replicas": 3, "image": "mariadb:10.11"}))
            .unwrap(),
    );
    c.metadata.namespace = Some("shop".into());
    c.metadata.uid = Some("uid-1".into());
    c
}

fn failover_event() -> HookEvent {
    HookEvent {
        failure_type: "DeadMaster".into(),
        is_master: true,
        description: "Master cannot be reached by korc and none of its replicas is replicating"
            .into(),
        failed: "db-0".into(),
        cluster: "db".into(),
        domain: "db-primary.shop.svc".into(),
        replicas: vec!["db-1".into(), "db-2".into()],
        auto_master_recovery: true,
        auto_intermediate_master_recovery: true,
        operator: "korc-abc".into(),
        recovery_uid: "0123456789ab".into(),
        ..HookEvent::default()
    }
}

#[test]
fn job_names_are_deterministic_and_fit_a_label() {
    assert_eq!(
        job_name("db", HookPoint::PreFailover, "0123456789ab", 0),
        "db-pre-failover-0123456789ab-0"
    );
    let long = "a-very-long-cluster-name-that-goes-on-and-on-for-ever";
    for point in HookPoint::ALL {
        let name = job_name(long, point, "0123456789ab", 12);
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-0123456789ab-12"), "{name}");
        assert!(!name.contains("--"), "{name}");
        assert_eq!(name, job_name(long, point, "0123456789ab", 12));
    }
    // A cut that ends on a dash does not leave one before the hook point.
    let name = job_name(
        "abcdefghijklmnopqrstuvwxyzabc-defg",
        HookPoint::PostUnsuccessfulFailover,
        "0123456789ab",
        0,
    );
    assert_eq!(
        name,
        "abcdefghijklmnopqrstuvwxyzabc-post-unsuccessful-0123456789ab-0"
    );
}

#[test]
fn every_hook_point_round_trips_its_field_name() {
    for point in HookPoint::ALL {
        assert_eq!(HookPoint::from_field(point.field()), Some(point));
    }
    assert_eq!(HookPoint::from_field("onFailreDetection"), None);
    let blocking: Vec<_> = HookPoint::ALL.into_iter().filter(|p| p.blocks()).collect();
    assert_eq!(
        blocking,
        [HookPoint::PreFailover, HookPoint::PreGracefulTakeover]
    );
}

#[test]
fn post_hooks_follow_orchestrator_per_ending() {
    use HookPoint::*;
    let cases: [(Ending, &[HookPoint]); 5] = [
        (Ending::MasterRecovered, &[PostMasterFailover, PostFailover]),
        (
            Ending::IntermediateMasterRecovered,
            &[PostIntermediateMasterFailover, PostFailover],
        ),
        (Ending::Unsuccessful, &[PostUnsuccessfulFailover]),
        (Ending::TakeoverDone, &[PostGracefulTakeover]),
        (Ending::TakeoverNotDone, &[]),
    ];
    for (ending, points) in cases {
        assert_eq!(post_points(ending), points, "{ending:?}");
    }
}

#[test]
fn entries_list_every_hook_of_the_points_in_order_pending() {
    let spec = HooksSpec {
        post_master_failover: vec![hook("dns", &["true"], &[]), hook("page", &["true"], &[])],
        post_failover: vec![hook("audit", &["true"], &[])],
        pre_failover: vec![hook("ask", &["true"], &[])],
        ..HooksSpec::default()
    };
    let e = entries(
        Some(&spec),
        post_points(Ending::MasterRecovered),
        "db",
        "r1",
    );
    let summary: Vec<_> = e
        .iter()
        .map(|h| {
            (
                h.hook.as_str(),
                h.name.as_str(),
                h.index,
                h.job.as_str(),
                h.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "postMasterFailover",
                "dns",
                0,
                "db-post-master-r1-0",
                "pending"
            ),
            (
                "postMasterFailover",
                "page",
                1,
                "db-post-master-r1-1",
                "pending"
            ),
            (
                "postFailover",
                "audit",
                0,
                "db-post-failover-r1-0",
                "pending"
            ),
        ]
    );
    assert!(entries(None, &[HookPoint::PreFailover], "db", "r1").is_empty());
}

#[test]
fn environment_is_orchestrators_with_pod_names_and_no_successor_before_there_is_one() {
    let event = failover_event();
    let env: BTreeMap<_, _> = event.environment().into_iter().collect();
    let expect = [
        ("ORC_FAILURE_TYPE", "DeadMaster"),
        ("ORC_INSTANCE_TYPE", "master"),
        ("ORC_IS_MASTER", "true"),
        ("ORC_IS_CO_MASTER", "false"),
        ("ORC_COMMAND", ""),
        ("ORC_FAILED_HOST", "db-0"),
        ("ORC_FAILED_PORT", "3306"),
        ("ORC_FAILURE_CLUSTER", "db"),
        ("ORC_FAILURE_CLUSTER_ALIAS", "db"),
        ("ORC_FAILURE_CLUSTER_DOMAIN", "db-primary.shop.svc"),
        ("ORC_COUNT_REPLICAS", "2"),
        ("ORC_IS_DOWNTIMED", "false"),
        ("ORC_AUTO_MASTER_RECOVERY", "true"),
        ("ORC_AUTO_INTERMEDIATE_MASTER_RECOVERY", "true"),
        ("ORC_ORCHESTRATOR_HOST", "korc-abc"),
        ("ORC_RECOVERY_UID", "0123456789ab"),
        ("ORC_IS_SUCCESSFUL", "false"),
        ("ORC_LOST_REPLICAS", ""),
        ("ORC_REPLICA_HOSTS", "db-1,db-2"),
    ];
    for (k, v) in expect {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert!(env.contains_key("ORC_FAILURE_DESCRIPTION"));
    assert!(!env.contains_key("ORC_SUCCESSOR_HOST"));
    assert_eq!(env.len(), expect.len() + 1);

    let done = HookEvent {
        successor: Some("db-1".into()),
        lost_replicas: vec!["db-2".into()],
        ..event
    };
    let env: BTreeMap<_, _> = done.environment().into_iter().collect();
    assert_eq!(env["ORC_SUCCESSOR_HOST"], "db-1");
    assert_eq!(env["ORC_SUCCESSOR_PORT"], "3306");
    assert_eq!(env["ORC_SUCCESSOR_ALIAS"], "db-1");
    assert_eq!(env["ORC_IS_SUCCESSFUL"], "true");
    assert_eq!(env["ORC_LOST_REPLICAS"], "db-2");
}

#[test]
fn placeholders_are_substituted_and_the_successors_only_when_there_is_one() {
    let event = failover_event();
    let text = "{failureType} on {failedHost}:{failedPort} in {failureCluster} ({countReplicas}={countSlaves} replicas: {replicaHosts}) \
                uid {recoveryUID} successful={isSuccessful} -> {successorHost}:{successorPort} lost {countLostReplicas} {unknown}";
    assert_eq!(
        event.substitute(text),
        "DeadMaster on db-0:3306 in db (2=2 replicas: db-1,db-2) uid 0123456789ab successful=false \
         -> {successorHost}:{successorPort} lost 0 {unknown}"
    );
    let done = HookEvent {
        successor: Some("db-2".into()),
        ..event
    };
    assert!(done.substitute(text).contains("-> db-2:3306 lost 0"));
}

#[test]
fn a_hook_job_is_owned_labelled_never_restarted_and_carries_the_environment() {
    let c = cluster("db");
    let h = HookSpec {
        timeout_seconds: 20,
        backoff_limit: 2,
        ..hook(
            "notify",
            &["sh", "-c", "echo {failedHost}"],
            &["--uid={recoveryUID}", "{successorHost}"],
        )
    };
    let job = job(&c, HookPoint::PreFailover, 0, &h, &failover_event());
    assert_eq!(
        job.metadata.name.as_deref(),
        Some("db-pre-failover-0123456789ab-0")
    );
    assert_eq!(job.metadata.namespace.as_deref(), Some("shop"));
    let labels = job.metadata.labels.clone().unwrap();
    assert_eq!(labels[CLUSTER_LABEL], "db");
    assert_eq!(labels[HOOK_LABEL], "preFailover");
    assert_eq!(labels[RECOVERY_LABEL], "0123456789ab");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("MySQLCluster", "db")
    );
    let spec = job.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(2));
    assert_eq!(spec.active_deadline_seconds, Some(20));
    assert_eq!(spec.ttl_seconds_after_finished, Some(JOB_TTL_SECONDS));
    let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(pod_labels["team"], "dba");
    assert_eq!(pod_labels[RECOVERY_LABEL], "0123456789ab");
    assert_eq!(pod_labels["korc.dev/client"], "db");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let main = &pod.containers[0];
    assert_eq!(main.command.as_deref().unwrap(), ["sh", "-c", "echo db-0"]);
    assert_eq!(
        main.args.as_deref().unwrap(),
        ["--uid=0123456789ab", "{successorHost}"]
    );
    let env: Vec<_> = main
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
        .collect();
    assert!(env.contains(&("KEEP", "1")));
    // korc's value wins over a template's of the same name, given once.
    assert_eq!(
        env.iter()
            .filter(|(n, _)| *n == "ORC_FAILED_HOST")
            .collect::<Vec<_>>(),
        [&("ORC_FAILED_HOST", "db-0")]
    );
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert!(
        init.env
            .iter()
            .flatten()
            .any(|e| e.name == "ORC_RECOVERY_UID")
    );
}

fn job_with(succeeded: i32, conditions: &[(&str, &str, &str)]) -> Job {
    Job {
        status: Some(JobStatus {
            succeeded: Some(succeeded),
            conditions: Some(
                conditions
                    .iter()
                    .map(|(t, reason, message)| JobCondition {
                        type_: t.to_string(),
                        status: "True".into(),
                        reason: Some(reason.to_string()),
                        message: Some(message.to_string()),
                        ..JobCondition::default()
                    })
                    .collect(),
            ),
            ..JobStatus::default()
        }),
        ..Job::default()
    }
}

#[test]
fn a_jobs_status_settles_its_hook() {
    assert_eq!(settled(&Job::default()), None);
    assert_eq!(settled(&job_with(0, &[])), None);
    assert_eq!(settled(&job_with(1, &[])), Some((SUCCEEDED, None)));
    assert_eq!(
        settled(&job_with(
            0,
            &[("SuccessCriteriaMet", "CompletionsReached", "")]
        ))
        .map(|s| s.0),
        Some(SUCCEEDED)
    );
    assert_eq!(
        settled(&job_with(0, &[("Complete", "", "")])).map(|s| s.0),
        Some(SUCCEEDED)
    );
    assert_eq!(
        settled(&job_with(
            0,
            &[(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit"
            )]
        )),
        Some((
            FAILED,
            Some("BackoffLimitExceeded: Job has reached the specified backoff limit".into())
        ))
    );
    assert_eq!(
        settled(&job_with(
            0,
            &[(
                "Failed",
                "DeadlineExceeded",
                "Job was active longer than specified deadline"
            )]
        ))
        .map(|s| s.0),
        Some(TIMED_OUT)
    );
}

#[test]
fn outcomes_are_final_except_pending_and_running() {
    for o in [PENDING, RUNNING] {
        assert!(!is_final(o));
    }
    for o in [SUCCEEDED, FAILED, TIMED_OUT, NOT_CREATED, SKIPPED] {
        assert!(is_final(o));
        assert_eq!(succeeded(o), o == SUCCEEDED);
    }
}

fn at(s: i64) -> Time {
    Time(Timestamp::from_second(s).unwrap())
}

#[test]
fn a_failure_is_detected_once_until_a_recovery_ends_after_it() {
    let mut status = MySQLClusterStatus::default();
    assert!(detection_due(&status, "db-0"));
    status.failure_detection = Some(FailureDetectionStatus {
        id: "d1".into(),
        code: "DeadMaster".into(),
        instance: "db-0".into(),
        description: String::new(),
        replicas: vec![],
        downtimed: false,
        detected_at: at(100),
        hooks: vec![],
    });
    assert!(!detection_due(&status, "db-0"), "the same failure again");
    assert!(detection_due(&status, "db-1"), "another pod's failure");
    // Its own recovery, still running, or ended before it: the same failure.
    status.recoveries.push(RecoveryStatus {
        started_at: at(50),
        ended_at: Some(at(60)),
        ..RecoveryStatus::default()
    });
    status.recoveries.push(RecoveryStatus {
        started_at: at(101),
        ..RecoveryStatus::default()
    });
    assert!(!detection_due(&status, "db-0"));
    // A recovery (or switchover) that ended since: the pod failed anew.
    status.recoveries[1].ended_at = Some(at(102));
    assert!(detection_due(&status, "db-0"));
}

fn pod(phase: &str, exit: Option<i32>) -> Pod {
    serde_json::from_value(serde_json::json!({
        "status": {
            "phase": phase,
            "containerStatuses": exit.map(|code| vec![serde_json::json!({
                "name": "hook", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": "Error"}}
            })]).unwrap_or_default()
        }
    }))
    .unwrap()
}

#[test]
fn a_jobs_pods_settle_its_hook_before_the_job_controller_does() {
    assert_eq!(settled_by_pods(&[], 0), None);
    assert_eq!(settled_by_pods(&[pod("Running", None)], 0), None);
    assert_eq!(
        settled_by_pods(&[pod("Failed", Some(3)), pod("Succeeded", Some(0))], 2),
        Some((SUCCEEDED, None))
    );
    assert_eq!(
        settled_by_pods(&[pod("Failed", Some(3))], 0),
        Some((
            FAILED,
            Some("container hook exited with code 3 (Error)".into())
        ))
    );
    // Retries left: not yet failed.
    assert_eq!(settled_by_pods(&[pod("Failed", Some(3))], 1), None);
    assert_eq!(
        settled_by_pods(&[pod("Failed", Some(3)), pod("Failed", Some(4))], 1).map(|s| s.0),
        Some(FAILED)
    );
}
