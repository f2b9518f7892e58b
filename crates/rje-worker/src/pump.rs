//! Moves a command's output from the executor into the store and onto the
//! bus: whole lines, batched, capped, in order.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rje_bus::{Bus, JobEvent};
use rje_domain::{Chunk, JobId, OutputBudget, OutputSplitter, Stream, head_cut, tail_cut};
use rje_exec::ExecEvent;
use rje_store::{Queue, StoreError};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};

use crate::WorkerConfig;

/// The largest chunk written: big enough that floods take few rows, small
/// enough that one chunk is one comfortable WebSocket message.
const MAX_CHUNK: usize = 64 * 1024;

/// How a pump ended.
#[derive(Debug)]
pub(crate) enum PumpEnd {
    /// All output is stored and published. Carries the process id if it
    /// is still to be written (it then goes with the outcome).
    Done { process_id: Option<String> },
    /// The store refused a write: the job moved on from this attempt.
    Fenced,
    /// The store stayed unreachable; output after this point is lost.
    StoreFailed(StoreError),
}

pub(crate) struct OutputPump<'a> {
    store: &'a dyn Queue,
    bus: &'a dyn Bus,
    config: &'a WorkerConfig,
    job: JobId,
    attempt: u32,
    next_seq: i64,
    splitter: OutputSplitter,
    /// Offsets in the command's streams the output starts from (a job
    /// taken up again), so that each chunk records where it ends in them;
    /// bytes the executor skipped move them on.
    source_base: [u64; 2],
    /// Bytes of each stream skipped (gone before anyone read them) and not
    /// yet stated: the next chunk of the stream says so.
    skipped: [u64; 2],
    budget: OutputBudget,
    /// Chunks read but not yet stored, with whether each is head output.
    pending: Vec<(Chunk, bool)>,
    pending_bytes: usize,
    /// Tail bytes of each stream among the pending chunks.
    pending_tail: [u64; 2],
    /// When the oldest pending chunk must be written by.
    batch_due: Option<Instant>,
    /// Since when each stream has held a partial line.
    partial_since: [Option<Instant>; 2],
    /// The command's process id, known but not yet stored: it rides along
    /// with the next batch, or with the outcome, rather than costing a
    /// write of its own.
    process_id: Option<String>,
}

impl<'a> OutputPump<'a> {
    pub(crate) fn new(
        store: &'a dyn Queue,
        bus: &'a dyn Bus,
        config: &'a WorkerConfig,
        job: JobId,
        attempt: u32,
        last_seq: i64,
    ) -> Self {
        Self {
            store,
            bus,
            config,
            job,
            attempt,
            next_seq: last_seq + 1,
            splitter: OutputSplitter::new(MAX_CHUNK),
            budget: OutputBudget::new(config.max_output_bytes),
            pending: Vec::new(),
            pending_bytes: 0,
            pending_tail: [0, 0],
            batch_due: None,
            partial_since: [None, None],
            process_id: None,
            source_base: [0, 0],
            skipped: [0, 0],
        }
    }

    /// A pump for a job taken up again: its output goes on from `offsets`
    /// in the command's streams, and what is `stored` already counts
    /// against the output cap.
    pub(crate) fn resuming(
        mut self,
        offsets: [u64; 2],
        stored: &[(i64, Stream, u64, u64)],
    ) -> Self {
        self.source_base = offsets;
        self.budget = OutputBudget::resume(self.config.max_output_bytes, stored);
        self
    }

    /// Where the text given out so far ends in `stream`'s raw bytes.
    fn source_end(&self, stream: Stream) -> u64 {
        self.source_base[stream.index()] + self.splitter.taken(stream)
    }

    /// Runs until the executor closes its end of `events`.
    pub(crate) async fn run(mut self, mut events: mpsc::Receiver<ExecEvent>) -> PumpEnd {
        match self.pump(&mut events).await {
            Ok(()) => PumpEnd::Done {
                process_id: self.process_id,
            },
            Err(StoreError::Fenced) => PumpEnd::Fenced,
            Err(err) => PumpEnd::StoreFailed(err),
        }
    }

