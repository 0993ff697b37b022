//! One sender's chain in one room, kept in a size that does not grow with
//! the number of messages.
//!
//! Checking a message at `seq` (protocol.md 10.6) needs three things from
//! the chain: whether `seq` was seen (replay), the hash of `seq − 1` if it was
//! seen (the new message's back-link must name it), and the back-link of
//! `seq + 1` if it was seen (it must name the new message). When `seq` itself
//! was not seen, a seen `seq − 1` ends a run of consecutive sequence numbers
//! all seen and a seen `seq + 1` begins one. So the chain keeps, per run,
//! only its bounds, the back-link of its first message and the hash of its
//! last: every check is as strong as with every link kept, and the chain
//! holds one run, plus one per hole a message may still fill.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::crypto::Digest;
use crate::error::Error;

/// Consecutive sequence numbers `start..=end` (`start` is its key in
/// [`Chain::runs`]), every one of them seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    end: u64,
    /// The back-link (`previous`) of the message at `start`.
    first_previous: Digest,
    /// The envelope hash of the message at `end`.
    last_hash: Digest,
}

/// What a client keeps of one sender's chain in one room: the sequence
/// numbers seen, as runs, and the links at the edges of each run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Chain {
    /// Runs by first sequence number. No two overlap or touch (a message
    /// between two runs joins them), every sequence number is in
    /// `1..u64::MAX`.
    runs: BTreeMap<u64, Run>,
}

impl Chain {
    /// The sequence number and back-link of the next message this sender
    /// would seal: one after the highest seen, naming its hash; 1 and
    /// [`Digest::ZERO`] for an empty chain.
    pub(super) fn next(&self) -> (u64, Digest) {
        self.runs
            .last_key_value()
            .map_or((1, Digest::ZERO), |(_, run)| {
                (run.end.saturating_add(1), run.last_hash)
            })
    }

    /// A chain followed from after `seq`, whose envelope hash is `hash`: the
    /// head a roster recorded when the epoch before this device's first in
    /// the room ended. Everything up to it counts as seen (it was not this
    /// device's to see: no gap, and a message there again is a replay); the
    /// next message must link to `hash`.
    pub(super) fn after(seq: u64, hash: Digest) -> Self {
        let mut runs = BTreeMap::new();
        if seq > 0 && seq < u64::MAX {
            runs.insert(
                1,
                Run {
                    end: seq,
                    first_previous: Digest::ZERO,
                    last_hash: hash,
                },
            );
        }
        Self { runs }
    }

    /// The highest sequence number seen and its envelope hash (`0` and
    /// [`Digest::ZERO`] for an empty chain).
    pub(super) fn head(&self) -> (u64, Digest) {
        self.runs
            .last_key_value()
            .map_or((0, Digest::ZERO), |(_, run)| (run.end, run.last_hash))
    }

