//! What korc, the recipient's agent and the donor's agent say to each other over HTTP
//! (pure: parsing and formatting).
//!
//! - `GET /backup?maxMiBPerSecond=N` (donor): the `mbstream` stream of a
//!   `mariadb-backup --backup`, paced to N MiB/s; header
//!   [`ESTIMATE_HEADER`] carries the data directory's size. A stream that ends
//!   without its final chunk is a failed backup.
//! - `POST /clone` with a [`CloneRequest`] (recipient): starts a copy from the donor's
//!   agent into the staging directory; `409` while one runs.
//! - `GET /clone` (recipient): the [`CopyReport`].
//!
//! Every request carries HTTP basic credentials of the replication account, which the
//! agent checks by logging into its own server with them.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// The header in which the donor tells the size of what it sends, in bytes.
pub const ESTIMATE_HEADER: &str = "x-korc-bytes-estimated";

/// A request korc's agent answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /backup`, at most this many MiB/s (0: no limit).
    Backup {
        /// `maxMiBPerSecond`.
        max_mib_per_second: u32,
    },
    /// `POST /clone`.
    StartCopy,
    /// `GET /clone`.
    CopyReport,
}

/// Why a request is refused before it is served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such endpoint (404).
    #[error("no {0}")]
    NotFound(String),
    /// A query parameter is wrong (400).
    #[error("{0}")]
    BadRequest(String),
}

/// The route of `method` `path_and_query`.
pub fn route(method: &str, path_and_query: &str) -> Result<Route, Refusal> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    match (method, path) {
        ("GET", "/backup") => {
            let mut max_mib_per_second = 0;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("maxMiBPerSecond", v)) => {
                        max_mib_per_second = v.parse().map_err(|_| {
                            Refusal::BadRequest(format!("maxMiBPerSecond={v} is not a number"))
                        })?
                    }
                    _ => return Err(Refusal::BadRequest(format!("unknown parameter {pair}"))),
                }
            }
            Ok(Route::Backup { max_mib_per_second })
        }
        ("POST", "/clone") if query.is_empty() => Ok(Route::StartCopy),
        ("GET", "/clone") if query.is_empty() => Ok(Route::CopyReport),
        _ => Err(Refusal::NotFound(format!("{method} {path_and_query}"))),
    }
}

/// The path of a backup request.
pub fn backup_path(max_mib_per_second: u32) -> String {
    format!("/backup?maxMiBPerSecond={max_mib_per_second}")
}

/// `POST /clone`'s body: where to copy from, and how fast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloneRequest {
    /// The donor's agent, `host:port`.
    pub donor: String,
    /// `spec.clone.maxMiBPerSecond` (0: no limit).
    #[serde(default, rename = "maxMiBPerSecond")]
    pub max_mib_per_second: u32,
    /// What to save of the recipient before its data is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save: Option<super::save::SaveRequest>,
}

/// Where the recipient's copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CopyState {
    /// No copy runs, none is staged.
    Idle,
    /// Streaming from the donor and extracting.
    Copying,
    /// `mariadb-backup --prepare` runs.
    Preparing,
    /// A complete, prepared copy waits for the server's restart.
    Staged,
    /// The last copy failed (see `error`).
    Failed,
}

/// `GET /clone`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    /// Where the copy is.
    pub state: CopyState,
    /// The donor's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub donor: Option<String>,
    /// Bytes received so far.
    #[serde(default)]
    pub bytes_copied: u64,
    /// The donor's data directory size.
    #[serde(default)]
    pub bytes_estimated: u64,
    /// The GTID position of the copy (staged copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_position: Option<String>,
    /// Why the copy failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CopyReport {
    /// No copy.
    pub fn idle() -> Self {
        Self {
            state: CopyState::Idle,
            donor: None,
            bytes_copied: 0,
            bytes_estimated: 0,
            gtid_position: None,
            error: None,
        }
    }
}

/// The `Authorization` header's value for `user` and `password`.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The user and password of an `Authorization: Basic …` header.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The GTID position in `mariadb-backup`'s `xtrabackup_binlog_info` (`file`, `position`,
/// `GTID position`, tab-separated): the donor's position at the copy's consistent point.
pub fn binlog_gtid_position(text: &str) -> Option<String> {
    let gtid = text.lines().next()?.split('\t').nth(2)?.trim();
    Some(gtid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_and_their_parameters_read() {
        let ok = [
            (
                "GET",
                "/backup",
                Route::Backup {
                    max_mib_per_second: 0,
                },
            ),
            (
                "GET",
                "/backup?maxMiBPerSecond=25",
                Route::Backup {
                    max_mib_per_second: 25,
                },
            ),
            ("POST", "/clone", Route::StartCopy),
            ("GET", "/clone", Route::CopyReport),
        ];
        for (method, path, expected) in ok {
            assert_eq!(route(method, path), Ok(expected), "{method} {path}");
        }
        assert_eq!(
            route("GET", &backup_path(7)),
            Ok(Route::Backup {
                max_mib_per_second: 7
            })
        );
        let refused = [
            ("GET", "/backup?maxMiBPerSecond=-1"),
            ("GET", "/backup?maxMiBPerSecond=fast"),
            ("GET", "/backup?rate=1"),
            ("POST", "/backup"),
            ("DELETE", "/clone"),
            ("GET", "/"),
            ("GET", "/clone?x=1"),
        ];
        for (method, path) in refused {
            assert!(route(method, path).is_err(), "{method} {path}");
        }
        assert!(matches!(
            route("GET", "/nothing"),
            Err(Refusal::NotFound(_))
        ));
        assert!(matches!(
            route("GET", "/backup?x"),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn basic_credentials_are_read_back_and_anything_else_refused() {
        let header = basic_authorization("korc_repl", "p:w é");
        assert_eq!(
            basic_credentials(&header),
            Some(("korc_repl".into(), "p:w é".into()))
        );
        assert_eq!(
            basic_credentials("basic a29yYzpwdw=="),
            Some(("korc".into(), "pw".into()))
        );
        for bad in [
            "Bearer a29yYzpwdw==",
            "Basic !!!",
            "Basic a29yYw==",
            "Basic",
            "",
        ] {
            assert_eq!(basic_credentials(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_copys_gtid_position_is_the_third_field_of_the_binlog_info() {
        assert_eq!(
            binlog_gtid_position("mysql-bin.000002\t342\t0-5-5\n").as_deref(),
            Some("0-5-5")
        );
        assert_eq!(
            binlog_gtid_position("mysql-bin.000009\t1212\t0-11-80,1-12-3").as_deref(),
            Some("0-11-80,1-12-3")
        );
        assert_eq!(binlog_gtid_position("mysql-bin.000002\t342"), None);
        assert_eq!(binlog_gtid_position(""), None);
    }

    #[test]
    fn reports_read_back() {
        let r = CopyReport {
            state: CopyState::Staged,
            donor: Some("10.0.0.2:3307".into()),
            bytes_copied: 10,
            bytes_estimated: 20,
            gtid_position: Some("0-1-5".into()),
            error: None,
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["state"], "staged");
        assert_eq!(json["gtidPosition"], "0-1-5");
        assert_eq!(serde_json::from_value::<CopyReport>(json).unwrap(), r);
        let req: CloneRequest =
            serde_json::from_str(r#"{"donor":"db-1:3307","maxMiBPerSecond":5}"#).unwrap();
        assert_eq!(req.max_mib_per_second, 5);
    }
}
