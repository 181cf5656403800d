//! The cost of TLS to korc's probes, on real 3-instance clusters of MariaDB and MySQL:
//! the median probe latency (what the probe histogram records, `probe_micros`) in
//! plain text and over TLS, with korc's kept connections (the steady state) and with a
//! new connection for every probe (what a probe cost before connections were kept),
//! and from those the TLS handshake's cost per new connection.
//!
//! Run with `cargo bench --bench tls_probes` (`KORC_BENCH_RUNS` sets the probe rounds).

#[path = "../tests/support/mod.rs"]
mod support;

use korc::topology::instance::InstanceKey;
use korc::topology::probe::probe;
use korc::topology::session::{Connector, Credentials, Tls};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn connector(tls: &Tls) -> Connector {
    let mut c = Connector::new(Credentials {
        user: support::ADMIN.0.into(),
        password: support::ADMIN.1.into(),
    });
    c.tls = tls.clone();
    c
}

/// Probe latencies in milliseconds over `rounds` rounds of every instance, with one
/// connector throughout (kept connections) or a new one per probe.
async fn probe_ms(keys: &[InstanceKey], tls: &Tls, rounds: usize, keep: bool) -> Vec<f64> {
    let kept = connector(tls);
    let mut out = Vec::with_capacity(rounds * keys.len());
    for round in 0..rounds + 1 {
        for key in keys {
            let fresh;
            let c = if keep {
                &kept
            } else {
                fresh = connector(tls);
                &fresh
            };
            let inst = probe(c, key).await;
            let micros = inst
                .probe_micros
                .unwrap_or_else(|| panic!("{key} unreachable: {:?}", inst.error));
            // The first round opens the kept connections.
            if round > 0 {
                out.push(micros as f64 / 1000.0);
            }
        }
    }
    out
}

struct Figures {
    plain_kept: f64,
    tls_kept: f64,
    plain_new: f64,
    tls_new: f64,
    /// TLS handshakes the servers accepted during the kept-connection rounds.
    kept_handshakes: u64,
}

/// TLS handshakes a server has accepted (`Ssl_accepts`; MySQL counts those of its
/// `mysql_main` channel the same way).
fn handshakes(sb: &support::Sandbox) -> u64 {
    sb.servers
        .iter()
        .map(|s| {
            s.sql("SHOW GLOBAL STATUS LIKE 'Ssl\\_accepts'")
                .split('\t')
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

async fn measure(flavor: support::Flavor, rounds: usize) -> Figures {
    let keys = |sb: &support::Sandbox| -> Vec<InstanceKey> {
        sb.servers
            .iter()
            .map(|s| s.key().parse().unwrap())
            .collect()
    };
    let plain = support::Sandbox::replication(flavor, 3);
    let plain_keys = keys(&plain);
    let plain_kept = median(probe_ms(&plain_keys, &Tls::Disabled, rounds, true).await);
    let plain_new = median(probe_ms(&plain_keys, &Tls::Disabled, rounds, false).await);
    drop(plain);
    let tls_sandbox = support::Sandbox::replication_with_tls(flavor, 3);
    let tls = tls_sandbox.certificates.as_ref().unwrap().connector_tls();
    let tls_keys = keys(&tls_sandbox);
    let before = handshakes(&tls_sandbox);
    let tls_kept = median(probe_ms(&tls_keys, &tls, rounds, true).await);
    let kept_handshakes = handshakes(&tls_sandbox) - before;
    let tls_new = median(probe_ms(&tls_keys, &tls, rounds, false).await);
    Figures {
        plain_kept,
        tls_kept,
        plain_new,
        tls_new,
        kept_handshakes,
    }
}

fn main() {
    let rounds: usize = std::env::var("KORC_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for flavor in [support::Flavor::MariaDb, support::Flavor::Mysql] {
        let f = rt.block_on(measure(flavor, rounds));
        let name = flavor.name();
        let probes = rounds * 3;
        println!(
            "{name}: probe, kept connection: plain {:.2} ms, TLS {:.2} ms (TLS/plain {:.0} %, limit 120 %) — median of {probes} probes",
            f.plain_kept,
            f.tls_kept,
            100.0 * f.tls_kept / f.plain_kept
        );
        println!(
            "{name}: probe, new connection each: plain {:.2} ms, TLS {:.2} ms — median of {probes} probes",
            f.plain_new, f.tls_new
        );
        println!(
            "{name}: TLS handshake per new connection: {:.2} ms; kept connections save {:.2} ms per TLS probe",
            f.tls_new - f.plain_new,
            f.tls_new - f.tls_kept
        );
        println!(
            "{name}: TLS handshakes during {} kept-connection probes: {}",
            probes + 3,
            f.kept_handshakes
        );
    }
}
