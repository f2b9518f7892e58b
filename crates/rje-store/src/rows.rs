//! How the SQL stores read their rows as the domain's values, and write
//! the domain's values into columns, the same in both dialects.

use rje_domain::{HostOutcome, Job, JobId, JobParameters, ListedJob, Priority, Status, Stream};

use crate::{ActiveCount, StoreError};

pub(crate) fn corrupt(what: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::Internal(format!("stored {what} is invalid: {value:?}"))
}

pub(crate) fn to_u32(what: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(what, value))
}

/// A number on its way into a narrower column. The domain's limits keep
/// every value in range, so a miss is a bug, reported rather than wrapped.
pub(crate) fn fit<T, U>(what: &str, value: U) -> Result<T, StoreError>
where
    T: TryFrom<U>,
    U: Copy + std::fmt::Debug,
{
    T::try_from(value)
        .map_err(|_| StoreError::Internal(format!("{what} {value:?} does not fit its column")))
}

/// How both stores write a stream: 0 for stdout, 1 for stderr.
pub(crate) fn stream_code(stream: Stream) -> i16 {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// One row of [`crate::sql::COUNT_ACTIVE_SQL`].
pub(crate) fn active_count(
    status: &str,
    priority: i64,
    jobs: i64,
) -> Result<ActiveCount, StoreError> {
    Ok(ActiveCount {
        status: status.parse().map_err(|_| corrupt("status", status))?,
        priority: Priority::from_rank(priority).ok_or_else(|| corrupt("priority", priority))?,
        jobs: u64::try_from(jobs).map_err(|_| corrupt("count", jobs))?,
    })
}

/// Every status with its count from [`crate::sql::COUNT_BY_STATUS_SQL`]'s
/// rows.
pub(crate) fn status_counts(rows: Vec<(String, i64)>) -> Result<Vec<(Status, u64)>, StoreError> {
    let mut counts: Vec<(Status, u64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
    for (status, jobs) in rows {
        let status: Status = status.parse().map_err(|_| corrupt("status", &status))?;
        let jobs = u64::try_from(jobs).map_err(|_| corrupt("count", jobs))?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
            slot.1 = jobs;
        }
    }
    Ok(counts)
}

/// Where a taken-up job's output goes on, and what of it is stored: see
/// [`crate::Reattached`].
pub(crate) type StoredOutput = ([u64; 2], Vec<(i64, Stream, u64, u64)>);

/// A taken-up job's stored output from its rows `(seq, stream, bytes,
/// dropped_before, source_end)` in seq order: per stream the offset to
/// read on from (the largest `source_end`), and the layout the new pump
/// rebuilds its output budget from.
pub(crate) fn stored_output(
    rows: Vec<(i64, i64, i64, i64, Option<i64>)>,
) -> Result<StoredOutput, StoreError> {
    let mut offsets = [0u64; 2];
    let mut stored = Vec::with_capacity(rows.len());
    for (seq, stream, bytes, dropped, end) in rows {
        let stream = Stream::from_index(stream).ok_or_else(|| corrupt("stream", stream))?;
        if let Some(end) = end {
            let end = u64::try_from(end).map_err(|_| corrupt("source_end", end))?;
            offsets[stream.index()] = offsets[stream.index()].max(end);
        }
        stored.push((
            seq,
            stream,
            u64::try_from(bytes).map_err(|_| corrupt("length", bytes))?,
            u64::try_from(dropped).map_err(|_| corrupt("dropped_before", dropped))?,
        ));
    }
    Ok((offsets, stored))
}

/// Where a job stands from its status in the store and whether a lease on
/// it is live: see [`crate::Standing`].
pub(crate) fn standing(status: &str, lease_live: bool) -> crate::Standing {
    match (status == rje_domain::Status::Running.as_str(), lease_live) {
        (true, true) => crate::Standing::Held,
        (true, false) => crate::Standing::Orphaned,
        (false, _) => crate::Standing::Over,
    }
}

/// Why a job was not taken up, from its status in the store (`None`: no
/// such job): see [`crate::TakeUp`].
pub(crate) fn not_taken_up(status: Option<&str>) -> crate::TakeUp {
    match status.map(|status| standing(status, true)) {
        Some(crate::Standing::Held | crate::Standing::Orphaned) => crate::TakeUp::Held,
        Some(crate::Standing::Over) => crate::TakeUp::Over,
        None => crate::TakeUp::Unknown,
    }
}

/// Parameters as a store kept them; see [`JobParameters::from_stored`].
pub(crate) fn stored_parameters(json: serde_json::Value) -> Result<JobParameters, StoreError> {
    JobParameters::from_stored(json).map_err(|err| corrupt("parameters", err))
}

/// An outcome as a store kept it.
pub(crate) fn stored_outcome(text: Option<String>) -> Result<Option<HostOutcome>, StoreError> {
    text.map(|text| text.parse().map_err(|_| corrupt("outcome", text)))
        .transpose()
}

/// The output view of a job row: its tails cut to `tail_bytes` and the
/// size of each stream's whole output.
pub(crate) fn output_view(
    mut job: Job,
    tail_bytes: u32,
    sizes: [Option<i64>; 2],
) -> Result<ListedJob, StoreError> {
    let size = |n: Option<i64>| {
        n.map(|n| u64::try_from(n).map_err(|_| corrupt("output size", n)))
            .transpose()
    };
    let output_bytes = [size(sizes[0])?, size(sizes[1])?];
    let limit = usize::try_from(tail_bytes).unwrap_or(usize::MAX);
    for (text, bytes) in [
        (&mut job.stdout, output_bytes[0]),
        (&mut job.stderr, output_bytes[1]),
    ] {
        if bytes.is_none() || tail_bytes == 0 {
            *text = None;
        } else if let Some(text) = text {
            let cut = text.len().saturating_sub(limit);
            let cut = (cut..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            text.drain(..cut);
        }
    }
    Ok(ListedJob { job, output_bytes })
}

/// The ids of a job's retries, as the stores aggregate them
/// (comma-separated, oldest first).
pub(crate) fn retry_ids(text: Option<&str>) -> Result<Vec<JobId>, StoreError> {
    text.into_iter()
        .flat_map(|text| text.split(','))
        .filter(|id| !id.is_empty())
        .map(|id| JobId::parse(id).ok_or_else(|| corrupt("retries", id)))
        .collect()
}