    /// Check that a message at `seq` pointing back to `previous`, with
    /// envelope hash `hash`, fits the chain, and record it. Returns the
    /// sequence numbers it skips above the highest seen before: a gap.
    /// Refuses `seq` 0 and `u64::MAX` and a link that does not match a
    /// neighbour with [`Error::ChainBroken`], a sequence number seen before
    /// with [`Error::Replay`]; a refused message changes nothing.
    pub(super) fn link(
        &mut self,
        seq: u64,
        previous: Digest,
        hash: Digest,
    ) -> Result<Option<RangeInclusive<u64>>, Error> {
        // Sequence numbers run from 1 and never reach u64::MAX, so `seq ± 1`
        // below cannot overflow, whatever a sender claims.
        if seq == 0 || seq == u64::MAX {
            return Err(Error::ChainBroken { seq });
        }
        // The run that begins at or below `seq`: it holds `seq` or ends
        // below it.
        let below = self.runs.range(..=seq).next_back().map(|(s, r)| (*s, *r));
        if below.is_some_and(|(_, run)| run.end >= seq) {
            return Err(Error::Replay { seq });
        }
        // A run ending at `seq − 1` ends with the message `seq` must name.
        let before = below.filter(|(_, run)| run.end == seq - 1);
        let expected_previous = if seq == 1 {
            Some(Digest::ZERO)
        } else {
            before.map(|(_, run)| run.last_hash)
        };
        if expected_previous.is_some_and(|p| p != previous) {
            return Err(Error::ChainBroken { seq });
        }
        // A run beginning at `seq + 1` begins with a message naming `seq`.
        let after = self.runs.get(&(seq + 1)).copied();
        if after.is_some_and(|run| run.first_previous != hash) {
            return Err(Error::ChainBroken { seq });
        }
        let highest = self.runs.last_key_value().map_or(0, |(_, run)| run.end);
        let gap = (seq > highest + 1).then(|| highest + 1..=seq - 1);
        // Every check passed: record it, joining the runs it touches.
        if after.is_some() {
            self.runs.remove(&(seq + 1));
        }
        let (start, first_previous) =
            before.map_or((seq, previous), |(start, run)| (start, run.first_previous));
        let (end, last_hash) = after.map_or((seq, hash), |run| (run.end, run.last_hash));
        self.runs.insert(
            start,
            Run {
                end,
                first_previous,
                last_hash,
            },
        );
        Ok(gap)
    }

    /// Append the chain: a list of runs, each `u64 start || u64 end ||
    /// first previous || last hash`, in order.
    pub(super) fn write(&self, w: &mut Writer) {
        let runs: Vec<_> = self.runs.iter().collect();
        w.list(&runs, |w, (start, run)| {
            w.u64(**start).u64(run.end);
            run.first_previous.encode(w);
            run.last_hash.encode(w);
        });
    }

