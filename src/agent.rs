//! korc's agent beside a MariaDB server: what a physical copy (`mariadb-backup`) needs
//! on the instances themselves, since it reads and writes data directories.
//!
//! It runs from korc's binary copied into the pod ([`install`]) with the database
//! image's own `mariadb-backup` and `mbstream`, whose version must be the server's:
//! - `korc agent restore`, an init container: swaps a complete staged copy into the
//!   data directory before the server starts, or discards an incomplete one
//!   ([`restore`]);
//! - `korc agent serve`, a sidecar: streams the donor's backup (`GET /backup`) and
//!   stages a copy from a donor into the recipient (`POST /clone`, `GET /clone`)
//!   ([`serve`]).
//!
//! See `docs/cloning.md` for the design and its invariants.

pub mod client;
pub mod protocol;
pub mod restore;
pub mod save;
pub mod serve;
pub mod throttle;
mod transport;

pub use transport::ClientTls;

use std::path::Path;

/// The port the agent listens on, beside the server's 3306.
pub const AGENT_PORT: u16 = 3307;

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file or directory operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The staged copy is in a state korc did not write.
    #[error("the staged copy's state {0:?} is unknown; the data directory is left as it is")]
    UnknownState(String),
    /// A tool (`mariadb-backup`, `mbstream`) failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The tool.
        tool: String,
        /// Its exit status and last lines of output.
        detail: String,
    },
    /// Talking to another agent failed.
    #[error("agent at {address}: {detail}")]
    Remote {
        /// The agent's address.
        address: String,
        /// What failed.
        detail: String,
    },
    /// Another agent answered with an error.
    #[error("agent at {address}: {status}: {detail}")]
    Refused {
        /// The agent's address.
        address: String,
        /// The HTTP status.
        status: u16,
        /// Its answer.
        detail: String,
    },
    /// TLS material could not be read.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The agent's result type.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// An I/O error with what was being done.
fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Io { what, source }
}

/// `korc agent install PATH`: copies the running korc binary to `path` (an emptyDir
/// shared with the database image's containers), executable.
pub fn install(path: &Path) -> Result<()> {
    let me = std::env::current_exe().map_err(io("finding korc's binary"))?;
    let tmp = path.with_extension("tmp");
    std::fs::copy(&me, &tmp).map_err(io(format!("copying korc to {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))?;
    Ok(())
}
