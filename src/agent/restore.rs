//! The staged copy in a data directory, and the swap that puts it in place.
//!
//! A copy is extracted into `<datadir>/.korc-clone/` and prepared there; only then is
//! its state file written (`prepared`), atomically. Before the server starts, the
//! `restore` init container looks at that state (pure: [`steps`]):
//! - no state file: the copy is incomplete (interrupted while streaming, extracting or
//!   preparing), and it is deleted — a half-copied directory is never started;
//! - `prepared`: the swap runs. The previous content of the data directory is moved
//!   into `<datadir>/.korc-replaced/` (whatever an earlier copy left there is deleted
//!   first), then the copy's files are moved in, then the staging directory is
//!   removed. Every move is a rename on the same volume, and the state file records
//!   which half of the swap runs (`moving-aside`, `moving-in`), so a swap interrupted
//!   at any point resumes where it stopped and never mixes the two halves.
//!
//! A copy that saves what only this instance held (its errant transactions, see
//! [`super::save`]) carries a marker naming its save; its swap moves the old data
//! into `<datadir>/.korc-saved/<name>/data/` instead, which no later copy clears.
//!
//! The server ignores both directories (`ignore_db_dirs`), so they are neither
//! databases nor part of the copies this instance gives as a donor.

use super::save::{SAVE_MARKER, SAVED, saved_data};
use super::{AgentError, Result, io};
use std::path::{Path, PathBuf};

/// Where a copy is staged, inside the data directory.
pub const STAGING: &str = ".korc-clone";
/// Where the data a copy replaced is kept (until the next copy).
pub const REPLACED: &str = ".korc-replaced";
/// Entries of a data directory that are not the server's data.
pub const NOT_DATA: [&str; 4] = [STAGING, REPLACED, SAVED, "lost+found"];
/// The staged copy's state file, inside the staging directory.
const STATE_FILE: &str = ".korc-copy-state";

/// What the staging directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    /// Nothing.
    Nothing,
    /// An incomplete copy (no state file).
    Incomplete,
    /// A complete, prepared copy; the swap has not begun.
    Prepared,
    /// The swap is moving the old data aside.
    MovingAside,
    /// The swap is moving the copy in.
    MovingIn,
}

impl Staged {
    fn word(self) -> Option<&'static str> {
        match self {
            Staged::Prepared => Some("prepared"),
            Staged::MovingAside => Some("moving-aside"),
            Staged::MovingIn => Some("moving-in"),
            Staged::Nothing | Staged::Incomplete => None,
        }
    }

    /// The state a state file's text names.
    pub fn parse(text: &str) -> Result<Self> {
        [Staged::Prepared, Staged::MovingAside, Staged::MovingIn]
            .into_iter()
            .find(|s| s.word() == Some(text.trim()))
            .ok_or_else(|| AgentError::UnknownState(text.trim().to_string()))
    }
}

/// One step of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Delete the staging directory (an incomplete copy, or the swap's leftovers).
    Discard,
    /// Empty `.korc-replaced` of an earlier copy's data (not when the old data goes
    /// to a save).
    ClearReplaced,
    /// Record that the old data is being moved aside.
    MarkMovingAside,
    /// Move the data directory's entries into `.korc-replaced`, or the save's `data/`.
    MoveAside,
    /// Record that the copy is being moved in.
    MarkMovingIn,
    /// Move the copy's entries into the data directory.
    MoveIn,
}

/// The steps that bring a data directory whose staging holds `staged` to a state the
/// server may start on: its own data, or the complete copy. `saving`: the old data
/// goes to a save, and nothing earlier is cleared.
pub fn steps(staged: Staged, saving: bool) -> Vec<Step> {
    use Step::*;
    match staged {
        Staged::Nothing => vec![],
        Staged::Incomplete => vec![Discard],
        Staged::Prepared if saving => {
            vec![MarkMovingAside, MoveAside, MarkMovingIn, MoveIn, Discard]
        }
        Staged::Prepared => vec![
            ClearReplaced,
            MarkMovingAside,
            MoveAside,
            MarkMovingIn,
            MoveIn,
            Discard,
        ],
        Staged::MovingAside => vec![MoveAside, MarkMovingIn, MoveIn, Discard],
        Staged::MovingIn => vec![MoveIn, Discard],
    }
}

/// Files of a staged copy that are the backup's own records, not the server's data:
/// they stay behind and go with the staging directory.
fn backup_record(name: &str) -> bool {
    name == STATE_FILE
        || name == SAVE_MARKER
        || name == "backup-my.cnf"
        || name.starts_with("xtrabackup_")
}

