//! The one loop that mirrors this node's holdings into the DHT: it wakes when the store changes
//! (and on a timer, as a safety net), provides what is new and withdraws what is gone. Nothing
//! else announces or withdraws.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::LocalStore;
use crate::discovery::{ContentKey, Discovery};

/// Longest time between two passes even without a change notice.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Runs until `stop` is cancelled.
pub async fn run(store: Arc<LocalStore>, discovery: Arc<dyn Discovery>, stop: CancellationToken) {
    let mut announced: BTreeSet<Vec<u8>> = BTreeSet::new();
    loop {
        let keys = store.content_keys();
        let wanted: BTreeSet<Vec<u8>> = keys.iter().map(encode).collect();
        let new: Vec<&ContentKey> = keys
            .iter()
            .filter(|k| !announced.contains(&encode(k)))
            .collect();
        for key in new {
            match discovery.provide(key.clone()).await {
                Ok(()) => {
                    announced.insert(encode(key));
                }
                Err(e) => tracing::warn!(?key, error = %e, "could not announce"),
            }
        }
        let gone: Vec<Vec<u8>> = announced.difference(&wanted).cloned().collect();
        for bytes in gone {
            if let Ok(key) = postcard::from_bytes::<ContentKey>(&bytes) {
                if let Err(e) = discovery.withdraw(key.clone()).await {
                    tracing::warn!(?key, error = %e, "could not withdraw");
                    continue;
                }
            }
            announced.remove(&bytes);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = store.changed().notified() => {}
            _ = tokio::time::sleep(RESYNC_EVERY) => {}
        }
    }
}

fn encode(key: &ContentKey) -> Vec<u8> {
    postcard::to_stdvec(key).expect("keys encode")
}
