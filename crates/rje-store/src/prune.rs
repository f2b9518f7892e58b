//! The plan of a prune of a job's output: which chunks go, and where the
//! kept tail begins.

use crate::Pruned;

/// What to do to keep at most `keep` bytes of a stream's tail.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PrunePlan {
    /// Chunks to delete whole: seq from the first up to (not including)
    /// the second.
    pub delete: Option<(i64, i64)>,
    /// The oldest chunk kept, when older ones go: its front is cut to fit.
    pub boundary: Option<Boundary>,
    /// What the prune leaves; the boundary's cut adds what it keeps.
    pub result: Pruned,
}

/// The chunk where a pruned tail now begins.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Boundary {
    pub seq: i64,
    /// Bytes of its text that may stay.
    pub room: usize,
    /// Bytes dropped before it so far, not counting its own cut; it records
    /// them in `dropped_before`.
    pub dropped: u64,
}

/// Plans a prune of a stream's tail chunks, given newest first as (seq,
/// bytes, dropped_before), down to `keep` bytes. With `keep` 0 every chunk
/// goes, and the count of what they held (and recorded as dropped before
/// them) is the caller's to record.
pub(crate) fn plan_prune(rows: &[(i64, i64, i64)], keep: u64) -> PrunePlan {
    let size = |n: i64| u64::try_from(n).unwrap_or(0);
    let weight = |rows: &[(i64, i64, i64)]| -> u64 {
        rows.iter()
            .map(|&(_, len, dropped)| size(len) + size(dropped))
            .sum()
    };
    let whole =
        |oldest: &[(i64, i64, i64)], until: i64| oldest.last().map(|&(seq, _, _)| (seq, until));
    if keep == 0 {
        return PrunePlan {
            delete: rows
                .first()
                .and_then(|&(newest, _, _)| whole(rows, newest + 1)),
            boundary: None,
            result: Pruned {
                kept: 0,
                unrecorded: weight(rows),
            },
        };
    }
    let mut kept = 0u64;
    let boundary = rows.iter().position(|&(_, len, _)| {
        let fits = kept + size(len) <= keep;
        if fits {
            kept += size(len);
        }
        !fits
    });
    let result = Pruned {
        kept,
        unrecorded: 0,
    };
    let Some(boundary) = boundary else {
        return PrunePlan {
            delete: None,
            boundary: None,
            result,
        };
    };
    let (seq, _, already_dropped) = rows[boundary];
    let older = &rows[boundary + 1..];
    PrunePlan {
        delete: whole(older, seq),
        boundary: Some(Boundary {
            seq,
            room: usize::try_from(keep - kept).unwrap_or(usize::MAX),
            dropped: weight(older) + size(already_dropped),
        }),
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prune_keeps_the_newest_chunks_that_fit() {
        // Newest first: 5 (10 bytes), 4 (10), 3 (10, 7 dropped before it).
        let rows = [(5, 10, 0), (4, 10, 0), (3, 10, 7)];
        let nothing = plan_prune(&rows, 100);
        assert_eq!((nothing.delete, nothing.boundary), (None, None));
        assert_eq!(nothing.result.kept, 30);

        let all = plan_prune(&rows, 0);
        assert_eq!(all.delete, Some((3, 6)));
        assert_eq!(all.boundary, None);
        assert_eq!(
            all.result,
            Pruned {
                kept: 0,
                unrecorded: 37
            }
        );

        let cut = plan_prune(&rows, 15);
        assert_eq!(cut.delete, Some((3, 4)));
        assert_eq!(
            cut.boundary,
            Some(Boundary {
                seq: 4,
                room: 5,
                dropped: 17
            })
        );
        assert_eq!(
            cut.result,
            Pruned {
                kept: 10,
                unrecorded: 0
            }
        );
    }
}
