//! The playlist's play order: list order, or a shuffle that plays every file once per pass,
//! keeps the pass going across rescans and never repeats a track back to back.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

/// Play order: sorted (or m3u) order, or shuffled anew for every pass through the list.
pub(super) struct Order {
    /// Shuffle instead of list order.
    shuffle: bool,
    /// Entries are sorted by path (a directory scan), so a vanished last track still has a
    /// place to continue from.
    sorted: bool,
    /// The current listing.
    pub(super) entries: Vec<PathBuf>,
    /// What is left of this pass, in play order.
    queue: VecDeque<PathBuf>,
    /// The most recent pick, so a new pass does not start with it again.
    last: Option<PathBuf>,
    /// Shuffle randomness; fastrand seeds it differently on every start.
    rng: fastrand::Rng,
}

impl Order {
    pub(super) fn new(shuffle: bool, sorted: bool) -> Self {
        Self {
            shuffle,
            sorted,
            entries: Vec::new(),
            queue: VecDeque::new(),
            last: None,
            rng: fastrand::Rng::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Replaces the listing, keeping the current pass where it can. True if it changed.
    pub(super) fn set_entries(&mut self, new: Vec<PathBuf>) -> bool {
        if new == self.entries {
            return false;
        }
        if self.shuffle {
            // Keep the rest of this pass; new files join it at random places.
            let kept: HashSet<&PathBuf> = new.iter().collect();
            let old: HashSet<&PathBuf> = self.entries.iter().collect();
            self.queue.retain(|p| kept.contains(p));
            for path in new.iter().filter(|p| !old.contains(p)) {
                let at = self.rng.usize(..=self.queue.len());
                self.queue.insert(at, path.clone());
            }
        } else {
            // Continue after the last track played, in the new list's order.
            let start = match &self.last {
                None => 0,
                Some(last) => match new.iter().position(|p| p == last) {
                    Some(i) => i + 1,
                    None if self.sorted => new.partition_point(|p| p <= last),
                    None => 0,
                },
            };
            self.queue = new[start..].iter().cloned().collect();
        }
        self.entries = new;
        true
    }

    /// The next track not rejected by `skip`, starting a new pass when this one is done.
    pub(super) fn next(&mut self, skip: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        let mut refilled = false;
        loop {
            while let Some(path) = self.queue.pop_front() {
                if !skip(&path) {
                    self.last = Some(path.clone());
                    return Some(path);
                }
            }
            if refilled || self.entries.is_empty() {
                return None;
            }
            self.refill();
            refilled = true;
        }
    }

    /// Starts a pass: list order, or a fresh shuffle that does not open with the last track.
    fn refill(&mut self) {
        let mut pass = self.entries.clone();
        if self.shuffle {
            self.rng.shuffle(&mut pass);
            if pass.len() > 1 && self.last.as_ref() == Some(&pass[0]) {
                let j = self.rng.usize(1..pass.len());
                pass.swap(0, j);
            }
        }
        self.queue = pass.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::playlist::tests::paths;

    #[test]
    fn shuffle_never_repeats_a_track_back_to_back() {
        for n in [2usize, 3, 5] {
            let names: Vec<String> = (0..n).map(|i| format!("t{i}.mp3")).collect();
            let mut order = Order::new(true, true);
            order.rng = fastrand::Rng::with_seed(n as u64);
            order.set_entries(names.iter().map(PathBuf::from).collect());
            let mut prev: Option<PathBuf> = None;
            let mut pass = HashSet::new();
            for _ in 0..3000 {
                let next = order.next(|_| false).unwrap();
                assert_ne!(
                    Some(&next),
                    prev.as_ref(),
                    "immediate repeat with {n} tracks"
                );
                // Every pass plays each track once.
                assert!(pass.insert(next.clone()), "{next:?} twice in one pass");
                if pass.len() == n {
                    pass.clear();
                }
                prev = Some(next);
            }
        }
    }

    #[test]
    fn shuffle_passes_differ() {
        let mut order = Order::new(true, true);
        order.rng = fastrand::Rng::with_seed(7);
        order.set_entries((0..8).map(|i| PathBuf::from(format!("{i}"))).collect());
        let passes: HashSet<Vec<PathBuf>> = (0..10)
            .map(|_| (0..8).map(|_| order.next(|_| false).unwrap()).collect())
            .collect();
        assert!(passes.len() > 5, "passes are not reshuffled");
    }

    #[test]
    fn sorted_order_loops_and_follows_changes() {
        let mut order = Order::new(false, true);
        order.set_entries(paths(&["a", "c", "e"]));
        assert_eq!(order.next(|_| false).unwrap(), PathBuf::from("a"));
        assert_eq!(order.next(|_| false).unwrap(), PathBuf::from("c"));
        // "c" was removed and "d" added: continue after where "c" was.
        assert!(order.set_entries(paths(&["a", "b", "d", "e"])));
        assert!(!order.set_entries(paths(&["a", "b", "d", "e"])));
        let picks: Vec<PathBuf> = (0..5).map(|_| order.next(|_| false).unwrap()).collect();
        assert_eq!(picks, paths(&["d", "e", "a", "b", "d"]));
    }

    #[test]
    fn skipped_tracks_are_passed_over_and_all_bad_is_none() {
        let mut order = Order::new(false, true);
        order.set_entries(paths(&["a", "b", "c"]));
        let not_b = |p: &Path| p == Path::new("b");
        assert_eq!(order.next(not_b).unwrap(), PathBuf::from("a"));
        assert_eq!(order.next(not_b).unwrap(), PathBuf::from("c"));
        assert_eq!(order.next(not_b).unwrap(), PathBuf::from("a"));
        assert_eq!(order.next(|_| true), None);
        let mut empty = Order::new(true, true);
        assert_eq!(empty.next(|_| false), None);
    }

    #[test]
    fn shuffle_change_keeps_the_pass_and_adds_new_files() {
        let mut order = Order::new(true, true);
        order.rng = fastrand::Rng::with_seed(1);
        order.set_entries(paths(&["a", "b", "c"]));
        let first = order.next(|_| false).unwrap();
        let mut next = paths(&["a", "b", "c", "d"]);
        next.retain(|p| *p != first || p == Path::new("d"));
        order.set_entries(next.clone());
        let rest: HashSet<PathBuf> = (0..3).map(|_| order.next(|_| false).unwrap()).collect();
        assert_eq!(rest, next.into_iter().collect());
    }
}
