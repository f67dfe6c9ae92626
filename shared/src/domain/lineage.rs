//! The sequence numbers of a message's ancestors, kept with it: a turn whose path goes back
//! past the newest messages it read then reads that path and nothing else, however many
//! branches lie beside it.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// A message's ancestors as runs of consecutive sequence numbers, oldest first. A branch's
/// messages mostly follow one another, so a path of hundreds of messages is a few runs: one
/// more for each edit, regeneration or interleaved turn on the way. Only the newest
/// [`Lineage::MAX_RUNS`] are kept, so an item stays small; the oldest ancestor they name
/// carries the runs before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lineage(Vec<[u64; 2]>);

impl Lineage {
    pub const MAX_RUNS: usize = 32;

    /// The lineage of a first message: no ancestors.
    pub fn root() -> Self {
        Self::default()
    }

    /// What a message that follows the message at `sequence`, whose lineage this is, carries.
    pub fn then(&self, sequence: u64) -> Self {
        let mut runs = self.0.clone();
        match runs.last_mut() {
            Some([_, last]) if *last + 1 == sequence => *last = sequence,
            _ => runs.push([sequence, sequence]),
        }
        let over = runs.len().saturating_sub(Self::MAX_RUNS);
        runs.drain(..over);
        Self(runs)
    }

    /// The sequence number of the parent: the newest ancestor.
    pub fn parent_sequence(&self) -> Option<u64> {
        self.0.last().map(|&[_, last]| last)
    }

    /// The sequence numbers of the nearest `count` ancestors (fewer when it names fewer), as
    /// runs, oldest first.
    pub fn nearest(&self, count: usize) -> Vec<RangeInclusive<u64>> {
        let mut left = count as u64;
        let mut runs = Vec::new();
        for &[first, last] in self.0.iter().rev() {
            if left == 0 {
                break;
            }
            let taken = (last - first + 1).min(left);
            runs.push(last + 1 - taken..=last);
            left -= taken;
        }
        runs.reverse();
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lineage_of(path: &[u64]) -> Lineage {
        path.iter()
            .fold(Lineage::root(), |lineage, &seq| lineage.then(seq))
    }

    #[test]
    fn consecutive_ancestors_are_one_run_and_a_branch_starts_another() {
        assert_eq!(lineage_of(&[1, 2, 3, 4]), Lineage(vec![[1, 4]]));
        assert_eq!(
            lineage_of(&[1, 2, 7, 8, 12]),
            Lineage(vec![[1, 2], [7, 8], [12, 12]])
        );
    }

    #[test]
    fn the_nearest_ancestors_are_cut_from_the_newest_runs() {
        let lineage = lineage_of(&[1, 2, 3, 7, 8, 12]);
        assert_eq!(lineage.nearest(0), Vec::<RangeInclusive<u64>>::new());
        assert_eq!(lineage.nearest(2), [8..=8, 12..=12]);
        assert_eq!(lineage.nearest(4), [3..=3, 7..=8, 12..=12]);
        assert_eq!(lineage.nearest(100), [1..=3, 7..=8, 12..=12]);
    }

    #[test]
    fn only_the_newest_runs_are_kept() {
        let alternating: Vec<u64> = (1..=100).map(|i| i * 2).collect();
        let lineage = lineage_of(&alternating);
        assert_eq!(lineage.0.len(), Lineage::MAX_RUNS);
        assert_eq!(lineage.0.first(), Some(&[138, 138]));
        assert_eq!(lineage.0.last(), Some(&[200, 200]));
    }
}
