//! Saving what only a recipient holds before a copy replaces its data: its errant
//! transactions (an old primary's writes its successor never received).
//!
//! A copy asked to save (`CloneRequest::save`) first extracts the binary log events of
//! the errant transactions into `<datadir>/.korc-saved/<name>/errant-<domain>-<server>.sql`
//! with `mariadb-binlog --verbose` (replayable with the `mariadb` client, rows shown as
//! comments), and marks the staged copy so that the swap moves the old data directory
//! into `<datadir>/.korc-saved/<name>/data/` instead of `.korc-replaced` — kept until
//! someone deletes it. A `README` there says what the directory holds. The events are
//! a convenience; the data directory, binary logs included, is the save itself.

use super::{AgentError, Result, io};
use crate::topology::gtid::ErrantRange;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// Where saved data lives, inside the data directory (never deleted by korc).
pub const SAVED: &str = ".korc-saved";
/// The marker in a staged copy that names the save its swap moves the old data into.
pub const SAVE_MARKER: &str = ".korc-save";

/// What to save before a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveRequest {
    /// The save's directory name under `.korc-saved` (korc names it by the copy's
    /// start, `20261130T094512Z`).
    pub name: String,
    /// The errant GTIDs, as korc reports them.
    pub errant_gtids: String,
    /// The errant transactions, per writer.
    pub errant: Vec<ErrantRange>,
}

impl SaveRequest {
    /// Refuses a name that is not one plain directory name.
    pub fn validate(&self) -> Result<()> {
        let plain = !self.name.is_empty()
            && !self.name.starts_with('.')
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if plain {
            Ok(())
        } else {
            Err(AgentError::Tool {
                tool: "save".into(),
                detail: format!("{:?} is not a plain directory name", self.name),
            })
        }
    }
}

/// The save directory `name` of `datadir`.
pub fn saved_dir(datadir: &Path, name: &str) -> PathBuf {
    datadir.join(SAVED).join(name)
}

/// Where the swap moves the old data of save `name`.
pub fn saved_data(datadir: &Path, name: &str) -> PathBuf {
    saved_dir(datadir, name).join("data")
}

/// The file holding the events of `range`.
pub fn events_file(range: &ErrantRange) -> String {
    format!("errant-{}-{}.sql", range.domain, range.server_id)
}

/// `mariadb-binlog`'s arguments selecting `range` from `binlogs`: one writer of one
/// domain, after what the source holds, through the last errant transaction.
pub fn binlog_args(range: &ErrantRange, binlogs: &[PathBuf]) -> Vec<String> {
    let mut args = vec![
        "--no-defaults".to_string(),
        "--verbose".to_string(),
        format!("--do-domain-ids={}", range.domain),
        format!("--do-server-ids={}", range.server_id),
    ];
    if let Some(after) = range.after {
        args.push(format!(
            "--start-position={}-{}-{after}",
            range.domain, range.server_id
        ));
    }
    args.push(format!(
        "--stop-position={}-{}-{}",
        range.domain, range.server_id, range.through
    ));
    args.extend(binlogs.iter().map(|p| p.display().to_string()));
    args
}

/// True when `events` (a `mariadb-binlog` listing) holds the last transaction of
/// `range`: the extraction reached it.
pub fn holds_last(events: &str, range: &ErrantRange) -> bool {
    let gtid = format!("{}-{}-{}", range.domain, range.server_id, range.through);
    events.lines().filter(|l| l.starts_with('#')).any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.windows(2).any(|w| w[0] == "GTID" && w[1] == gtid)
    })
}

/// The binary logs an index file lists (relative names resolved against `datadir`).
pub fn binlogs_of(index: &str, datadir: &Path) -> Vec<PathBuf> {
    index
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let p = Path::new(l);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                datadir.join(p)
            }
        })
        .collect()
}

fn readme(request: &SaveRequest) -> String {
    let files: Vec<String> = request.errant.iter().map(events_file).collect();
    format!(
        "korc saved this before copying another instance's data over this one.\n\
         \n\
         Errant transactions (held here, not by the primary): {}\n\
         \n\
         {}: their binary log events (mariadb-binlog --verbose); replay with\n\
         \x20 mariadb < FILE, or read the rows in the comments.\n\
         data/: this instance's data directory as it was, binary logs included\n\
         \x20 (moved here when the server restarted on the copy).\n\
         \n\
         korc never deletes this directory.\n",
        request.errant_gtids,
        files.join(", ")
    )
}

