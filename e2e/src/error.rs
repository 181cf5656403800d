//! The one error type of the harness and the node agent.

use std::path::PathBuf;

/// Everything that can go wrong while bringing up or driving a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system or process operation failed; `what` says which.
    #[error("{what}: {source}")]
    Io {
        /// The operation that failed, in words.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A binary built by `e2e/prereqs` is not where the harness looks for it.
    #[error("{name} not found at {path}; run e2e/prereqs first (or set KORC_E2E_BIN)")]
    MissingBinary {
        /// The binary's name, e.g. `kube-apiserver`.
        name: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The MySQL server `e2e/prereqs` unpacks into the cache is not there.
    #[error("no MySQL server at {path}; run e2e/prereqs first (it unpacks MySQL into the cache)")]
    MissingMysql {
        /// The file or directory that is missing.
        path: PathBuf,
    },
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The generated kubeconfig could not be loaded.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// Certificate or key generation failed.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A component did not become healthy in time.
    #[error("{component} not healthy after {seconds} s: {detail}")]
    Timeout {
        /// The component waited for.
        component: String,
        /// How long the harness waited.
        seconds: u64,
        /// The last thing observed.
        detail: String,
    },
    /// A control-plane process exited while it should be serving.
    #[error("{component} exited ({status}); see {log}")]
    Exited {
        /// The component that died.
        component: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
    },
    /// Every loopback address block for control planes is taken.
    #[error("no free 127.x.0.0/16 block for another control plane")]
    NoAddressBlock,
    /// A pod cannot be run on this node, e.g. a missing ConfigMap or an unsupported volume.
    #[error("{0}")]
    PodSpec(String),
    /// A command the harness runs (helm) failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command line, in short.
        command: String,
        /// What it printed on stderr.
        output: String,
    },
    /// A network cut cannot be made or healed (no cgroup v2, no nftables, not root, or
    /// an endpoint not running).
    #[error("network cut: {0}")]
    NetworkCut(String),
    /// The node agent could not apply a fault; it said why.
    #[error("fault {fault}: {detail}")]
    Fault {
        /// The annotation's value.
        fault: String,
        /// The agent's message.
        detail: String,
    },
    /// The thread that owns the control-plane processes is gone.
    #[error("control plane supervisor: {0}")]
    Supervisor(String),
}

/// Result with the harness [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a description of the operation to an I/O error.
pub(crate) trait IoContext<T> {
    /// Wraps the error with `what`, computed only on failure.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}
