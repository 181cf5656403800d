//! korc's local Kubernetes: a real control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler built by `e2e/prereqs`) plus a node
//! agent that runs pods as local processes on loopback addresses.
//!
//! ```no_run
//! # async fn demo() -> korc_e2e::Result<()> {
//! let cp = korc_e2e::ControlPlane::start_default().await?;
//! let client = cp.client().await?;
//! # drop(client);
//! # Ok(()) }
//! ```

pub mod agent;
pub mod binaries;
pub mod certs;
pub mod cgroups;
pub mod control_plane;
pub mod cuts;
pub mod error;
pub mod faults;
pub mod helm;
mod http;
pub mod kubeconfig;
pub mod network;
pub mod process;

pub use control_plane::{ControlPlane, ControlPlaneConfig};
pub use error::{Error, Result};
pub use faults::{ContainerRef, Fault, PodRef};
