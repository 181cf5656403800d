//! korc's error type.

/// Everything that can go wrong in korc.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to an instance failed (the topology engine).
    #[error(transparent)]
    Topology(#[from] crate::topology::Error),
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A command-line argument or input document is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document could not be read or written.
    #[error("{context}: {source}")]
    Json {
        /// Which document.
        context: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// korc's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
