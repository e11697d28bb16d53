//! Hub emulator: an HF-compatible Hub over a directory of repos or seeded synthetic repos, with
//! fault injection and byte counters. Used by tests and simulations, never in production.

/// The `hfmesh hub-emulator` command line.
pub mod cli;
