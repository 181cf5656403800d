//! The objects of one cluster: StatefulSet, Services, ConfigMap, Secrets, PodDisruptionBudget.

use super::certificates::cluster_server_name;
use super::config::{Flavor, TLS_DIR, my_cnf};
use super::credentials::{Passwords, init_sql, require_tls_sql};
use super::{
    MYSQL_PORT, POD_INDEX_LABEL, ROLE_LABEL, SourceAddress, common_labels, credentials_secret,
    headless_service, selector_labels, tls_secret,
};
use crate::agent::AGENT_PORT;
use crate::api::MySQLCluster;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use std::collections::BTreeMap;

/// The uid and gid of the `mysql` user in the official MariaDB and MySQL images.
const IMAGE_MYSQL_UID: i64 = 999;
/// The label a client pod carries, with the cluster's name as value, to be let through
/// the cluster's NetworkPolicy.
pub const CLIENT_LABEL: &str = "korc.dev/client";

/// The server's data directory in every database pod (the `data` volume).
pub const DATADIR: &str = "/var/lib/mysql";

/// Everything korc keeps in shape for a cluster. No `Debug`: its Secrets hold the
/// passwords.
#[derive(Clone)]
pub struct Desired {
    /// The instances.
    pub stateful_set: StatefulSet,
    /// Headless, `-primary` and `-replicas` Services.
    pub services: Vec<Service>,
    /// `my.cnf`.
    pub config_map: ConfigMap,
    /// The generated credentials Secret (none when the user provides one).
    pub credentials: Option<Secret>,
    /// The first-start SQL with korc's accounts.
    pub init_secret: Secret,
    /// Disruption budget (none for a single instance).
    pub pdb: Option<PodDisruptionBudget>,
    /// Who may reach the servers (none when `spec.networkPolicy.enabled` is false).
    pub network_policy: Option<NetworkPolicy>,
}

fn meta(cluster: &MySQLCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(common_labels(cluster)),
        owner_references: cluster
            .controller_owner_ref(&())
            .map(|o: OwnerReference| vec![o]),
        ..Default::default()
    }
}

/// Pod annotation carrying a digest of the server configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "korc.dev/config-hash";