    /// Read a chain written by [`Chain::write`]. Runs out of order, that
    /// overlap or touch, or hold 0 or `u64::MAX` are refused: no sequence of
    /// messages leaves them.
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let runs = r.list(|r| {
            Ok((
                r.u64()?,
                Run {
                    end: r.u64()?,
                    first_previous: Digest::decode(r)?,
                    last_hash: Digest::decode(r)?,
                },
            ))
        })?;
        // Each run must begin at least two above where the last one ended:
        // the first at 1 or above.
        let mut floor = 1;
        for (start, run) in &runs {
            if *start < floor || run.end < *start || run.end == u64::MAX {
                return Err(DecodeError::Invalid(
                    "a stored chain's runs are out of order, overlap or touch",
                ));
            }
            floor = run.end.saturating_add(2);
        }
        Ok(Self {
            runs: runs.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A stand-in for the envelope hash of message `seq` on one history.
    fn h(seq: u64) -> Digest {
        let mut d = [0; 32];
        d[..8].copy_from_slice(&seq.to_be_bytes());
        d[31] = 1;
        Digest(d)
    }

    /// The back-link message `seq` carries on that history.
    fn prev(seq: u64) -> Digest {
        if seq == 1 { Digest::ZERO } else { h(seq - 1) }
    }

    fn add(chain: &mut Chain, seq: u64) -> Result<Option<RangeInclusive<u64>>, Error> {
        chain.link(seq, prev(seq), h(seq))
    }

    #[test]
    fn extreme_sequence_numbers_are_refused_not_overflowed() {
        for seq in [0, u64::MAX] {
            assert_eq!(
                Chain::default().link(seq, Digest::ZERO, Digest::ZERO),
                Err(Error::ChainBroken { seq })
            );
        }
        let mut chain = Chain::default();
        let gap = chain.link(u64::MAX - 1, Digest([1; 32]), Digest([2; 32]));
        assert_eq!(gap, Ok(Some(1..=u64::MAX - 2)));
        assert_eq!(chain.next(), (u64::MAX, Digest([2; 32])));
        assert_eq!(
            chain.link(u64::MAX, Digest([2; 32]), Digest([3; 32])),
            Err(Error::ChainBroken { seq: u64::MAX })
        );
    }

    #[test]
    fn messages_in_order_keep_one_run_and_every_old_seq_is_still_a_replay() {
        let mut chain = Chain::default();
        for seq in 1..=1000 {
            assert_eq!(add(&mut chain, seq), Ok(None));
        }
        assert_eq!(chain.runs.len(), 1, "compacted to one run");
        assert_eq!(chain.next(), (1001, h(1000)));
        for seq in [1, 2, 500, 999, 1000] {
            assert_eq!(add(&mut chain, seq), Err(Error::Replay { seq }));
            // Whatever it links to.
            assert_eq!(
                chain.link(seq, Digest([7; 32]), Digest([8; 32])),
                Err(Error::Replay { seq })
            );
        }
        // The next one must name the last one's hash.
        assert_eq!(
            chain.link(1001, h(999), h(1001)),
            Err(Error::ChainBroken { seq: 1001 })
        );
        assert_eq!(add(&mut chain, 1001), Ok(None));
    }

    #[test]
    fn a_hole_is_reported_as_a_gap_and_filled_once_each_in_any_order() {
        let mut chain = Chain::default();
        assert_eq!(add(&mut chain, 1), Ok(None));
        assert_eq!(add(&mut chain, 2), Ok(None));
        // 3 to 5 withheld: a gap, and a second run.
        assert_eq!(add(&mut chain, 6), Ok(Some(3..=5)));
        assert_eq!(add(&mut chain, 7), Ok(None));
        assert_eq!(chain.runs.len(), 2);
        // A jump above a hole reports only what is above the highest.
        assert_eq!(add(&mut chain, 10), Ok(Some(8..=9)));
        assert_eq!(chain.runs.len(), 3);
        // Late arrivals within a hole are accepted, in any order, once each.
        assert_eq!(add(&mut chain, 4), Ok(None));
        assert_eq!(add(&mut chain, 4), Err(Error::Replay { seq: 4 }));
        assert_eq!(add(&mut chain, 5), Ok(None));
        assert_eq!(add(&mut chain, 3), Ok(None));
        assert_eq!(add(&mut chain, 3), Err(Error::Replay { seq: 3 }));
        assert_eq!(add(&mut chain, 9), Ok(None));
        assert_eq!(add(&mut chain, 8), Ok(None));
        assert_eq!(chain.runs.len(), 1, "every hole filled, one run again");
        for seq in 1..=10 {
            assert_eq!(add(&mut chain, seq), Err(Error::Replay { seq }));
        }
        assert_eq!(chain.next(), (11, h(10)));
    }

    #[test]
    fn a_late_message_must_link_to_both_neighbours() {
        let mut chain = Chain::default();
        for seq in [1, 2, 4, 5] {
            assert!(add(&mut chain, seq).is_ok());
        }
        // 3 must name 2's hash, and 4 must name 3's.
        assert_eq!(
            chain.link(3, h(1), h(3)),
            Err(Error::ChainBroken { seq: 3 })
        );
        assert_eq!(
            chain.link(3, h(2), Digest([9; 32])),
            Err(Error::ChainBroken { seq: 3 })
        );
        assert_eq!(chain.runs.len(), 2, "a refused message changes nothing");
        // The first message names nothing.
        let mut other = Chain::default();
        assert_eq!(add(&mut other, 2), Ok(Some(1..=1)));
        assert_eq!(
            other.link(1, Digest([9; 32]), h(1)),
            Err(Error::ChainBroken { seq: 1 })
        );
        assert_eq!(
            other.link(1, Digest::ZERO, Digest([9; 32])),
            Err(Error::ChainBroken { seq: 1 })
        );
        assert_eq!(add(&mut chain, 3), Ok(None));
        assert_eq!(add(&mut other, 1), Ok(None));
    }

    #[test]
    fn a_chain_reads_back_as_written_and_malformed_runs_are_refused() {
        let mut chain = Chain::default();
        for seq in [1, 2, 3, 7, 9, 10] {
            assert!(add(&mut chain, seq).is_ok());
        }
        let mut w = Writer::new();
        chain.write(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(Reader::decode_all(&bytes, Chain::read), Ok(chain));
        let run = |start: u64, end: u64| {
            let mut w = Writer::new();
            w.u64(start).u64(end).fixed(&[0; 64]);
            w.into_bytes()
        };
        for runs in [
            vec![run(0, 1)],
            vec![run(2, 1)],
            vec![run(1, u64::MAX)],
            vec![run(1, 3), run(3, 4)],
            vec![run(1, 3), run(4, 5)],
            vec![run(5, 6), run(1, 2)],
        ] {
            let mut w = Writer::new();
            w.list(&runs, |w, r| {
                w.fixed(r);
            });
            assert_eq!(
                Reader::decode_all(&w.into_bytes(), Chain::read),
                Err(DecodeError::Invalid(
                    "a stored chain's runs are out of order, overlap or touch"
                ))
            );
        }
    }

    /// The chain as it was kept before runs: every link, `seq → (hash,
    /// previous)`, checked as protocol.md 10.6 says, step by step.
    #[derive(Default)]
    struct EveryLink(BTreeMap<u64, (Digest, Digest)>);

    impl EveryLink {
        fn link(
            &mut self,
            seq: u64,
            previous: Digest,
            hash: Digest,
        ) -> Result<Option<RangeInclusive<u64>>, Error> {
            if seq == 0 || seq == u64::MAX {
                return Err(Error::ChainBroken { seq });
            }
            if self.0.contains_key(&seq) {
                return Err(Error::Replay { seq });
            }
            let expected = if seq == 1 {
                Some(Digest::ZERO)
            } else {
                self.0.get(&(seq - 1)).map(|(hash, _)| *hash)
            };
            if expected.is_some_and(|p| p != previous) {
                return Err(Error::ChainBroken { seq });
            }
            if self.0.get(&(seq + 1)).is_some_and(|(_, p)| *p != hash) {
                return Err(Error::ChainBroken { seq });
            }
            let highest = self.0.last_key_value().map_or(0, |(s, _)| *s);
            self.0.insert(seq, (hash, previous));
            Ok((seq > highest + 1).then(|| highest + 1..=seq - 1))
        }

        fn next(&self) -> (u64, Digest) {
            self.0
                .last_key_value()
                .map_or((1, Digest::ZERO), |(seq, (hash, _))| (seq + 1, *hash))
        }
    }

    /// Message `seq` on history `branch`: several histories fork the chain.
    fn on(seq: u64, branch: u8) -> Digest {
        let mut d = h(seq).0;
        d[30] = branch;
        Digest(d)
    }

    proptest! {
        /// Whatever arrives, in whatever order, from whichever of several
        /// forked histories: the runs give every answer that keeping every
        /// link gives, and stay one more than the holes.
        #[test]
        fn runs_answer_exactly_as_every_link_kept(
            arrivals in proptest::collection::vec((0u64..16, 0u8..3, 0u8..3), 0..80)
        ) {
            let mut runs = Chain::default();
            let mut model = EveryLink::default();
            for (seq, back, branch) in arrivals {
                let previous = if seq <= 1 { Digest::ZERO } else { on(seq - 1, back) };
                let hash = on(seq, branch);
                prop_assert_eq!(runs.link(seq, previous, hash), model.link(seq, previous, hash));
                prop_assert_eq!(runs.next(), model.next());
                let holes = model
                    .0
                    .keys()
                    .zip(model.0.keys().skip(1))
                    .filter(|(a, b)| **b > **a + 1)
                    .count();
                prop_assert_eq!(runs.runs.len(), if model.0.is_empty() { 0 } else { holes + 1 });
            }
        }
    }
}
