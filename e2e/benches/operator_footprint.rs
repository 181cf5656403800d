//! korc's footprint: the operator pod's resident memory and CPU while it manages 10
//! MariaDB clusters of 3 instances on the local control plane (each probed every
//! second). Prints the median and maximum of the samples.
//!
//! Run with `cargo bench -p korc-e2e --bench operator_footprint` after `e2e/prereqs`
//! and `cargo build -p korc`.

use k8s_openapi::api::core::v1::Namespace;
use korc::api::MySQLCluster;
use korc_e2e::{ControlPlane, ControlPlaneConfig};
use kube::api::{Api, PostParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CLUSTERS: usize = 10;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The korc operator process of this control plane: run by the node agent with the
/// pod's address block in its --listen argument.
fn operator_pid(block: u8) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_korc = args.first().is_some_and(|a| a.ends_with("/korc"))
            && args.iter().any(|a| a == "run")
            && args
                .iter()
                .any(|a| a.starts_with(&format!("--listen=127.{block}.")));
        is_korc.then_some(pid)
    })
}

fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: the 12th and 13th after the name.
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let korc = repo().join("target/debug/korc");
    let korc = std::env::var_os("KORC_BINARY")
        .map(PathBuf::from)
        .unwrap_or(korc);
    let cp = ControlPlane::start(ControlPlaneConfig {
        korc_binary: Some(korc),
        ..ControlPlaneConfig::default()
    })
    .await
    .expect("control plane (run e2e/prereqs first)");
    let sets = [
        "image.repository=korc",
        "image.tag=dev",
        "sourceAddress=pod-ip",
    ];
    korc_e2e::helm::install(
        &cp,
        "korc",
        &repo().join("charts/korc"),
        "korc-system",
        &sets,
    )
    .expect("helm install of charts/korc");
    let client = cp.client().await.unwrap();
    let text = std::fs::read_to_string(repo().join("deploy/samples/mariadb-cluster.yaml")).unwrap();
    for i in 0..CLUSTERS {
        let ns = format!("bench-{i}");
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        let cluster: MySQLCluster = serde_saphyr::from_str(&text).unwrap();
        let api = Api::<MySQLCluster>::namespaced(client.clone(), &ns);
        // The default ServiceAccount appears asynchronously; retry until pods can be made.
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.create(&PostParams::default(), &cluster).await.is_err() {
            assert!(Instant::now() < deadline, "cannot create cluster in {ns}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let started = Instant::now();
    loop {
        let mut settled = 0;
        for i in 0..CLUSTERS {
            let api = Api::<MySQLCluster>::namespaced(client.clone(), &format!("bench-{i}"));
            let s = api.get("mariadb").await.unwrap().status.unwrap_or_default();
            if s.ready.as_deref() == Some("3/3") && s.analysis_code.as_deref() == Some("NoProblem")
            {
                settled += 1;
            }
        }
        if settled == CLUSTERS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {settled} clusters settled"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "{CLUSTERS} clusters of 3 instances ready and NoProblem after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let pid = operator_pid(cp.address_block()).expect("the korc operator process");
    let ticks_per_s = 100.0;
    let (mut rss, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let t0 = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        cpu.push((cpu_ticks(pid) - t0) as f64 / ticks_per_s * 100.0);
        rss.push(rss_mib(pid));
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "operator RSS: median {:.1} MiB, max {:.1} MiB over 30 s",
        median(rss.clone()),
        max(&rss)
    );
    println!(
        "operator CPU: median {:.1} %, max {:.1} % of one core over 30 s",
        median(cpu.clone()),
        max(&cpu)
    );
}