/// Extracts the errant transactions' events of `binlog_index` (the server's
/// `@@log_bin_index`) into the save directory; returns that directory.
pub async fn extract(
    datadir: &Path,
    binlog_index: &Path,
    request: &SaveRequest,
) -> Result<PathBuf> {
    request.validate()?;
    let dir = saved_dir(datadir, &request.name);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::write(dir.join("README"), readme(request))
        .map_err(io(format!("writing {}", dir.join("README").display())))?;
    let index = std::fs::read_to_string(binlog_index)
        .map_err(io(format!("reading {}", binlog_index.display())))?;
    let binlogs = binlogs_of(&index, datadir);
    for range in &request.errant {
        let out = Command::new("mariadb-binlog")
            .args(binlog_args(range, &binlogs))
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| AgentError::Tool {
                tool: "mariadb-binlog".into(),
                detail: format!("cannot start: {e}"),
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(AgentError::Tool {
                tool: "mariadb-binlog".into(),
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        if !holds_last(&text, range) {
            return Err(AgentError::Tool {
                tool: "mariadb-binlog".into(),
                detail: format!(
                    "the binary logs no longer hold {}-{}-{} (purged?); nothing is copied over \
                     this instance",
                    range.domain, range.server_id, range.through
                ),
            });
        }
        let file = dir.join(events_file(range));
        std::fs::write(&file, out.stdout).map_err(io(format!("writing {}", file.display())))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(after: Option<u64>) -> ErrantRange {
        ErrantRange {
            domain: 0,
            server_id: 11,
            after,
            through: 105,
        }
    }

    #[test]
    fn binlog_args_select_one_writer_after_the_source() {
        let logs = [
            PathBuf::from("/d/mysql-bin.000001"),
            PathBuf::from("/d/mysql-bin.000002"),
        ];
        assert_eq!(
            binlog_args(&range(Some(100)), &logs),
            [
                "--no-defaults",
                "--verbose",
                "--do-domain-ids=0",
                "--do-server-ids=11",
                "--start-position=0-11-100",
                "--stop-position=0-11-105",
                "/d/mysql-bin.000001",
                "/d/mysql-bin.000002"
            ]
        );
        // A writer the source never saw: all of its transactions.
        assert!(
            !binlog_args(&range(None), &logs)
                .iter()
                .any(|a| a.starts_with("--start-position"))
        );
    }

    #[test]
    fn the_index_lists_binlogs_relative_to_the_data_directory() {
        let index = "./mysql-bin.000001\n/elsewhere/mysql-bin.000002\n\n";
        assert_eq!(
            binlogs_of(index, Path::new("/var/lib/mysql")),
            [
                PathBuf::from("/var/lib/mysql/./mysql-bin.000001"),
                PathBuf::from("/elsewhere/mysql-bin.000002")
            ]
        );
    }

    #[test]
    fn an_extraction_counts_only_if_it_reached_the_last_errant_transaction() {
        let listing = "#261130  9:30:10 server id 11  end_log_pos 1451 CRC32 0x963003c5 \tGTID 0-11-105 trans\n";
        assert!(holds_last(listing, &range(Some(100))));
        assert!(!holds_last(
            "#261130 server id 11 end_log_pos 1 \tGTID 0-11-104 trans\n",
            &range(Some(100))
        ));
        assert!(!holds_last("insert GTID 0-11-105", &range(Some(100))));
        assert!(!holds_last("# \tGTID 0-11-1050 trans", &range(Some(100))));
    }

    #[test]
    fn a_save_name_is_one_plain_directory_name() {
        let mut r = SaveRequest {
            name: "20261130T094512Z".into(),
            errant_gtids: "0-11-105".into(),
            errant: vec![range(Some(100))],
        };
        assert!(r.validate().is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            r.name = bad.into();
            assert!(r.validate().is_err(), "{bad:?}");
        }
    }
}
