//! The fault suite: korc installed by its Helm chart on the local control plane, real
//! semi-sync MariaDB clusters under a writer and a watcher of writable instances, and
//! real faults (kill -9, SIGSTOP, network cuts that drop packets, lost nodes). After
//! each scenario: every acknowledged row is on the final primary and on every replica,
//! never two writable instances, the cluster converges to `NoProblem` with every
//! instance replicating within the scenario's bound, and `status.recoveries` tells
//! what happened.
//!
//! `cargo test -p korc-e2e --test faults` runs the fast subset; `e2e/faults` the whole
//! suite, and it rewrites the README's table. Environment:
//! - `KORC_FAULTS`: the scenarios, comma-separated, or `all` (default: [`FAST`]);
//! - `KORC_FAULT_RUNS`: runs of the scenarios that repeat (default 1);
//! - `KORC_FAULT_TABLE`: a file whose table between the markers is replaced.

#[path = "../common/mod.rs"]
mod common;
mod figures;
mod scenarios;

use figures::Figures;
use std::time::Instant;

/// What `cargo test` runs: the proof that cuts drop packets, one crash, korc cut off
/// from the primary, and an errant old primary rebuilt (on request, then by policy).
const FAST: &str = "cut,crash,korc-cut,errant";

/// Where the README's table begins and ends.
const BEGIN: &str = "<!-- fault-suite-table:begin -->";
const END: &str = "<!-- fault-suite-table:end -->";

#[test]
fn fault_suite() {
    let selected = std::env::var("KORC_FAULTS").unwrap_or_else(|_| FAST.to_owned());
    let names: Vec<&str> = if selected == "all" {
        scenarios::ALL.to_vec()
    } else {
        selected.split(',').map(str::trim).collect()
    };
    let runs: usize = std::env::var("KORC_FAULT_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let all: Vec<Figures> = runtime.block_on(async {
        let mut all = Vec::new();
        for name in names {
            println!("fault scenario {name} (runs where it repeats: {runs})");
            let at = Instant::now();
            let name = name.to_owned();
            let outcome = tokio::spawn(scenarios::run(name.clone(), runs)).await;
            let figures = match outcome {
                Ok(figures) => figures,
                Err(e) => {
                    let why = match e.try_into_panic() {
                        Ok(panic) => panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default(),
                        Err(e) => e.to_string(),
                    };
                    let mut f = scenarios::describe(&name);
                    f.failure = Some(why);
                    f
                }
            };
            if figures.failure.is_some() {
                keep_logs(&name).await;
            }
            scenarios::clean_up().await;
            println!(
                "fault scenario {name}: {} in {:.0} s",
                if figures.failure.is_none() {
                    "passed"
                } else {
                    "FAILED"
                },
                at.elapsed().as_secs_f64()
            );
            all.push(figures);
        }
        all
    });
    let table = figures::table(&all);
    println!(
        "\n{table}\n(whole suite: {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    if let Ok(path) = std::env::var("KORC_FAULT_TABLE") {
        let text = std::fs::read_to_string(&path).unwrap();
        // Rows of scenarios not run this time stay, with their own measurements.
        let previous = text
            .split_once(BEGIN)
            .and_then(|(_, rest)| rest.split_once(END))
            .map_or("", |(table, _)| table)
            .trim_start();
        let merged = figures::merge(previous, &table, &scenarios::ALL);
        let ran: Vec<&str> = all.iter().map(|f| f.scenario.as_str()).collect();
        let stamp = format!(
            "{} measured {} on {}, {runs} runs of each repeating scenario.",
            ran.join(", "),
            today(),
            machine()
        );
        // The stamps of earlier runs, naming only their rows that remain.
        let earlier: Vec<String> = previous
            .lines()
            .filter(|l| !l.starts_with('|'))
            .filter_map(|l| {
                let (names, rest) = l.split_once(" measured ")?;
                let kept: Vec<&str> = names.split(", ").filter(|n| !ran.contains(n)).collect();
                (!kept.is_empty()).then(|| format!("{} measured {rest}", kept.join(", ")))
            })
            .collect();
        let stamped = format!(
            "{merged}\n{}{stamp}\n",
            earlier.iter().map(|l| format!("{l}\n")).collect::<String>()
        );
        let text = figures::replace_between(&text, BEGIN, END, &stamped)
            .unwrap_or_else(|| panic!("{path} has no {BEGIN} … {END}"));
        std::fs::write(&path, text).unwrap();
    }
    let failed: Vec<String> = all
        .iter()
        .filter_map(|f| Some(format!("{}: {}", f.scenario, f.failure.as_ref()?)))
        .collect();
    assert!(
        failed.is_empty(),
        "failed scenarios:\n{}",
        failed.join("\n")
    );
}

/// Copies the pods' logs of a failed scenario where the next control plane will not
/// remove them: `$KORC_FAULT_LOGS/<scenario>` (default under the temporary directory).
async fn keep_logs(scenario: &str) {
    let cp = common::korc::korc_installed().await;
    let to = std::env::var_os("KORC_FAULT_LOGS")
        .map_or_else(|| std::env::temp_dir().join("korc-fault-logs"), Into::into)
        .join(scenario);
    let _ = std::fs::remove_dir_all(&to);
    let _ = std::fs::create_dir_all(&to);
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(cp.dir().join("agent/logs/."))
        .arg(&to)
        .status();
    if copied.is_ok_and(|s| s.success()) {
        println!("fault scenario {scenario}: logs kept in {}", to.display());
    }
}

fn today() -> String {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    now[..10].to_owned()
}

/// Cores, CPU model and memory, from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores ({model}), {:.0} GiB, Linux {}",
        memory_kib as f64 / 1024.0 / 1024.0,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    )
}
