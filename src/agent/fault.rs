//! Simulation faults of the agent, never on by default. `HFMESH_FAULT_CORRUPT_CHUNKS=1` makes the
//! agent a corrupting peer: every chunk it serves has one byte flipped, while the hashes it
//! vouches for stay honest, so its peers' BLAKE3 checks must catch the chunks and go elsewhere.
//! Only the simulation harness (`simulations/`) and tests set it.

use std::sync::Arc;

use crate::etag::Etag;
use crate::manifest::SignedManifest;
use crate::repo::{CommitId, RepoId, RepoKind};
use crate::store::Bitmap;
use crate::transfer::ChunkSource;
use crate::wire::Holdings;

/// The variable that turns the corrupting-peer fault on (value `1` or `true`).
pub const CORRUPT_CHUNKS_VAR: &str = "HFMESH_FAULT_CORRUPT_CHUNKS";

/// Whether `env` asks for the corrupting-peer fault.
pub fn corrupt_chunks(env: &dyn Fn(&str) -> Option<String>) -> bool {
    env(CORRUPT_CHUNKS_VAR).is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// Serves `inner`'s holdings with one byte flipped in every chunk.
pub struct CorruptChunks(pub Arc<dyn ChunkSource>);

impl ChunkSource for CorruptChunks {
    fn manifest(&self, kind: RepoKind, repo: &RepoId, commit: &CommitId) -> Option<SignedManifest> {
        self.0.manifest(kind, repo, commit)
    }
    fn have(&self, etag: &Etag) -> Option<Bitmap> {
        self.0.have(etag)
    }
    fn swarm(
        &self,
        etag: &Etag,
        asker: &crate::wire::PeerHint,
        listed: bool,
    ) -> (Option<Bitmap>, Vec<crate::wire::PeerHint>) {
        self.0.swarm(etag, asker, listed)
    }
    fn read_chunk(&self, etag: &Etag, index: u64) -> std::io::Result<Option<bytes::Bytes>> {
        Ok(self.0.read_chunk(etag, index)?.map(|chunk| {
            let mut data = chunk.to_vec();
            let middle = data.len() / 2;
            if let Some(b) = data.get_mut(middle) {
                *b ^= 0x5a;
            }
            data.into()
        }))
    }
    fn chunk_hashes(&self, etag: &Etag) -> Option<Vec<Option<[u8; 32]>>> {
        self.0.chunk_hashes(etag)
    }
    fn holdings(&self) -> Holdings {
        self.0.holdings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_explicit_values_turn_it_on() {
        let env = |v: &'static str| move |k: &str| (k == CORRUPT_CHUNKS_VAR).then(|| v.to_string());
        assert!(corrupt_chunks(&env("1")));
        assert!(corrupt_chunks(&env("true")));
        assert!(!corrupt_chunks(&env("0")));
        assert!(!corrupt_chunks(&env("")));
        assert!(!corrupt_chunks(&|_| None));
    }
}
