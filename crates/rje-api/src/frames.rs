//! A job's output messages, encoded once for all its subscribers.
//!
//! The contract's output message carries the text as a JSON string, and
//! escaping it is most of a message's cost (`seq`'s output is an escape
//! every 7 bytes). A thousand subscribers of one job each escaped each
//! chunk again; now the first to send a chunk encodes it and the others
//! send the same bytes, shared, not copied.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::extract::ws::Utf8Bytes;
use rje_domain::{Chunk, JobId};
use rje_proto::WsMessage;

/// Encoded messages kept at most, in bytes: a few chunks of each of the
/// jobs being followed now. Older ones are encoded again if asked for.
const BUDGET: usize = 8 * 1024 * 1024;

/// A chunk as a message shows it: its place, and what its text is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FrameKey {
    job: JobId,
    seq: i64,
    dropped_before: u64,
    len: usize,
}

#[derive(Default)]
struct Frames {
    by_key: HashMap<FrameKey, Utf8Bytes>,
    /// Oldest first, for eviction.
    order: VecDeque<FrameKey>,
    bytes: usize,
}

#[derive(Default)]
pub(crate) struct OutputFrames {
    frames: Mutex<Frames>,
}

impl OutputFrames {
    /// The output message of `chunk` of job `job`, encoded once.
    pub(crate) fn output(&self, job: JobId, chunk: &Chunk) -> serde_json::Result<Utf8Bytes> {
        let key = FrameKey {
            job,
            seq: chunk.seq,
            dropped_before: chunk.dropped_before,
            len: chunk.text.len(),
        };
        if let Some(frame) = self
            .lock()
            .and_then(|frames| frames.by_key.get(&key).cloned())
        {
            return Ok(frame);
        }
        // Encoded outside the lock: other jobs' subscribers need not wait.
        let frame = Utf8Bytes::from(serde_json::to_string(&WsMessage::output(chunk))?);
        if frame.len() <= BUDGET
            && let Some(mut frames) = self.lock()
            && !frames.by_key.contains_key(&key)
        {
            frames.bytes += frame.len();
            frames.by_key.insert(key, frame.clone());
            frames.order.push_back(key);
            while frames.bytes > BUDGET {
                let Some(oldest) = frames.order.pop_front() else {
                    break;
                };
                if let Some(gone) = frames.by_key.remove(&oldest) {
                    frames.bytes -= gone.len();
                }
            }
        }
        Ok(frame)
    }

    /// The frames, or `None` if a panic poisoned them: then every message
    /// is encoded for its subscriber, as before there was a cache.
    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Frames>> {
        self.frames.lock().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: i64, text: &str) -> Chunk {
        Chunk {
            seq,
            stream: rje_domain::Stream::Stdout,
            text: text.to_owned(),
            timestamp: chrono::Utc::now(),
            dropped_before: 0,
            source_end: None,
        }
    }

    #[test]
    fn a_chunk_is_encoded_once_and_shared() {
        let frames = OutputFrames::default();
        let job = JobId::new();
        let first = frames.output(job, &chunk(1, "a\nb\n")).unwrap();
        let again = frames.output(job, &chunk(1, "a\nb\n")).unwrap();
        assert_eq!(
            first.as_str().as_ptr(),
            again.as_str().as_ptr(),
            "the same bytes"
        );
        let message: WsMessage = serde_json::from_str(first.as_str()).unwrap();
        assert_eq!(message.log, "a\nb\n");
        assert_eq!(message.seq, Some(1));
        let other = frames.output(JobId::new(), &chunk(1, "c\n")).unwrap();
        assert!(
            other.as_str().contains("c\\n"),
            "another job's chunk 1 is its own"
        );
    }

    #[test]
    fn the_cache_keeps_to_its_budget() {
        let frames = OutputFrames::default();
        let job = JobId::new();
        let text = "x".repeat(1024 * 1024);
        for seq in 0..20 {
            frames.output(job, &chunk(seq, &text)).unwrap();
        }
        let kept = frames.lock().unwrap();
        assert!(kept.bytes <= BUDGET, "{}", kept.bytes);
        assert_eq!(kept.by_key.len(), kept.order.len());
        assert!(!kept.by_key.contains_key(&FrameKey {
            job,
            seq: 0,
            dropped_before: 0,
            len: text.len()
        }));
    }
}
