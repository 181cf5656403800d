//! Hostile input to the `korc` binary: unknown fields, out-of-range numbers and a
//! damaged state file. Nothing here needs a server: the one instance named is a closed
//! port, which korc reports as unreachable.

mod support;

use std::path::Path;
use support::korc;

/// A loopback port nothing listens on.
const CLOSED: &str = "127.0.0.1:1";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn snapshot(dir: &Path) -> String {
    write(
        dir,
        "snapshot.json",
        &format!(r#"{{"instances": [{{"key": "{CLOSED}", "reachable": false}}]}}"#),
    )
}

#[test]
fn a_policy_with_an_unknown_field_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot(dir.path());
    let good = write(
        dir.path(),
        "good.json",
        r#"{"recoverNonWriteableMaster": true}"#,
    );
    let (code, out, err) = korc(&["analyze", "--snapshot", &snap, "--policy", &good]);
    assert_eq!(code, 3, "a dead master without replicas: {out}\n{err}");

    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"instances": {"127.0.0.1:1": {"promotionRule": "prefer", "dataCentre": "a"}}}"#,
    );
    let (code, out, err) = korc(&["analyze", "--snapshot", &snap, "--policy", &bad]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("unknown field `dataCentre`"), "{err}");
    assert!(err.contains("bad.json"), "the file is named: {err}");
}

#[test]
fn a_snapshot_with_an_unknown_field_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(
        dir.path(),
        "snapshot.json",
        &format!(
            r#"{{"instances": [{{"key": "{CLOSED}", "reachable": false, "readonly": true}}]}}"#
        ),
    );
    let (code, out, err) = korc(&["analyze", "--snapshot", &snap]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("unknown field `readonly`"), "{err}");
}

#[test]
fn what_analyze_prints_replays_as_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot(dir.path());
    let (_, printed, err) = korc(&["analyze", "--snapshot", &snap, "--output", "json"]);
    let again = write(dir.path(), "again.json", &printed);
    let (code, replayed, err2) = korc(&["analyze", "--snapshot", &again, "--output", "json"]);
    assert_eq!(code, 3, "{err}\n{err2}");
    assert_eq!(replayed, printed);
}

#[test]
fn a_downtime_beyond_the_clock_is_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot(dir.path());
    let huge = format!("{CLOSED}={}", u64::MAX);
    let (code, out, err) = korc(&["analyze", "--snapshot", &snap, "--downtime", &huge]);
    assert_eq!(code, 2, "a usage error: {out}\n{err}");
    assert!(
        err.contains("--downtime") && err.contains("out of range"),
        "{err}"
    );

    // A long but representable downtime is taken: the dead master is not actionable.
    let long = format!("{CLOSED}={}", u64::MAX / 2000);
    let (code, out, err) = korc(&[
        "analyze",
        "--snapshot",
        &snap,
        "--downtime",
        &long,
        "--output",
        "json",
    ]);
    assert_eq!(code, 3, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["analysis"][0]["skippableDueToDowntime"], true,
        "{doc:#}"
    );
}

#[test]
fn a_corrupt_state_file_is_reported_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let state = write(dir.path(), "state.json", r#"{"instances": [{"key": "127.0"#);
    for (command, expected) in [("analyze", 3), ("recover", 4)] {
        std::fs::write(&state, r#"{"instances": [{"key": "127.0"#).unwrap();
        let (code, out, err) = korc(&[
            command,
            "--instances",
            CLOSED,
            "--state",
            &state,
            "--connect-timeout-ms",
            "500",
        ]);
        assert_eq!(code, expected, "{command} is not blocked: {out}\n{err}");
        assert!(
            err.contains("ignoring the state file") && err.contains("state.json"),
            "{command}: {err}"
        );
        // The state file was rewritten whole, with no temporary file left beside it.
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert_eq!(saved["instances"][0]["key"], CLOSED);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }
    // A missing state file is no news: nothing reported.
    std::fs::remove_file(&state).unwrap();
    let (_, _, err) = korc(&["analyze", "--instances", CLOSED, "--state", &state]);
    assert!(!err.contains("state file"), "{err}");
}

#[test]
fn a_snapshot_with_a_malformed_gtid_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(
        dir.path(),
        "snapshot.json",
        &format!(
            r#"{{"instances": [{{"key": "{CLOSED}", "reachable": false, "flavor": "mysql",
                "gtid": {{"executed": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:x-y"}}}}]}}"#
        ),
    );
    let (code, out, err) = korc(&["analyze", "--snapshot", &snap]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("gtid.executed") && err.contains("malformed GTID text"),
        "{err}"
    );
}

#[test]
fn a_password_comes_from_a_file_or_the_environment_and_the_flag_warns() {
    let (code, out, err) = korc(&[
        "analyze",
        "--instances",
        CLOSED,
        "--password-file",
        "/nonexistent/korc-password",
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("cannot read /nonexistent/korc-password"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "password", "s3cret\n");
    let (_, _, err) = korc(&["analyze", "--instances", CLOSED, "--password-file", &file]);
    assert!(!err.contains("warning"), "{err}");

    let (_, _, err) = korc(&["analyze", "--instances", CLOSED, "--password", "s3cret"]);
    assert!(
        err.contains("warning: --password shows the password to every user"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn tls_flags_that_cannot_verify_are_refused() {
    let (code, _, err) = korc(&["analyze", "--instances", CLOSED, "--ssl-mode", "verify"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--ssl-mode verify needs --ssl-ca"), "{err}");

    let (code, _, err) = korc(&[
        "analyze",
        "--instances",
        CLOSED,
        "--ssl-ca",
        "/nonexistent/ca.crt",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot read --ssl-ca /nonexistent/ca.crt"),
        "{err}"
    );

    // A CA that can be read: korc probes (and finds the instance unreachable).
    let dir = tempfile::tempdir().unwrap();
    let ca = korc::provisioning::certificates::issue_authority("x", std::time::SystemTime::now())
        .unwrap();
    let ca = write(dir.path(), "ca.crt", &ca.cert);
    let (code, out, err) = korc(&["analyze", "--instances", CLOSED, "--ssl-ca", &ca]);
    assert_eq!(code, 3, "{out}\n{err}");
}
