//! Container logs as the kubelet keeps them: one file per container with every run
//! appended, and beside it a file of run marks (where each run began and ended, and
//! for which pod), so that the current run, the previous one (`--previous`) and the
//! end of a run (where `-f` stops) can be told apart.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The marks file of a container log.
fn marks_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".runs");
    PathBuf::from(name)
}

/// One line of the marks file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mark {
    /// A run of pod `uid`'s container began at this offset of the log.
    Start { offset: u64, uid: String },
    /// The run ended at this offset.
    End { offset: u64 },
}

impl Mark {
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        match (words.next()?, words.next()?.parse().ok()?, words.next()) {
            ("start", offset, Some(uid)) => Some(Self::Start {
                offset,
                uid: uid.to_owned(),
            }),
            ("end", offset, None) => Some(Self::End { offset }),
            _ => None,
        }
    }
}

/// Appends a mark at the log's current end.
fn append(log: &Path, mark: impl FnOnce(u64) -> String) {
    let offset = std::fs::metadata(log).map_or(0, |m| m.len());
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(marks_path(log))
        .and_then(|mut f| writeln!(f, "{}", mark(offset)));
    if let Err(e) = written {
        tracing::warn!(log = %log.display(), error = %e, "cannot mark a container run");
    }
}

/// Marks the start of a run of pod `uid`'s container (before its process starts).
pub(crate) fn begin_run(log: &Path, uid: &str) {
    append(log, |offset| format!("start {offset} {uid}"));
}

/// Marks the end of the current run (its process exited).
pub(crate) fn end_run(log: &Path) {
    append(log, |offset| format!("end {offset}"));
}

/// The marks of a container log (none when it never ran).
pub(crate) fn read_marks(log: &Path) -> Vec<Mark> {
    std::fs::read_to_string(marks_path(log))
        .map(|text| text.lines().filter_map(Mark::parse).collect())
        .unwrap_or_default()
}

/// A run of a container: where it is in the log, and whether it has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    /// The bytes of the log it wrote (to the end of the file while it runs).
    pub start: u64,
    /// Where it ended, if it did.
    pub end: Option<u64>,
}

/// The runs of the latest pod among `marks`, oldest first.
fn runs(marks: &[Mark]) -> Vec<Run> {
    let latest = marks.iter().rev().find_map(|m| match m {
        Mark::Start { uid, .. } => Some(uid.as_str()),
        Mark::End { .. } => None,
    });
    let mut runs: Vec<Run> = Vec::new();
    let mut ours = false;
    for m in marks {
        match m {
            Mark::Start { offset, uid } => {
                ours = Some(uid.as_str()) == latest;
                if ours {
                    runs.push(Run {
                        start: *offset,
                        end: None,
                    });
                }
            }
            Mark::End { offset } => {
                if let Some(run) = runs.last_mut().filter(|r| ours && r.end.is_none()) {
                    run.end = Some(*offset);
                }
            }
        }
    }
    runs
}

/// The current run (`previous`: the one before it) of the latest pod, if there is one.
pub(crate) fn select(marks: &[Mark], previous: bool) -> Option<Run> {
    let mut runs = runs(marks);
    let current = runs.pop()?;
    if previous { runs.pop() } else { Some(current) }
}

/// The part of `bytes` (a run's bytes) to send: the last `tail_lines` lines, then at
/// most `limit_bytes` bytes from the start of that.
pub(crate) fn window(
    bytes: &[u8],
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
) -> Range<usize> {
    let mut start = 0;
    if let Some(n) = tail_lines {
        // A final line without a newline counts as a line.
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        start = if n == 0 {
            bytes.len()
        } else {
            body.iter()
                .enumerate()
                .rev()
                .filter(|(_, b)| **b == b'\n')
                .nth(n - 1)
                .map_or(0, |(i, _)| i + 1)
        };
    }
    let end = limit_bytes.map_or(bytes.len(), |l| bytes.len().min(start + l));
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(offset: u64, uid: &str) -> Mark {
        Mark::Start {
            offset,
            uid: uid.into(),
        }
    }

    fn end(offset: u64) -> Mark {
        Mark::End { offset }
    }

    #[test]
    fn marks_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        begin_run(&log, "u1");
        std::fs::write(&log, "one\n").unwrap();
        end_run(&log);
        begin_run(&log, "u1");
        assert_eq!(read_marks(&log), [start(0, "u1"), end(4), start(4, "u1")]);
    }

    #[test]
    fn the_current_and_the_previous_run_of_the_latest_pod() {
        let table: [(&[Mark], Option<Run>, Option<Run>); 5] = [
            (&[], None, None),
            (
                &[start(0, "u1")],
                Some(Run {
                    start: 0,
                    end: None,
                }),
                None,
            ),
            (
                // Killed and restarted: the previous run ended where the current began.
                &[start(0, "u1"), end(10), start(10, "u1")],
                Some(Run {
                    start: 10,
                    end: None,
                }),
                Some(Run {
                    start: 0,
                    end: Some(10),
                }),
            ),
            (
                &[start(0, "u1"), end(10), start(10, "u1"), end(25)],
                Some(Run {
                    start: 10,
                    end: Some(25),
                }),
                Some(Run {
                    start: 0,
                    end: Some(10),
                }),
            ),
            (
                // A new pod of the same name: the old pod's runs are not its previous.
                &[start(0, "u1"), end(10), start(10, "u2")],
                Some(Run {
                    start: 10,
                    end: None,
                }),
                None,
            ),
        ];
        for (marks, current, previous) in table {
            assert_eq!(select(marks, false), current, "{marks:?}");
            assert_eq!(select(marks, true), previous, "{marks:?}");
        }
    }

    #[test]
    fn tail_lines_and_limit_bytes() {
        type Case<'a> = (&'a [u8], Option<usize>, Option<usize>, &'a [u8]);
        let log = b"a\nbb\nccc\n";
        let partial = b"a\nbb\nccc";
        let table: [Case; 8] = [
            (log, None, None, b"a\nbb\nccc\n"),
            (log, Some(1), None, b"ccc\n"),
            (log, Some(2), None, b"bb\nccc\n"),
            (log, Some(9), None, b"a\nbb\nccc\n"),
            (log, Some(0), None, b""),
            (partial, Some(1), None, b"ccc"),
            (log, None, Some(4), b"a\nbb"),
            (log, Some(2), Some(2), b"bb"),
        ];
        for (bytes, tail, limit, want) in table {
            let got = &bytes[window(bytes, tail, limit)];
            assert_eq!(got, want, "tail {tail:?} limit {limit:?}");
        }
    }
}
