//! The Helm chart as `helm template` renders it: the monitoring objects (the alerts
//! checked and unit-tested by promtool, every metric the alerts and the dashboard use
//! one korc exports), and the image reference a user builds and loads.

use korc_e2e::binaries::bin_dir;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run e2e/prereqs (it builds {name} into the cache)",
        path.display()
    );
    path
}

/// `helm template` of the chart with `--set` values: the rendered objects, or helm's
/// error output.
fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut cmd = Command::new(tool("helm"));
    cmd.args(["template", "korc"])
        .arg(repo().join("charts/korc"))
        .args(["--namespace", "korc-system"]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().expect("running helm");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn monitoring() -> Vec<Value> {
    render(&[
        "monitoring.serviceMonitor.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.grafanaDashboard.enabled=true",
    ])
    .unwrap()
}

/// The metric names korc's `/metrics` has (samples, as queries name them).
fn exported() -> BTreeSet<String> {
    use korc::operator::metrics::*;
    let mut registry = Registry::default();
    let m = Metrics::register(&mut registry);
    // A family without a series is not encoded at all: give each one a series.
    let cluster = ClusterLabels {
        namespace: "ns".into(),
        cluster: "db".into(),
    };
    let outcome = OutcomeLabels {
        kind: "probe".into(),
        result: "ok".into(),
    };
    m.probes.get_or_create(&outcome).inc();
    m.actions.get_or_create(&outcome).inc();
    m.analysis
        .get_or_create(&CodeLabels {
            namespace: "ns".into(),
            cluster: "db".into(),
            code: "NoProblem".into(),
        })
        .set(1);
    m.status_writes.get_or_create(&cluster).inc();
    m.reconcile_errors.get_or_create(&cluster).inc();
    m.recoveries
        .get_or_create(&RecoveryLabels {
            kind: "DeadMaster".into(),
            outcome: "failed".into(),
        })
        .inc();
    m.blocks
        .get_or_create(&BlockLabels {
            reason: "Paused".into(),
        })
        .inc();
    m.hook_jobs
        .get_or_create(&HookLabels {
            hook: "preFailover".into(),
            outcome: "failed".into(),
        })
        .inc();
    m.replication_lag
        .get_or_create(&cluster.instance("db-1"))
        .set(1);
    m.recovery_blocked
        .get_or_create(&cluster.blocked("Paused"))
        .set(1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

/// The `korc_*` metric names a PromQL expression uses.
fn used(expr: &str) -> BTreeSet<String> {
    expr.match_indices("korc_")
        .map(|(at, _)| {
            expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_is_one_korc_exports() {
    let objects = monitoring();
    let exported = exported();
    let rules = object(&objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .clone();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        alerts,
        [
            "KorcClusterProblem",
            "KorcRecoveryBlocked",
            "KorcRecoveryFailed",
            "KorcNoLeader",
            "KorcInstanceLagging"
        ]
    );
    let runbooks = std::fs::read_to_string(repo().join("docs/monitoring.md")).unwrap();
    for rule in &rules {
        let expr = rule["expr"].as_str().unwrap();
        let names = used(expr);
        assert!(!names.is_empty(), "{expr}");
        for name in &names {
            assert!(
                exported.contains(name),
                "{name} (in {expr}) is not exported: {exported:?}"
            );
        }
        let alert = rule["alert"].as_str().unwrap();
        assert!(
            runbooks.contains(&format!("### {alert}\n")),
            "no runbook for {alert}"
        );
    }
    let dashboard: Value = serde_json::from_str(
        object(&objects, "ConfigMap")["data"]["korc.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    for title in [
        "Failovers and switchovers",
        "Failover: registered to writable",
        "Analysis codes",
        "Probe latency",
        "Replication lag per instance",
    ] {
        assert!(
            panels.iter().any(|p| p["title"] == title),
            "no panel {title}"
        );
    }
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in used(expr) {
                assert!(
                    exported.contains(&name),
                    "{name} (panel {}) is not exported",
                    panel["title"]
                );
            }
        }
    }
    let monitor = object(&objects, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
}

#[test]
fn the_alerts_pass_promtool_check_and_unit_tests() {
    let objects = monitoring();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        serde_json::to_string_pretty(&object(&objects, "PrometheusRule")["spec"]).unwrap(),
    )
    .unwrap();
    let tests = dir.path().join("alerts.test.yaml");
    std::fs::copy(repo().join("e2e/tests/chart/alerts.test.yaml"), &tests).unwrap();
    for args in [["check", "rules"], ["test", "rules"]] {
        let file = if args[0] == "check" { &rules } else { &tests };
        let out = Command::new(tool("promtool"))
            .args(args)
            .arg(file)
            .output()
            .expect("running promtool");
        assert!(
            out.status.success(),
            "promtool {} {}:\n{}{}",
            args.join(" "),
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn monitoring_objects_are_off_by_default_and_a_service_monitor_needs_the_service() {
    let objects = render(&[]).unwrap();
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(!kinds.contains(kind), "{kind} rendered by default");
    }
    let refused = render(&[
        "monitoring.serviceMonitor.enabled=true",
        "metricsService.enabled=false",
    ])
    .unwrap_err();
    assert!(
        refused.contains("monitoring.serviceMonitor.enabled needs metricsService.enabled"),
        "{refused}"
    );
}

fn image(objects: &[Value]) -> String {
    object(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_default_image_is_the_one_the_readme_builds_and_a_pushed_one_can_be_named() {
    let chart = std::fs::read_to_string(repo().join("charts/korc/Chart.yaml")).unwrap();
    let version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .unwrap()
        .trim()
        .trim_matches('"')
        .to_owned();
    let default = image(&render(&[]).unwrap());
    assert_eq!(default, format!("korc:{version}"));
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("docker build -t {default} .")),
        "the README builds another image than the chart's default {default}"
    );
    let pushed = render(&[
        "image.repository=registry.example/team/korc",
        "image.tag=dev-1",
        "image.pullPolicy=Always",
    ])
    .unwrap();
    assert_eq!(image(&pushed), "registry.example/team/korc:dev-1");
    let container = &object(&pushed, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["imagePullPolicy"], "Always");
}
