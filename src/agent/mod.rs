//! The agent: the daemon every host runs. Today: the node composition root and a minimal
//! `hfmesh agent` command that serves the cache and pulls a preload list through the mesh.

/// `hfmesh agent`.
pub mod cli;
/// The control API (unix socket) and the metrics endpoint.
pub mod control;
/// The daemon: node, control API, metrics, preload, shutdown.
pub mod daemon;
/// Disk quota and eviction, pins.
pub mod evict;
/// Prometheus metrics.
pub mod metrics;
/// The composition root.
pub mod node;

pub use node::{Node, NodeConfig, StartError};