/// A stable digest (FNV-1a) of the configuration text.
fn config_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn non_empty<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// `items` with `tls` appended when the cluster has TLS.
fn with_tls<T>(enabled: bool, mut items: Vec<T>, tls: T) -> Vec<T> {
    if enabled {
        items.push(tls);
    }
    items
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Secret recording the passwords in force on the instances (see
/// [`in_force_secret`](super::in_force_secret)).
pub fn passwords_in_force(cluster: &MySQLCluster, passwords: &Passwords) -> Secret {
    Secret {
        metadata: meta(cluster, super::in_force_secret(cluster)),
        string_data: Some(passwords.to_secret_data()),
        ..Default::default()
    }
}

/// Builds the desired objects. `generated` carries the passwords to store when korc
/// owns the credentials Secret; `passwords` are the ones in force.
pub fn build(
    cluster: &MySQLCluster,
    passwords: &Passwords,
    generated: bool,
    source: SourceAddress,
    korc_image: &str,
) -> Desired {
    let name = headless_service(cluster);
    let ns = cluster.metadata.namespace.clone().unwrap_or_default();
    let spec = &cluster.spec;
    let flavor = Flavor::of_image(&spec.image);
    let selector = selector_labels(cluster);
    let config_name = format!("{name}-config");
    let init_name = format!("{name}-init");

    let report_host = match source {
        SourceAddress::PodDns => format!("$(POD_NAME).{name}.{ns}.svc"),
        SourceAddress::PodIp => "$(POD_IP)".into(),
    };
    let (root_env, root_host_env) = match flavor {
        Flavor::Mariadb => ("MARIADB_ROOT_PASSWORD", "MARIADB_ROOT_HOST"),
        Flavor::Mysql => ("MYSQL_ROOT_PASSWORD", "MYSQL_ROOT_HOST"),
    };
    let restricted = SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    };
    let container = Container {
        name: "mysql".into(),
        image: Some(spec.image.clone()),
        // server_id 10..18 from the ordinal (0 would refuse replication).
        args: Some(vec![
            "--server-id=1$(POD_INDEX)".into(),
            format!("--report-host={report_host}"),
        ]),
        env: Some(vec![
            env_field("POD_NAME", "metadata.name"),
            env_field("POD_IP", "status.podIP"),
            env_field(
                "POD_INDEX",
                &format!("metadata.labels['{POD_INDEX_LABEL}']"),
            ),
            EnvVar {
                name: root_env.into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: credentials_secret(cluster),
                        key: "root-password".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            // root only over the server's own socket: the images' default is '%',
            // an all-powerful account that read-only does not bind, on the network.
            EnvVar {
                name: root_host_env.into(),
                value: Some("localhost".into()),
                ..Default::default()
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("mysql".into()),
            container_port: MYSQL_PORT,
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(MYSQL_PORT),
                ..Default::default()
            }),
            period_seconds: Some(2),
            ..Default::default()
        }),
        resources: spec.resources.clone(),
        security_context: Some(restricted.clone()),
        volume_mounts: Some(with_tls(
            spec.tls.enabled,
            vec![
                VolumeMount {
                    name: "data".into(),
                    mount_path: DATADIR.into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "config".into(),
                    mount_path: "/etc/mysql/conf.d".into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "init".into(),
                    mount_path: "/docker-entrypoint-initdb.d".into(),
                    ..Default::default()
                },
            ],
            VolumeMount {
                name: "tls".into(),
                mount_path: TLS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let overrides = &spec.pod_template;
    let mut pod_labels = overrides.labels.clone();
    pod_labels.extend(common_labels(cluster));
    // The servers read my.cnf at start: a new configuration rolls the pods.
    let mut annotations = overrides.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash(&my_cnf(spec)));
    let pod = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            init_containers: (flavor == Flavor::Mariadb)
                .then(|| agent::init_containers(&spec.image, korc_image, &restricted)),
            containers: match flavor {
                Flavor::Mariadb => vec![
                    container,
                    agent::sidecar(
                        &spec.image,
                        spec.tls
                            .enabled
                            .then(|| cluster_server_name(&name, &ns))
                            .as_deref(),
                        &restricted,
                    ),
                ],
                Flavor::Mysql => vec![container],
            },
            volumes: Some(with_tls(
                spec.tls.enabled,
                [
                    Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: config_name.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Volume {
                        name: "init".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(init_name.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]
                .into_iter()
                .chain((flavor == Flavor::Mariadb).then(agent::tools_volume))
                .collect(),
                // The kubelet refreshes a Secret volume's files in place: a renewed
                // certificate reaches the running servers.
                Volume {
                    name: "tls".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(tls_secret(cluster)),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
            affinity: overrides.affinity.clone(),
            tolerations: non_empty(&overrides.tolerations),
            topology_spread_constraints: non_empty(&overrides.topology_spread_constraints),
            node_selector: (!overrides.node_selector.is_empty())
                .then(|| overrides.node_selector.clone()),
            termination_grace_period_seconds: Some(30),
            // The servers never talk to the API server.
            automount_service_account_token: Some(false),
            // Kubernetes' "restricted" profile: the official MariaDB and MySQL images
            // run their server as the image's mysql user (uid and gid 999).
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(IMAGE_MYSQL_UID),
                run_as_group: Some(IMAGE_MYSQL_UID),
                fs_group: Some(IMAGE_MYSQL_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(selector.clone()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(spec.storage.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let stateful_set = StatefulSet {
        metadata: meta(cluster, name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(name.clone()),
            // korc decides roles itself; pods need not wait for each other.
            pod_management_policy: Some("Parallel".into()),
            // korc restarts the pods itself, never a serving primary (operator/rollout.rs).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: pod,
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        }),
        ..Default::default()
    };

    let service = |svc_name: String, role: Option<&str>, headless: bool| {
        let mut sel = selector.clone();
        if let Some(role) = role {
            sel.insert(ROLE_LABEL.into(), role.into());
        }
        Service {
            metadata: meta(cluster, svc_name),
            spec: Some(ServiceSpec {
                cluster_ip: headless.then(|| "None".to_string()),
                publish_not_ready_addresses: headless.then_some(true),
                selector: Some(sel),
                ports: Some(vec![ServicePort {
                    name: Some("mysql".into()),
                    port: MYSQL_PORT,
                    target_port: Some(IntOrString::Int(MYSQL_PORT)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let services = vec![
        service(name.clone(), None, true),
        service(format!("{name}-primary"), Some("primary"), false),
        service(format!("{name}-replicas"), Some("replica"), false),
    ];

    let config_map = ConfigMap {
        metadata: meta(cluster, config_name),
        data: Some(BTreeMap::from([("korc.cnf".to_string(), my_cnf(spec))])),
        ..Default::default()
    };
    let credentials = generated.then(|| Secret {
        metadata: meta(cluster, credentials_secret(cluster)),
        string_data: Some(passwords.to_secret_data()),
        ..Default::default()
    });
    let init_secret = Secret {
        metadata: meta(cluster, init_name),
        string_data: Some(BTreeMap::from([(
            "korc-init.sql".to_string(),
            init_sql(flavor, passwords)
                + &if spec.tls.enabled {
                    require_tls_sql()
                } else {
                    String::new()
                },
        )])),
        ..Default::default()
    };
    let pdb = (spec.replicas > 1).then(|| PodDisruptionBudget {
        metadata: meta(cluster, name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let network_policy = spec
        .network_policy
        .enabled
        .then(|| network_policy(cluster, name.clone(), &selector, flavor));
    Desired {
        stateful_set,
        services,
        config_map,
        credentials,
        init_secret,
        pdb,
        network_policy,
    }
}

/// Admits, on the server port, the cluster's own pods (replication), korc's pods in
/// any namespace, and pods labelled `korc.dev/client: <cluster>`; nothing else.
fn network_policy(
    cluster: &MySQLCluster,
    name: String,
    selector: &BTreeMap<String, String>,
    flavor: Flavor,
) -> NetworkPolicy {
    let pods = |labels: BTreeMap<String, String>| LabelSelector {
        match_labels: Some(labels),
        ..Default::default()
    };
    let korc = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(pods(BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "korc".to_string(),
        )]))),
        ..Default::default()
    };
    let tcp = |port: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(port.into())),
        protocol: Some("TCP".into()),
        end_port: None,
    };
    let cluster_pods = NetworkPolicyPeer {
        pod_selector: Some(pods(selector.clone())),
        ..Default::default()
    };
    // The agent copies data between instances: the cluster's pods and korc only.
    let agent = (flavor == Flavor::Mariadb).then(|| NetworkPolicyIngressRule {
        from: Some(vec![cluster_pods.clone(), korc.clone()]),
        ports: Some(vec![tcp(AGENT_PORT)]),
    });
    let clients = BTreeMap::from([(
        CLIENT_LABEL.to_string(),
        cluster.metadata.name.clone().unwrap_or_default(),
    )]);
    NetworkPolicy {
        metadata: meta(cluster, name),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods(selector.clone())),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(
                std::iter::once(NetworkPolicyIngressRule {
                    from: Some(vec![
                        cluster_pods,
                        korc,
                        NetworkPolicyPeer {
                            pod_selector: Some(pods(clients)),
                            ..Default::default()
                        },
                    ]),
                    ports: Some(vec![tcp(MYSQL_PORT as u16)]),
                })
                .chain(agent)
                .collect(),
            ),
            ..Default::default()
        }),
    }
}

/// korc's agent in MariaDB pods (see `crate::agent`): korc's binary copied from
/// korc's image into an emptyDir, run with the database image's `mariadb-backup`.
mod agent {
    use super::*;

    /// The emptyDir holding korc's binary.
    const TOOLS: &str = "korc-tools";
    /// Where it is mounted.
    const TOOLS_DIR: &str = "/korc-tools";
    fn korc() -> String {
        format!("{TOOLS_DIR}/korc")
    }

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        }
    }

    pub(super) fn tools_volume() -> Volume {
        Volume {
            name: TOOLS.into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        }
    }

    /// `korc-tools` copies korc's binary into the emptyDir; `restore` swaps a staged
    /// copy in (or deletes an incomplete one) before the server starts.
    pub(super) fn init_containers(
        db_image: &str,
        korc_image: &str,
        security: &SecurityContext,
    ) -> Vec<Container> {
        vec![
            Container {
                name: "korc-tools".into(),
                image: Some(korc_image.into()),
                args: Some(vec!["agent".into(), "install".into(), korc()]),
                security_context: Some(security.clone()),
                volume_mounts: Some(vec![mount(TOOLS, TOOLS_DIR)]),
                ..Default::default()
            },
            Container {
                name: "restore".into(),
                image: Some(db_image.into()),
                command: Some(vec![
                    korc(),
                    "agent".into(),
                    "restore".into(),
                    format!("--datadir={DATADIR}"),
                ]),
                security_context: Some(security.clone()),
                volume_mounts: Some(vec![mount("data", DATADIR), mount(TOOLS, TOOLS_DIR)]),
                ..Default::default()
            },
        ]
    }

    /// `agent`: serves backups and copies on the pod's address; TLS with the cluster's
    /// certificate, verified by `tls_server_name`, when the cluster has TLS.
    pub(super) fn sidecar(
        db_image: &str,
        tls_server_name: Option<&str>,
        security: &SecurityContext,
    ) -> Container {
        let mut command = vec![
            korc(),
            "agent".into(),
            "serve".into(),
            format!("--listen=$(POD_IP):{AGENT_PORT}"),
            format!("--server=$(POD_IP):{MYSQL_PORT}"),
            format!("--datadir={DATADIR}"),
        ];
        let mut mounts = vec![mount("data", DATADIR), mount(TOOLS, TOOLS_DIR)];
        if let Some(name) = tls_server_name {
            command.push(format!("--tls-dir={TLS_DIR}"));
            command.push(format!("--tls-server-name={name}"));
            mounts.push(VolumeMount {
                read_only: Some(true),
                ..mount("tls", TLS_DIR)
            });
        }
        Container {
            name: "agent".into(),
            image: Some(db_image.into()),
            command: Some(command),
            env: Some(vec![env_field("POD_IP", "status.podIP")]),
            ports: Some(vec![ContainerPort {
                name: Some("korc-agent".into()),
                container_port: AGENT_PORT.into(),
                ..Default::default()
            }]),
            security_context: Some(security.clone()),
            volume_mounts: Some(mounts),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KORC: &str = "registry.example/korc:1.2";

    #[test]
    fn database_pods_run_with_the_restricted_profile_and_no_api_token() {
        let d = build(
            &cluster(serde_json::json!({"replicas": 3, "image": "mariadb:10.11"})),
            &Passwords::generate(),
            true,
            SourceAddress::PodIp,
            KORC,
        );
        let pod = d.stateful_set.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let sc = pod.security_context.unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(999));
        assert_eq!(sc.fs_group, Some(999));
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(c.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    }

    #[test]
    fn the_network_policy_admits_the_cluster_korc_and_labelled_clients_on_the_server_port() {
        let c = cluster(serde_json::json!({"replicas": 3, "image": "mariadb:10.11"}));
        let d = build(&c, &Passwords::generate(), true, SourceAddress::PodIp, KORC);
        let policy = serde_json::to_value(d.network_policy.unwrap()).unwrap();
        assert_eq!(policy["metadata"]["name"], "db");
        let spec = &policy["spec"];
        assert_eq!(spec["policyTypes"], serde_json::json!(["Ingress"]));
        let selector = serde_json::to_value(selector_labels(&c)).unwrap();
        assert_eq!(spec["podSelector"]["matchLabels"], selector);
        let rule = &spec["ingress"][0];
        assert_eq!(
            rule["ports"],
            serde_json::json!([{"port": 3306, "protocol": "TCP"}])
        );
        assert_eq!(
            rule["from"],
            serde_json::json!([
                {"podSelector": {"matchLabels": selector}},
                {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "korc"}}},
                {"podSelector": {"matchLabels": {"korc.dev/client": "db"}}},
            ])
        );
        let off = cluster(serde_json::json!({"replicas": 3, "image": "mariadb:10.11",
            "networkPolicy": {"enabled": false}}));
        assert!(
            build(
                &off,
                &Passwords::generate(),
                true,
                SourceAddress::PodIp,
                KORC
            )
            .network_policy
            .is_none()
        );
    }

    #[test]
    fn tls_mounts_the_certificate_secret_and_requires_tls_of_korcs_accounts() {
        let on = cluster(serde_json::json!({"replicas": 3, "image": "mariadb:10.11"}));
        let d = build(
            &on,
            &Passwords::generate(),
            true,
            SourceAddress::PodIp,
            KORC,
        );
        let pod = d.stateful_set.spec.unwrap().template.spec.unwrap();
        let volume = pod.volumes.unwrap().into_iter().find(|v| v.name == "tls");
        assert_eq!(
            volume.and_then(|v| v.secret).and_then(|s| s.secret_name),
            Some("db-tls".into())
        );
        let mount = pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .find(|m| m.name == "tls")
            .unwrap();
        assert_eq!(mount.mount_path, "/etc/mysql/tls");
        let sql = &d.init_secret.string_data.unwrap()["korc-init.sql"];
        assert!(sql.contains("ALTER USER 'korc'@'%' REQUIRE SSL;"), "{sql}");
        assert!(
            sql.contains("ALTER USER 'korc_repl'@'%' REQUIRE SSL;"),
            "{sql}"
        );
        assert!(!sql.contains("'korc_monitor'@'%' REQUIRE SSL"), "{sql}");

        let off = cluster(serde_json::json!({"replicas": 3, "image": "mariadb:10.11",
            "tls": {"enabled": false}}));
        let d = build(
            &off,
            &Passwords::generate(),
            true,
            SourceAddress::PodIp,
            KORC,
        );
        let pod = d.stateful_set.spec.unwrap().template.spec.unwrap();
        assert!(!pod.volumes.unwrap().iter().any(|v| v.name == "tls"));
        assert!(!d.init_secret.string_data.unwrap()["korc-init.sql"].contains("REQUIRE SSL"));
    }

    #[test]
    fn mariadb_pods_carry_korcs_agent_from_korcs_image_and_mysql_pods_do_not() {
        let c = cluster(serde_json::json!({"replicas": 3, "image": "mariadb:10.11"}));
        let d = build(&c, &Passwords::generate(), true, SourceAddress::PodIp, KORC);
        let pod =
            serde_json::to_value(d.stateful_set.spec.unwrap().template.spec.unwrap()).unwrap();
        let init = &pod["initContainers"];
        assert_eq!(init[0]["name"], "korc-tools");
        assert_eq!(init[0]["image"], KORC);
        assert_eq!(
            init[0]["args"],
            serde_json::json!(["agent", "install", "/korc-tools/korc"])
        );
        assert_eq!(init[1]["name"], "restore");
        assert_eq!(
            init[1]["image"], "mariadb:10.11",
            "mariadb-backup of the server's version"
        );
        assert_eq!(
            init[1]["command"],
            serde_json::json!([
                "/korc-tools/korc",
                "agent",
                "restore",
                "--datadir=/var/lib/mysql"
            ])
        );
        let agent = &pod["containers"][1];
        assert_eq!(agent["name"], "agent");
        assert_eq!(agent["image"], "mariadb:10.11");
        assert_eq!(
            agent["command"],
            serde_json::json!([
                "/korc-tools/korc",
                "agent",
                "serve",
                "--listen=$(POD_IP):3307",
                "--server=$(POD_IP):3306",
                "--datadir=/var/lib/mysql",
                "--tls-dir=/etc/mysql/tls",
                "--tls-server-name=db.prod.svc"
            ])
        );
        assert_eq!(agent["ports"][0]["containerPort"], 3307);
        assert_eq!(
            agent["securityContext"]["capabilities"]["drop"],
            serde_json::json!(["ALL"])
        );
        for c in [&init[1], agent] {
            let mounts: Vec<_> = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| (m["name"].clone(), m["mountPath"].clone()))
                .collect();
            assert!(
                mounts.contains(&("data".into(), "/var/lib/mysql".into())),
                "{mounts:?}"
            );
            assert!(
                mounts.contains(&("korc-tools".into(), "/korc-tools".into())),
                "{mounts:?}"
            );
        }
        assert!(
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == "korc-tools" && v["emptyDir"].is_object())
        );
        // The agent's port admits the cluster's pods and korc, not the clients.
        let policy = serde_json::to_value(d.network_policy.unwrap()).unwrap();
        let rule = &policy["spec"]["ingress"][1];
        assert_eq!(
            rule["ports"],
            serde_json::json!([{"port": 3307, "protocol": "TCP"}])
        );
        assert_eq!(rule["from"].as_array().unwrap().len(), 2);
        assert!(!rule["from"].to_string().contains("korc.dev/client"));

        let plain = cluster(
            serde_json::json!({"replicas": 3, "image": "mariadb:10.11", "tls": {"enabled": false}}),
        );
        let d = build(
            &plain,
            &Passwords::generate(),
            true,
            SourceAddress::PodIp,
            KORC,
        );
        let pod =
            serde_json::to_value(d.stateful_set.spec.unwrap().template.spec.unwrap()).unwrap();
        assert!(!pod["containers"][1]["command"].to_string().contains("tls"));

        let mysql = cluster(serde_json::json!({"replicas": 3, "image": "mysql:8.4"}));
        let d = build(
            &mysql,
            &Passwords::generate(),
            true,
            SourceAddress::PodIp,
            KORC,
        );
        let pod = d.stateful_set.spec.unwrap().template.spec.unwrap();
        assert!(pod.init_containers.is_none());
        assert_eq!(pod.containers.len(), 1);
        assert_eq!(
            d.network_policy
                .unwrap()
                .spec
                .unwrap()
                .ingress
                .unwrap()
                .len(),
            1
        );
    }

    fn cluster(json: serde_json::Value) -> MySQLCluster {
        let mut c = MySQLCluster::new("db", serde_json::from_value(json).unwrap());
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    #[test]
    fn builds_the_cluster_objects_with_owner_references() {
        let c = cluster(
            serde_json::json!({"replicas": 3, "image": "mariadb:10.11", "storage": {"size": "5Gi"}}),
        );
        let d = build(
            &c,
            &Passwords::generate(),
            true,
            SourceAddress::PodDns,
            KORC,
        );
        let sts = d.stateful_set.spec.as_ref().unwrap();
        assert_eq!(sts.replicas, Some(3));
        assert_eq!(sts.service_name.as_deref(), Some("db"));
        let claim = &sts.volume_claim_templates.as_ref().unwrap()[0];
        assert_eq!(
            claim
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "5Gi"
        );
        let container = &sts.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container.args.as_ref().unwrap()[1],
            "--report-host=$(POD_NAME).db.prod.svc"
        );
        let names: Vec<_> = d
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["db", "db-primary", "db-replicas"]);
        assert_eq!(
            d.services[1]
                .spec
                .as_ref()
                .unwrap()
                .selector
                .as_ref()
                .unwrap()[ROLE_LABEL],
            "primary"
        );
        assert_eq!(
            d.services[0].spec.as_ref().unwrap().cluster_ip.as_deref(),
            Some("None")
        );
        for m in [
            &d.stateful_set.metadata,
            &d.config_map.metadata,
            &d.init_secret.metadata,
        ] {
            let owner = &m.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.controller),
                ("MySQLCluster", Some(true))
            );
        }
        assert!(d.credentials.is_some());
        assert!(d.pdb.is_some());
    }

    #[test]
    fn a_configuration_change_changes_the_pod_template() {
        let annotation = |c: &MySQLCluster| {
            let d = build(c, &Passwords::generate(), true, SourceAddress::PodDns, KORC);
            let template = d.stateful_set.spec.unwrap().template;
            template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION].clone()
        };
        let mut c = cluster(serde_json::json!({"replicas": 3, "image": "mariadb:10.11"}));
        let before = annotation(&c);
        assert_eq!(before, annotation(&c), "stable");
        c.spec
            .mysql_config
            .insert("max_connections".into(), "500".into());
        assert_ne!(before, annotation(&c));
    }

    #[test]
    fn single_instance_has_no_pdb_and_user_secrets_are_not_generated() {
        let c = cluster(
            serde_json::json!({"replicas": 1, "image": "mysql:8.4", "credentialsSecret": "mine"}),
        );
        let d = build(
            &c,
            &Passwords::generate(),
            false,
            SourceAddress::PodIp,
            KORC,
        );
        assert!(d.pdb.is_none() && d.credentials.is_none());
        let container = &d
            .stateful_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        let env = container.env.as_ref().unwrap();
        let root = env
            .iter()
            .find(|e| e.name == "MYSQL_ROOT_PASSWORD")
            .unwrap();
        let root_host = env.iter().find(|e| e.name == "MYSQL_ROOT_HOST").unwrap();
        assert_eq!(root_host.value.as_deref(), Some("localhost"));
        assert_eq!(
            root.value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "mine"
        );
        assert_eq!(
            container.args.as_ref().unwrap()[1],
            "--report-host=$(POD_IP)"
        );
    }
}
