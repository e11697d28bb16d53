//! How often a blob's fetch looks its providers up in the DHT.
//!
//! Every refresh asks the known providers what they hold; that is how chunks spread. The DHT
//! lookup that finds the providers is another matter: it queries the ~20 nodes closest to the
//! blob's key, the same nodes for every puller of the blob, so with every puller looking up every
//! refresh those nodes answer `pullers × 4` queries a second per blob. And the list changes only
//! when a puller joins or its record expires. So:
//! - until the blob's first Hub request may go, every refresh looks up (the pullers must settle,
//!   see `pullers_settled`, and a settled refresh must have looked);
//! - then each lookup that finds the same providers as the last doubles the wait before the next,
//!   up to [`MAX_LOOKUP_EVERY`]; a lookup that finds a different list brings it back to every
//!   refresh;
//! - a node that found this one in the DHT's list and asked it what it holds, but is not on this
//!   one's list, is a puller this node has not found yet: the next refresh looks up (only while the
//!   list is not full, since beyond that most askers are not on anyone's list).
//!
//! Generic over the clock, like `pullers_settled`: the scale model keeps time in seconds.

use std::time::Duration;

/// Longest wait between two lookups of a blob's providers once its pullers have settled.
pub const MAX_LOOKUP_EVERY: Duration = Duration::from_secs(4);

/// When one blob's fetch looks its providers up next, and what the last lookup found.
#[derive(Debug, Clone)]
pub(crate) struct LookupPace<T, D, I> {
    every: D,
    last: Option<T>,
    listed: Vec<I>,
}

impl<T, D, I> LookupPace<T, D, I>
where
    T: Copy + PartialOrd + std::ops::Add<D, Output = T>,
    D: Copy + PartialOrd + std::ops::Add<Output = D>,
    I: Ord + Clone,
{
    /// A pace that looks up at the first refresh; `refresh` is the shortest wait.
    pub(crate) fn new(refresh: D) -> Self {
        LookupPace {
            every: refresh,
            last: None,
            listed: Vec::new(),
        }
    }

    /// Whether the refresh starting at `now` looks up: always while the Hub is not `opened` for
    /// the blob, or when a node `unseen` here asked as one that found this node listed.
    pub(crate) fn due(&self, now: T, opened: bool, unseen: bool) -> bool {
        !opened || unseen || self.last.is_none_or(|t| now >= t + self.every)
    }

    /// Records a lookup begun at `now` that found `ids`, and sets the wait before the next one.
    pub(crate) fn found(&mut self, now: T, mut ids: Vec<I>, refresh: D, max: D) {
        ids.sort();
        ids.dedup();
        if self.last.is_some() && ids == self.listed {
            let doubled = self.every + self.every;
            self.every = if doubled < max { doubled } else { max };
        } else {
            self.every = refresh;
            self.listed = ids;
        }
        self.last = Some(now);
    }

    /// The providers the last lookup found, sorted.
    #[cfg(test)]
    pub(crate) fn listed(&self) -> &[I] {
        &self.listed
    }

    /// When the last lookup began.
    pub(crate) fn last(&self) -> Option<T> {
        self.last
    }

    /// Whether `askers` (nodes that found this one listed and asked) name a node the last
    /// lookup did not find, while that list was below `full`. Before any lookup, nothing is
    /// unseen: there is no list to miss anyone from.
    pub(crate) fn unseen<'a>(&self, askers: impl IntoIterator<Item = &'a I>, full: usize) -> bool
    where
        I: 'a,
    {
        self.last.is_some()
            && self.listed.len() < full
            && askers
                .into_iter()
                .any(|a| self.listed.binary_search(a).is_err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pace = LookupPace<f64, f64, u32>;

    #[test]
    fn backs_off_while_the_list_holds_and_resets_when_it_changes() {
        let mut p = Pace::new(0.25);
        assert!(p.due(0.0, true, false), "the first refresh looks up");
        p.found(0.0, vec![2, 1], 0.25, 4.0);
        assert_eq!(p.listed(), &[1, 2]);
        assert!(!p.due(0.1, true, false));
        assert!(p.due(0.25, true, false));
        // The same list: 0.5, 1, 2, 4, then 4 again.
        let mut t = 0.25;
        for want in [0.5, 1.0, 2.0, 4.0, 4.0] {
            p.found(t, vec![1, 2], 0.25, 4.0);
            assert!(
                !p.due(t + want - 0.01, true, false),
                "wait {want} after {t}"
            );
            assert!(p.due(t + want, true, false), "wait {want} after {t}");
            t += want;
        }
        // A new provider: back to every refresh.
        p.found(t, vec![1, 2, 3], 0.25, 4.0);
        assert!(p.due(t + 0.25, true, false));
        assert_eq!(p.listed(), &[1, 2, 3]);
    }

    #[test]
    fn looks_up_every_refresh_until_the_hub_opens_or_when_an_unseen_puller_asks() {
        let mut p = Pace::new(0.25);
        assert!(
            !p.unseen(&[7], 19),
            "no lookup yet: no list to miss anyone from"
        );
        let mut t = 0.0;
        for _ in 0..6 {
            p.found(t, vec![1], 0.25, 4.0);
            t += 0.25;
        }
        assert!(!p.due(t + 0.1, true, false), "backed off once opened");
        assert!(p.due(t + 0.1, false, false), "not opened: every refresh");
        assert!(p.due(t + 0.1, true, true), "an unseen asker");
        assert!(!p.unseen(&[1], 19), "a known asker");
        assert!(p.unseen(&[1, 7], 19), "an asker not on the list");
        assert!(
            !p.unseen(&[7], 1),
            "a full list: askers beyond it are expected"
        );
    }
}
