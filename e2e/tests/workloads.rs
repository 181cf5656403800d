//! Pods as real processes: MariaDB StatefulSets, a MySQL pod, Jobs, restarts, deletion and
//! lost nodes, through the real scheduler and controllers.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use korc_e2e::{ContainerRef, ControlPlane, ControlPlaneConfig, Fault};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use mysql_async::prelude::Queryable;
use serde_json::json;

use common::{alive, create, is_ready, logged_pid, namespace, phase, restarts, shared, wait_for};

#[tokio::test]
async fn mariadb_statefulset_becomes_ready_in_order_with_endpoints() {
    let cp = shared().await;
    let client = cp.client().await.expect("client");
    let ns = "mariadb";
    namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    create(&cms, json!({
        "metadata": { "name": "db-config" },
        "data": { "korc.cnf": "[mariadbd]\nlog_bin=mysql-bin\nbinlog_format=ROW\nmax_connections=77\n" },
    }))
    .await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    create(&services, json!({
        "metadata": { "name": "db" },
        "spec": { "clusterIP": "None", "selector": { "app": "db" }, "ports": [{ "name": "mysql", "port": 3306 }] },
    }))
    .await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    create(&sets, json!({
        "metadata": { "name": "db" },
        "spec": {
            "serviceName": "db",
            "replicas": 3,
            "podManagementPolicy": "OrderedReady",
            "selector": { "matchLabels": { "app": "db" } },
            "template": {
                "metadata": { "labels": { "app": "db" } },
                "spec": {
                    "containers": [{
                        "name": "mariadb",
                        "image": "mariadb:10.11",
                        // server_id from the ordinal, as an operator's entrypoint would do it.
                        "command": ["sh", "-c", "exec docker-entrypoint.sh mariadbd --server-id=$((100 + ${HOSTNAME##*-}))"],
                        "env": [{ "name": "MARIADB_ROOT_PASSWORD", "value": "rootpw" }],
                        "ports": [{ "name": "mysql", "containerPort": 3306 }],
                        "readinessProbe": { "tcpSocket": { "port": "mysql" }, "periodSeconds": 1 },
                        "volumeMounts": [
                            { "name": "data", "mountPath": "/var/lib/mysql" },
                            { "name": "config", "mountPath": "/etc/mysql/conf.d" },
                        ],
                    }],
                    "volumes": [{ "name": "config", "configMap": { "name": "db-config" } }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
            }],
        },
    }))
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // OrderedReady: db-(k+1) must not exist before db-k is Ready.
    let ready = wait_for("3 Ready MariaDB pods", 120, || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app=db"))
                .await
                .ok()?;
            for k in 1..3 {
                let name = format!("db-{k}");
                if list
                    .items
                    .iter()
                    .any(|p| p.metadata.name.as_deref() == Some(&name))
                {
                    let previous = format!("db-{}", k - 1);
                    let prev = list
                        .items
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(&previous));
                    assert!(
                        prev.is_some_and(is_ready),
                        "{name} exists while {previous} is not Ready"
                    );
                }
            }
            (list.items.len() == 3 && list.items.iter().all(is_ready)).then_some(list.items)
        }
    })
    .await;

    let mut ips = BTreeSet::new();
    for pod in &ready {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ordinal: u32 = name.trim_start_matches("db-").parse().expect("ordinal");
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("podIP");
        ips.insert(ip.clone());
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(ip.clone())
            .tcp_port(3306)
            .user(Some("root"))
            .pass(Some("rootpw"));
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .expect("connect to mariadbd at podIP:3306");
        let server_id: Option<u32> = conn.query_first("SELECT @@server_id").await.expect("query");
        let bind: Option<String> = conn
            .query_first("SELECT @@bind_address")
            .await
            .expect("query");
        let max_connections: Option<u32> = conn
            .query_first("SELECT @@max_connections")
            .await
            .expect("query");
        let log_bin: Option<u32> = conn.query_first("SELECT @@log_bin+0").await.expect("query");
        assert_eq!(
            server_id,
            Some(100 + ordinal),
            "{name}: server_id from the container's args"
        );
        assert_eq!(
            bind.as_deref(),
            Some(ip.as_str()),
            "{name}: bound to its podIP"
        );
        assert_eq!(
            max_connections,
            Some(77),
            "{name}: the ConfigMap's my.cnf is honoured"
        );
        assert_eq!(log_bin, Some(1), "{name}: log_bin from the ConfigMap");
        conn.disconnect().await.expect("disconnect");
    }

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    wait_for("EndpointSlices listing the ready pods", 60, || {
        let slices = slices.clone();
        let ips = ips.clone();
        async move {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=db"))
                .await
                .ok()?;
            let listed: BTreeSet<String> = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .flat_map(|e| e.addresses.iter().cloned())
                .collect();
            (listed == ips).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn jobs_run_their_command_and_end_by_exit_code() {
    let cp = shared().await;
    let client = cp.client().await.expect("client");
    let ns = "jobs";
    namespace(&client, ns).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = |name: &str, script: &str| {
        json!({
            "metadata": { "name": name },
            "spec": {
                "backoffLimit": 0,
                "template": { "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "hook", "image": "busybox:1.36",
                        "command": ["sh", "-c", script],
                        "env": [{ "name": "ORC_FAILURE_TYPE", "value": "DeadMaster" }],
                    }],
                }},
            },
        })
    };
    create(&jobs, job("fails", "echo failing on purpose; exit 3")).await;
    create(&jobs, job("succeeds", "echo hook saw $ORC_FAILURE_TYPE")).await;

    let condition = |name: &'static str| {
        let jobs = jobs.clone();
        async move {
            wait_for(&format!("job {name} to finish"), 60, || {
                let jobs = jobs.clone();
                async move {
                    let job = jobs.get(name).await.ok()?;
                    job.status?
                        .conditions?
                        .into_iter()
                        .find(|c| {
                            (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                        })
                        .map(|c| c.type_)
                }
            })
            .await
        }
    };
    assert_eq!(condition("fails").await, "Failed");
    assert_eq!(condition("succeeds").await, "Complete");

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for (job, exit, text) in [
        ("fails", 3, "failing on purpose"),
        ("succeeds", 0, "hook saw DeadMaster"),
    ] {
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .expect("list");
        let pod = list.items.first().expect("job pod");
        let code = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| {
                c.first()?
                    .state
                    .as_ref()?
                    .terminated
                    .as_ref()
                    .map(|t| t.exit_code)
            });
        assert_eq!(code, Some(exit), "{job}: exit code in the container status");
        assert_eq!(phase(pod), if exit == 0 { "Succeeded" } else { "Failed" });
        let log = cp.container_log(ns, pod.metadata.name.as_deref().unwrap_or_default(), "hook");
        assert!(log.contains(text), "{job} log: {log:?}");
    }
}

