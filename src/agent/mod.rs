//! The agent: the daemon every host runs (`hfmesh agent`): the node, the control API, metrics,
//! preload, verify and shutdown.

/// `hfmesh agent`.
pub mod cli;
/// The control API (unix socket) and the metrics endpoint.
pub mod control;
/// The daemon: node, control API, metrics, preload, shutdown.
pub mod daemon;
/// Disk quota and eviction, pins.
pub mod evict;
/// Simulation faults (a corrupting peer), off unless a test sets them.
pub mod fault;
/// Live cluster holdings: what this node and its peers hold, asked over the network.
pub mod holdings;
/// Prometheus metrics.
pub mod metrics;
/// The composition root.
pub mod node;
/// Unfinished pulls, resumed at the next start.
pub mod pending;
/// `POST /v1/pull` streaming its progress as NDJSON.
pub mod pull_stream;
/// Re-hashing the tree and repairing it from the mesh.
pub mod verify;

pub use node::{Node, NodeConfig, StartError};
