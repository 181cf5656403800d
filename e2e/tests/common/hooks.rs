//! Hooks whose containers record what they received (their `ORC_*` environment and
//! their substituted arguments) in files the tests read.

use super::korc::sample;
use super::wait_for;
use korc::api::{HooksSpec, MySQLCluster};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// A hook whose container records its environment and arguments in `<out>/<file>.env`
/// and `<file>.args`, then runs `then`.
pub fn recorder(name: &str, out: &Path, file: &str, then: &str, timeout: i64) -> Value {
    let script = format!(
        "echo \"$@\" > \"$OUT/$FILE.args\"; env | grep ^ORC_ | sort > \"$OUT/$FILE.tmp\"; \
         mv \"$OUT/$FILE.tmp\" \"$OUT/$FILE.env\"; {then}"
    );
    json!({
        "name": name,
        "timeoutSeconds": timeout,
        "template": {"spec": {"containers": [{
            "name": "hook",
            "image": "busybox:1.37",
            "command": ["sh", "-c", script, "hook"],
            "args": ["{failureType}", "{failedHost}", "{successorHost}", "{recoveryUID}"],
            "env": [
                {"name": "OUT", "value": out.display().to_string()},
                {"name": "FILE", "value": file},
            ],
        }]}}
    })
}

pub fn with_hooks(name: &str, hooks: Value) -> MySQLCluster {
    let mut c = sample(name, 3);
    c.spec.hooks = Some(serde_json::from_value::<HooksSpec>(hooks).unwrap());
    c
}

/// The `ORC_*` variables a hook recorded, once it has.
pub async fn recorded(out: &Path, file: &str, seconds: u64) -> BTreeMap<String, String> {
    let path = out.join(format!("{file}.env"));
    wait_for(
        &format!("hook output {}", path.display()),
        seconds,
        || async {
            let text = std::fs::read_to_string(&path).ok()?;
            Some(
                text.lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        },
    )
    .await
}

pub fn args(out: &Path, file: &str) -> String {
    std::fs::read_to_string(out.join(format!("{file}.args")))
        .unwrap()
        .trim()
        .to_string()
}

pub fn hook_entry<'a>(record: &'a Value, hook: &str) -> &'a Value {
    record["hooks"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["hook"] == hook))
        .unwrap_or_else(|| panic!("no {hook} hook in {record:#}"))
}

pub fn micros(t: &Value) -> i64 {
    let text = t.as_str().unwrap_or_else(|| panic!("no time: {t}"));
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap()
        .as_microsecond()
}

/// Where a test's hooks write (removed when the test ends).
pub fn out_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("korc-hooks-{name}-"))
        .tempdir()
        .unwrap()
}