/// A long-running pod that logs its pid.
fn sleeper(name: &str, node: Option<&str>) -> serde_json::Value {
    json!({
        "metadata": { "name": name },
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo pid=$$$$; exec sleep 3600"],
            }],
        },
    })
}

async fn running_pid(
    cp: &ControlPlane,
    pods: &Api<Pod>,
    ns: &str,
    name: &str,
    restarts_seen: i32,
) -> i32 {
    wait_for(
        &format!("{name} running (restarts {restarts_seen})"),
        60,
        || {
            let pods = pods.clone();
            async move {
                let pod = pods.get(name).await.ok()?;
                let log = cp.container_log(ns, name, "main");
                let runs = log.lines().filter(|l| l.starts_with("pid=")).count();
                (is_ready(&pod)
                    && restarts(&pod) == restarts_seen
                    && runs == restarts_seen as usize + 1)
                    .then(|| logged_pid(&log))
                    .flatten()
            }
        },
    )
    .await
}

#[tokio::test]
async fn killed_containers_restart_and_deleted_pods_stop() {
    let cp = shared().await;
    let client = cp.client().await.expect("client");
    let ns = "faults";
    namespace(&client, ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    create(&pods, sleeper("victim", None)).await;
    let first = running_pid(cp, &pods, ns, "victim", 0).await;
    assert!(alive(first));

    cp.inject(&Fault::Kill(ContainerRef::pod(ns, "victim")))
        .await
        .expect("kill");
    let second = running_pid(cp, &pods, ns, "victim", 1).await;
    assert_ne!(first, second);
    assert!(!alive(first), "the killed process is gone");
    let pod = pods.get("victim").await.expect("get");
    let last = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.first()?.last_state.as_ref()?.terminated.clone())
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 137);

    cp.inject(&Fault::Stop(ContainerRef::pod(ns, "victim")))
        .await
        .expect("stop");
    let state = std::fs::read_to_string(format!("/proc/{second}/stat")).expect("stat");
    assert_eq!(
        state.split_whitespace().nth(2),
        Some("T"),
        "SIGSTOP applied"
    );
    cp.inject(&Fault::Continue(ContainerRef::pod(ns, "victim")))
        .await
        .expect("cont");

    pods.delete("victim", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("victim deleted", 30, || {
        let pods = pods.clone();
        async move { pods.get_opt("victim").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(!alive(second), "a deleted pod's process stops");
}

#[tokio::test]
async fn a_mysql_image_runs_the_cached_mysql_server_as_the_official_image_would() {
    let cp = shared().await;
    let client = cp.client().await.expect("client");
    let ns = "mysql";
    namespace(&client, ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    create(&cms, json!({
        "metadata": { "name": "config" },
        // read_only binds users without privileges; root still initialises.
        "data": { "my.cnf": "[mysqld]\nmax_connections=77\nread_only=ON\ngtid_mode=ON\nenforce_gtid_consistency=ON\n" },
    }))
    .await;
    create(&cms, json!({
        "metadata": { "name": "initdb" },
        "data": {
            "01-table.sql": "CREATE TABLE t (id INT PRIMARY KEY);\nINSERT INTO t VALUES (1);\n",
            // Sourced (not executable), with the container's environment and clients.
            "02-row.sh": "mysql -uroot -p\"$MYSQL_ROOT_PASSWORD\" \"$MYSQL_DATABASE\" -e 'INSERT INTO t VALUES (2)'\n",
        },
    }))
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    create(&pods, json!({
        "metadata": { "name": "mysql" },
        "spec": {
            "containers": [{
                "name": "mysql",
                "image": "mysql:8.4",
                "args": ["--server-id=7"],
                "env": [
                    { "name": "MYSQL_ROOT_PASSWORD", "value": "rootpw" },
                    { "name": "MYSQL_DATABASE", "value": "app" },
                ],
                "readinessProbe": {
                    // The shimmed client finds the server's socket.
                    "exec": { "command": ["sh", "-c", "mysqladmin -uroot -p\"$MYSQL_ROOT_PASSWORD\" status"] },
                    "periodSeconds": 1,
                },
                "volumeMounts": [
                    { "name": "data", "mountPath": "/var/lib/mysql" },
                    { "name": "config", "mountPath": "/etc/mysql/conf.d" },
                    { "name": "initdb", "mountPath": "/docker-entrypoint-initdb.d" },
                ],
            }],
            "volumes": [
                { "name": "data", "emptyDir": {} },
                { "name": "config", "configMap": { "name": "config" } },
                { "name": "initdb", "configMap": { "name": "initdb" } },
            ],
        },
    }))
    .await;
    let ip = wait_for("the MySQL pod Ready", 120, || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("mysql").await.ok()?;
            if !is_ready(&pod) {
                return None;
            }
            pod.status?.pod_ip
        }
    })
    .await;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(ip)
        .user(Some("root"))
        .pass(Some("rootpw"))
        .prefer_socket(false);
    // Ready may come from the temporary server of the first start (socket only).
    let mut conn = wait_for("root over TCP", 60, || {
        let opts = opts.clone();
        async move { mysql_async::Conn::new(opts).await.ok() }
    })
    .await;
    let (version, server_id, max_connections, read_only, gtid_mode): (
        String,
        u32,
        u32,
        u8,
        String,
    ) = conn
        .query_first("SELECT @@version, @@server_id, @@max_connections, @@read_only, @@gtid_mode")
        .await
        .expect("variables")
        .expect("a row");
    assert!(
        version.starts_with("9."),
        "the cached MySQL runs: {version}"
    );
    assert_eq!(
        (server_id, max_connections, read_only, gtid_mode.as_str()),
        (7, 77, 1, "ON"),
        "the pod's arguments and mounted config apply"
    );
    let rows: Vec<u32> = conn
        .query("SELECT id FROM app.t ORDER BY id")
        .await
        .expect("the init scripts' table");
    assert_eq!(rows, [1, 2], "both init scripts ran");
    let executed: String = conn
        .query_first("SELECT @@global.gtid_executed")
        .await
        .expect("gtid_executed")
        .expect("a row");
    // The scripts' three transactions are binlogged, as in the image; the accounts
    // and database of the environment are not.
    assert!(executed.ends_with(":1-3"), "gtid_executed {executed}");

    // kill -9: the container restarts on the same data without initialising again.
    cp.inject(&Fault::Kill(ContainerRef::pod(ns, "mysql")))
        .await
        .expect("kill");
    wait_for("the MySQL pod restarted and Ready", 60, || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("mysql").await.ok()?;
            (restarts(&pod) >= 1 && is_ready(&pod)).then_some(())
        }
    })
    .await;
    let log = cp.container_log(ns, "mysql", "mysql");
    assert_eq!(
        log.matches("initializing the data directory").count(),
        1,
        "{log}"
    );
}

