//! The mesh: pull snapshots from peers first and from the Hub only for what no peer can supply,
//! serve what this node holds, and keep the DHT in step with the holdings.

/// This node's holdings, served to peers.
pub mod local;

pub use local::LocalStore;