    async fn pump(&mut self, events: &mut mpsc::Receiver<ExecEvent>) -> Result<(), StoreError> {
        loop {
            let due = self.next_due();
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    None => break,
                    Some(ExecEvent::Started { process_id }) => {
                        self.process_id = Some(process_id);
                        self.batch_due.get_or_insert_with(|| Instant::now() + self.config.batch_interval);
                    }
                    Some(ExecEvent::Skipped { stream, bytes }) => self.skip(stream, bytes).await?,
                    Some(ExecEvent::Output { stream, bytes }) => {
                        if let Some(text) = self.splitter.push(stream, &bytes) {
                            let end = self.source_end(stream);
                            self.stage(stream, text, end).await?;
                        }
                        self.track_partial(stream);
                        if self.pending_bytes >= self.config.batch_bytes {
                            self.flush().await?;
                        }
                    }
                },
                () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    self.flush_partial_lines().await?;
                    if self.batch_due.is_some_and(|at| at <= Instant::now()) {
                        self.flush().await?;
                    }
                }
            }
        }
        for stream in Stream::BOTH {
            if let Some(text) = self.splitter.finish(stream) {
                let end = self.source_end(stream);
                self.stage(stream, text, end).await?;
            }
        }
        if !self.pending.is_empty() {
            self.flush().await?;
        }
        Ok(())
    }

    fn next_due(&self) -> Option<Instant> {
        let partial = self
            .partial_since
            .iter()
            .flatten()
            .map(|since| *since + self.config.partial_line_wait)
            .min();
        match (self.batch_due, partial) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn track_partial(&mut self, stream: Stream) {
        let since = &mut self.partial_since[stream.index()];
        match (self.splitter.has_partial(stream), *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, Some(_)) => *since = None,
            _ => {}
        }
    }

    /// Writes out lines that waited too long for their newline.
    async fn flush_partial_lines(&mut self) -> Result<(), StoreError> {
        let now = Instant::now();
        for stream in Stream::BOTH {
            let waited_enough = self.partial_since[stream.index()]
                .is_some_and(|since| since + self.config.partial_line_wait <= now);
            if waited_enough {
                if let Some(text) = self.splitter.flush_partial(stream) {
                    let end = self.source_end(stream);
                    self.stage(stream, text, end).await?;
                }
                self.partial_since[stream.index()] = None;
                self.track_partial(stream);
            }
        }
        Ok(())
    }

    /// `bytes` of `stream` are gone: what came before goes out as it is
    /// (a line cut by the gap ends there), and the next chunk of the
    /// stream states the gap, as the output cap's own drops do.
    async fn skip(&mut self, stream: Stream, bytes: u64) -> Result<(), StoreError> {
        if let Some(text) = self.splitter.flush_partial(stream) {
            let end = self.source_end(stream);
            self.stage(stream, text, end).await?;
        }
        self.track_partial(stream);
        self.source_base[stream.index()] += bytes;
        self.skipped[stream.index()] += bytes;
        Ok(())
    }

    /// Queues text for the next batch, split between head and tail by the
    /// output budget and cut into chunks of at most [`MAX_CHUNK`]. `end`:
    /// the offset in the raw stream just past this text, which the last
    /// chunk records (a durable job's successor reads on from there).
    async fn stage(&mut self, stream: Stream, text: String, end: u64) -> Result<(), StoreError> {
        let mut skipped = std::mem::take(&mut self.skipped[stream.index()]);
        let admission = self.budget.admit(stream, text);
        let has_tail = admission.tail.is_some();
        if let Some(head) = admission.head {
            let gap = std::mem::take(&mut skipped);
            self.stage_pieces(stream, head, true, gap, (!has_tail).then_some(end));
        }
        if let Some(mut tail) = admission.tail {
            let budget = usize::try_from(self.budget.tail_budget()).unwrap_or(usize::MAX);
            let cut = tail_cut(&tail, budget);
            let dropped = cut as u64 + skipped;
            if dropped > 0 || self.pending_tail[stream.index()] + tail.len() as u64 > budget as u64
            {
                // This text pushes older output out of the tail's window:
                // store what is pending first, so that the window moves in
                // the store, which keeps the count of what it dropped.
                self.flush().await?;
            }
            if cut > 0 {
                tail.drain(..cut);
            }
            self.stage_pieces(stream, tail, false, dropped, Some(end));
        }
        if self.batch_due.is_none() && !self.pending.is_empty() {
            self.batch_due = Some(Instant::now() + self.config.batch_interval);
        }
        Ok(())
    }

    /// Stages `text` in pieces of at most [`MAX_CHUNK`]; the first carries
    /// `dropped_before`, the last `source_end`.
    fn stage_pieces(
        &mut self,
        stream: Stream,
        mut text: String,
        is_head: bool,
        dropped: u64,
        source_end: Option<u64>,
    ) {
        let mut dropped_before = dropped;
        while !text.is_empty() {
            let cut = if text.len() > MAX_CHUNK {
                match head_cut(&text, MAX_CHUNK) {
                    0 => text.len(),
                    cut => cut,
                }
            } else {
                text.len()
            };
            let rest = text.split_off(cut);
            let end = if rest.is_empty() { source_end } else { None };
            self.stage_piece(
                stream,
                text,
                is_head,
                std::mem::take(&mut dropped_before),
                end,
            );
            text = rest;
        }
    }

    fn stage_piece(
        &mut self,
        stream: Stream,
        text: String,
        is_head: bool,
        dropped_before: u64,
        source_end: Option<u64>,
    ) {
        let len = text.len();
        self.pending_bytes += len;
        let seq = match self.pending.last_mut() {
            // Consecutive output of one stream and region shares a chunk.
            Some((last, last_head))
                if last.stream == stream
                    && *last_head == is_head
                    && dropped_before == 0
                    && last.text.len() + len <= MAX_CHUNK =>
            {
                last.text.push_str(&text);
                // A piece that is not the last of its text leaves the chunk's
                // end unknown; the next piece's chunk, stored with it, says it.
                last.source_end = source_end;
                last.seq
            }
            _ => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.pending.push((
                    Chunk {
                        seq,
                        stream,
                        text,
                        timestamp: Utc::now(),
                        dropped_before,
                        source_end,
                    },
                    is_head,
                ));
                seq
            }
        };
        if is_head {
            self.budget.stored_head(stream, seq);
        } else {
            self.pending_tail[stream.index()] += len as u64;
        }
    }

    /// Stores the pending chunks (and the process id) in one transaction,
    /// then publishes them.
    async fn flush(&mut self) -> Result<(), StoreError> {
        self.batch_due = None;
        if self.pending.is_empty() && self.process_id.is_none() {
            return Ok(());
        }
        for stream in Stream::BOTH {
            self.make_room(stream).await?;
        }
        let chunks: Arc<[Chunk]> = self.pending.drain(..).map(|(chunk, _)| chunk).collect();
        self.pending_bytes = 0;
        let mut bytes = [0u64; 2];
        for chunk in chunks.iter() {
            bytes[chunk.stream.index()] += chunk.text.len() as u64;
        }
        for stream in Stream::BOTH {
            metrics::counter!("rje_job_output_bytes_total", "stream" => stream.as_str())
                .increment(bytes[stream.index()]);
        }
        let (store, job, attempt) = (self.store, self.job, self.attempt);
        let process_id = self.process_id.as_deref();
        with_retries(|| store.append_output(job, attempt, &chunks, process_id)).await?;
        self.process_id = None;
        for stream in Stream::BOTH {
            let stored = std::mem::take(&mut self.pending_tail[stream.index()]);
            self.budget.stored_tail(stream, stored);
        }
        if !chunks.is_empty() {
            self.bus.publish(JobEvent::Output { job, chunks }).await;
        }
        Ok(())
    }

    /// Before a batch is written, older tail output of `stream` makes room
    /// for it, so that the stored output is within the cap at every moment
    /// and a crash never leaves more.
    async fn make_room(&mut self, stream: Stream) -> Result<(), StoreError> {
        let incoming = self.pending_tail[stream.index()];
        let Some(first) = self
            .pending
            .iter()
            .position(|(chunk, is_head)| chunk.stream == stream && !is_head)
        else {
            return Ok(());
        };
        let cut_before = self.pending[first].0.dropped_before;
        let Some(keep) = self.budget.keep_for(stream, incoming, cut_before) else {
            return Ok(());
        };
        let (store, job, attempt) = (self.store, self.job, self.attempt);
        let after = self.budget.head_last_seq(stream);
        let pruned = with_retries(|| store.prune_output(job, attempt, stream, after, keep)).await?;
        self.budget.pruned(stream, pruned.kept);
        // What no stored chunk records any more, the next one does.
        self.pending[first].0.dropped_before += pruned.unrecorded;
        Ok(())
    }
}

/// Retries a store write that failed because the store was unreachable,
/// with growing pauses, for about half a minute. Meanwhile the command's
/// output waits in its pipe, so nothing is lost and memory stays flat.
pub(crate) async fn with_retries<T, F, Fut>(mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match write().await {
            Err(StoreError::Unavailable(reason)) if tries < 12 => {
                tries += 1;
                tracing::warn!(%reason, tries, "store unavailable; retrying the write");
                sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            result => return result,
        }
    }
}