/// Node loss gets a control plane of its own, so it cannot disturb the other
/// tests (and shows that control planes run side by side).
#[tokio::test]
async fn a_lost_node_stops_its_pods_and_goes_not_ready() {
    let cp = ControlPlane::start(ControlPlaneConfig::default())
        .await
        .unwrap_or_else(|e| panic!("cannot start a second control plane: {e}"));
    assert_ne!(cp.address_block(), shared().await.address_block());
    let client = cp.client().await.expect("client");
    let ns = "default";
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut pids = Vec::new();
    for name in ["lost-1", "lost-2"] {
        create(&pods, sleeper(name, Some("node-b"))).await;
    }
    create(&pods, sleeper("survivor", Some("node-a"))).await;
    for name in ["lost-1", "lost-2"] {
        pids.push(running_pid(&cp, &pods, ns, name, 0).await);
    }
    let survivor = running_pid(&cp, &pods, ns, "survivor", 0).await;

    cp.inject(&Fault::LoseNode("node-b".to_owned()))
        .await
        .expect("lose node");
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} of the lost node still runs");
    }
    assert!(alive(survivor), "pods of other nodes keep running");

    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("node-b NotReady", 60, || {
        let nodes = nodes.clone();
        async move {
            let node = nodes.get("node-b").await.ok()?;
            (!korc_e2e::agent::node_is_ready(&node)).then_some(())
        }
    })
    .await;
    cp.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!alive(survivor), "shutdown stops every pod");
}