/// The staging directory of `datadir`.
pub fn staging(datadir: &Path) -> PathBuf {
    datadir.join(STAGING)
}

/// What `datadir`'s staging directory holds.
pub fn staged(datadir: &Path) -> Result<Staged> {
    let dir = staging(datadir);
    if !dir.exists() {
        return Ok(Staged::Nothing);
    }
    match std::fs::read_to_string(dir.join(STATE_FILE)) {
        Ok(text) => Staged::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Staged::Incomplete),
        Err(e) => Err(io(format!("reading {}", dir.join(STATE_FILE).display()))(e)),
    }
}

/// Records `state` in the staging directory of `datadir`: written aside, synced, then
/// renamed over the state file, so a crash leaves the old state or the new one.
pub fn mark(datadir: &Path, state: Staged) -> Result<()> {
    write_synced(
        &staging(datadir),
        STATE_FILE,
        state.word().expect("a state with a word"),
    )
}

/// Records in the staged copy that its swap moves the old data into save `name`.
/// Written before the copy is marked complete, so a complete copy always knows.
pub fn mark_save(datadir: &Path, name: &str) -> Result<()> {
    write_synced(&staging(datadir), SAVE_MARKER, name)
}

/// The save a staged copy's swap moves the old data into, if any.
fn save_name(datadir: &Path) -> Result<Option<String>> {
    let path = staging(datadir).join(SAVE_MARKER);
    match std::fs::read_to_string(&path) {
        Ok(name) => Ok(Some(name.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

/// Writes `text` to `dir/name` atomically: aside, synced, renamed, directory synced.
fn write_synced(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        use std::io::Write;
        let mut f =
            std::fs::File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
    }
    std::fs::rename(&tmp, dir.join(name)).map_err(io(format!("recording {name}")))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing {}", dir.display())))
}

/// The entries of `dir` to move, sorted (for logs), except `skip`.
fn entries(dir: &Path, skip: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
        let name = e
            .map_err(io(format!("listing {}", dir.display())))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !skip(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn move_all(from: &Path, to: &Path, names: &[String]) -> Result<()> {
    for name in names {
        let (a, b) = (from.join(name), to.join(name));
        std::fs::rename(&a, &b).map_err(io(format!(
            "moving {} to {}",
            a.display(),
            b.display()
        )))?;
    }
    sync_dir(from)?;
    sync_dir(to)
}

fn run(datadir: &Path, step: Step, save: Option<&str>) -> Result<()> {
    let (stage, replaced) = (staging(datadir), datadir.join(REPLACED));
    match step {
        Step::Discard => {
            // The state file first: what remains is then an incomplete copy.
            let _ = std::fs::remove_file(stage.join(STATE_FILE));
            std::fs::remove_dir_all(&stage).map_err(io(format!("deleting {}", stage.display())))?;
            sync_dir(datadir)
        }
        Step::ClearReplaced => {
            if replaced.exists() {
                std::fs::remove_dir_all(&replaced)
                    .map_err(io(format!("deleting {}", replaced.display())))?;
            }
            std::fs::create_dir(&replaced)
                .map_err(io(format!("creating {}", replaced.display())))?;
            sync_dir(datadir)
        }
        Step::MarkMovingAside => mark(datadir, Staged::MovingAside),
        Step::MarkMovingIn => mark(datadir, Staged::MovingIn),
        Step::MoveAside => {
            let names = entries(datadir, |n| NOT_DATA.contains(&n))?;
            let aside = match save {
                Some(name) => {
                    let to = saved_data(datadir, name);
                    std::fs::create_dir_all(&to)
                        .map_err(io(format!("creating {}", to.display())))?;
                    to
                }
                None => replaced,
            };
            move_all(datadir, &aside, &names)
        }
        Step::MoveIn => {
            let names = entries(&stage, backup_record)?;
            move_all(&stage, datadir, &names)
        }
    }
}

/// `korc agent restore`: brings `datadir` to a state the server may start on (see the
/// module's documentation); returns the steps taken.
pub fn restore(datadir: &Path) -> Result<Vec<Step>> {
    let state = staged(datadir)?;
    let save = match state {
        Staged::Nothing | Staged::Incomplete => None,
        _ => save_name(datadir)?,
    };
    let todo = steps(state, save.is_some());
    for step in &todo {
        run(datadir, *step, save.as_deref())?;
    }
    Ok(todo)
}

#[cfg(test)]
mod tests;
