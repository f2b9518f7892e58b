//! A job's output: chunks, the splitting of bytes into whole lines, and
//! the cap that keeps the head and the tail of a flood.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which of a command's output streams a chunk came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    pub fn from_index(index: i64) -> Option<Self> {
        match index {
            0 => Some(Stream::Stdout),
            1 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of a job's output. `seq` numbers a job's chunks 1, 2, … across
/// both streams in the order the worker read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub seq: i64,
    pub stream: Stream,
    pub text: String,
    pub timestamp: DateTime<Utc>,
    /// Bytes of this stream that were dropped just before this chunk to keep
    /// the output under its cap; 0 almost always.
    pub dropped_before: u64,
    /// For output followed from a file (durable jobs): the byte offset in
    /// that file just past what this chunk holds, where a successor goes
    /// on reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_end: Option<u64>,
}

/// A chunk before the store has seen it.
pub type NewChunk = Chunk;

/// The line that stands where output was dropped, naming the exact count.
pub fn drop_marker(stream: Stream, dropped: u64) -> String {
    format!("[rje: {dropped} bytes of {stream} dropped]\n")
}

impl Chunk {
    /// The chunk's text as people read it: with the drop marker in front
    /// when output was dropped before it.
    pub fn display_text(&self) -> Cow<'_, str> {
        if self.dropped_before == 0 {
            Cow::Borrowed(&self.text)
        } else {
            Cow::Owned(drop_marker(self.stream, self.dropped_before) + &self.text)
        }
    }
}

/// Turns the raw bytes a command writes into text that ends on whole lines,
/// so that no reader ever sees half a line, and never splits a UTF-8
/// character. Invalid UTF-8 is replaced, as the design says (lossy).
#[derive(Debug)]
pub struct OutputSplitter {
    carry: [Vec<u8>; 2],
    /// Bytes pushed so far, per stream.
    received: [u64; 2],
    max_line: usize,
}

impl OutputSplitter {
    /// `max_line` bounds the bytes held back waiting for a newline.
    pub fn new(max_line: usize) -> Self {
        Self {
            carry: [Vec::new(), Vec::new()],
            received: [0, 0],
            max_line: max_line.max(4),
        }
    }

    /// Takes bytes read from `stream`; returns the text that is ready: every
    /// complete line, or a long partial line cut at a character boundary.
    pub fn push(&mut self, stream: Stream, bytes: &[u8]) -> Option<String> {
        self.received[stream.index()] += bytes.len() as u64;
        let carry = &mut self.carry[stream.index()];
        carry.extend_from_slice(bytes);
        if let Some(newline) = carry.iter().rposition(|&b| b == b'\n') {
            let rest = carry.split_off(newline + 1);
            let ready = std::mem::replace(carry, rest);
            return Some(lossy(ready));
        }
        if carry.len() >= self.max_line {
            return self.flush_partial(stream);
        }
        None
    }

    /// Bytes of `stream` given out as text so far: pushed, less what is
    /// held back. Where a reader of the raw stream would go on.
    pub fn taken(&self, stream: Stream) -> u64 {
        self.received[stream.index()] - self.carry[stream.index()].len() as u64
    }

    /// Whether a partial line waits for its newline.
    pub fn has_partial(&self, stream: Stream) -> bool {
        !self.carry[stream.index()].is_empty()
    }

    /// Gives up waiting for a newline (a prompt, a progress bar): returns
    /// what is held, keeping back only an incomplete UTF-8 character.
    pub fn flush_partial(&mut self, stream: Stream) -> Option<String> {
        let carry = &mut self.carry[stream.index()];
        let keep = incomplete_utf8_suffix(carry);
        let rest = carry.split_off(carry.len() - keep);
        let ready = std::mem::replace(carry, rest);
        (!ready.is_empty()).then(|| lossy(ready))
    }

    /// The stream ended: everything held comes out.
    pub fn finish(&mut self, stream: Stream) -> Option<String> {
        let ready = std::mem::take(&mut self.carry[stream.index()]);
        (!ready.is_empty()).then(|| lossy(ready))
    }
}

/// Output as text: invalid UTF-8 and NUL bytes become U+FFFD. NUL is valid
/// UTF-8, but PostgreSQL cannot store it in text, and output must read the
/// same whichever store keeps it.
fn lossy(bytes: Vec<u8>) -> String {
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    };
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// How many trailing bytes are the start of a UTF-8 character still to come.
fn incomplete_utf8_suffix(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => 0,
        Err(err) if err.error_len().is_none() => bytes.len() - err.valid_up_to(),
        Err(_) => {
            // Invalid bytes somewhere; only a truncated character at the very
            // end is worth holding back.
            let tail_start = bytes.len().saturating_sub(3);
            (tail_start..bytes.len())
                .find(|&i| {
                    let width = utf8_width(bytes[i]);
                    width > 1 && i + width > bytes.len()
                })
                .map_or(0, |i| bytes.len() - i)
        }
    }
}

fn utf8_width(first: u8) -> usize {
    match first {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// The largest index ≤ `index` that is a character boundary of `text`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    (0..=index)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// Where to cut `text` so that at most `limit` bytes come before the cut:
/// after the last whole line that fits, else at a character boundary.
pub fn head_cut(text: &str, limit: usize) -> usize {
    let limit = floor_char_boundary(text, limit);
    match text[..limit].rfind('\n') {
        Some(newline) => newline + 1,
        None => limit,
    }
}

/// Where to cut `text` so that at most `keep` bytes remain after the cut:
/// at the start of the first whole line that fits, else at a character
/// boundary.
pub fn tail_cut(text: &str, keep: usize) -> usize {
    if keep >= text.len() {
        return 0;
    }
    let mut start = text.len() - keep;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    match text[start..].find('\n') {
        Some(newline) if start + newline + 1 < text.len() => start + newline + 1,
        _ => start,
    }
}

/// Keeps a job's stored output under `RJE_MAX_OUTPUT_BYTES` per stream: the
/// first quarter of the budget holds the head, the rest the tail, because
/// the end of a log is what people need most. The worker consults it for
/// each piece of text; its memory is a few counters, whatever the flood.
#[derive(Debug, Clone)]
pub struct OutputBudget {
    head_budget: u64,
    tail_budget: u64,
    streams: [StreamBudget; 2],
}

#[derive(Debug, Clone, Default)]
struct StreamBudget {
    head_used: u64,
    /// The last seq that belongs to the head; chunks after it may be pruned.
    head_last_seq: i64,
    /// Bytes stored after the head, since the last prune.
    tail_stored: u64,
}

/// What to do with one piece of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The part that belongs to the head, kept for good.
    pub head: Option<String>,
    /// The part past the head, kept until newer output pushes it out.
    pub tail: Option<String>,
}

impl OutputBudget {
    pub fn new(max_bytes_per_stream: u64) -> Self {
        let head_budget = max_bytes_per_stream / 4;
        Self {
            head_budget,
            tail_budget: max_bytes_per_stream - head_budget,
            streams: Default::default(),
        }
    }

    /// The budget of a job whose output is partly stored already (taken
    /// up by another worker): the stored chunks, in seq order, as (seq,
    /// stream, bytes, dropped before). The head is the stored prefix of
    /// each stream that fits it, up to the first gap; the rest is tail. A
    /// head found short stays open, so the cap holds whichever way the
    /// first worker had split it.
    pub fn resume(max_bytes_per_stream: u64, stored: &[(i64, Stream, u64, u64)]) -> Self {
        let mut budget = Self::new(max_bytes_per_stream);
        let mut closed = [false, false];
        for &(seq, stream, len, dropped_before) in stored {
            let (head_budget, state) = (budget.head_budget, &mut budget.streams[stream.index()]);
            let index = stream.index();
            if !closed[index] && dropped_before == 0 && state.head_used + len <= head_budget {
                state.head_used += len;
                state.head_last_seq = seq;
            } else {
                closed[index] = true;
                state.head_used = head_budget;
                state.tail_stored += len;
            }
        }
        budget
    }

    pub fn tail_budget(&self) -> u64 {
        self.tail_budget
    }

    /// Splits `text` into what fills the head and what goes to the tail.
    pub fn admit(&mut self, stream: Stream, text: String) -> Admission {
        let state = &mut self.streams[stream.index()];
        let room = self.head_budget.saturating_sub(state.head_used);
        if room == 0 {
            return Admission {
                head: None,
                tail: Some(text),
            };
        }
        if text.len() as u64 <= room {
            state.head_used += text.len() as u64;
            return Admission {
                head: Some(text),
                tail: None,
            };
        }
        // The head ends after a whole line: a line cut in two would show up
        // as two lines to a reader that splits chunks into lines.
        let cut = text[..floor_char_boundary(&text, room as usize)]
            .rfind('\n')
            .map_or(0, |newline| newline + 1);
        let mut head = text;
        let tail = head.split_off(cut);
        // Whatever happens, the head is now closed: a later short line must
        // not slip in after tail output and break the order.
        state.head_used = self.head_budget;
        Admission {
            head: (!head.is_empty()).then_some(head),
            tail: (!tail.is_empty()).then_some(tail),
        }
    }

    /// Records that head text went out as chunk `seq`.
    pub fn stored_head(&mut self, stream: Stream, seq: i64) {
        self.streams[stream.index()].head_last_seq = seq;
    }

    /// Records that tail text of `len` bytes was stored.
    pub fn stored_tail(&mut self, stream: Stream, len: u64) {
        self.streams[stream.index()].tail_stored += len;
    }

    /// The last chunk of the head: pruning only ever touches later chunks.
    pub fn head_last_seq(&self, stream: Stream) -> i64 {
        self.streams[stream.index()].head_last_seq
    }

    /// How many stored tail bytes may stay so that `incoming` more fit in
    /// the budget; `None` when they fit already. The stored tail never
    /// exceeds its budget, even for a moment, so a crash never leaves more.
    /// A prune goes a little further than needed (the slack), so that the
    /// next few batches fit without one: each costs a store round trip.
    /// When the incoming text was itself cut (`cut_before` bytes dropped
    /// from its front), nothing stored may stay: older text kept across a
    /// newer gap would no longer be the end of the output.
    pub fn keep_for(&self, stream: Stream, incoming: u64, cut_before: u64) -> Option<u64> {
        let stored = self.streams[stream.index()].tail_stored;
        if cut_before > 0 {
            return (stored > 0).then_some(0);
        }
        if stored + incoming <= self.tail_budget {
            return None;
        }
        let slack = (self.tail_budget / 8).min(256 * 1024);
        Some(
            self.tail_budget
                .saturating_sub(incoming)
                .saturating_sub(slack),
        )
    }

    /// Records the size of the tail after the store pruned it.
    pub fn pruned(&mut self, stream: Stream, tail_remaining: u64) {
        self.streams[stream.index()].tail_stored = tail_remaining;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_budget_keeps_the_cap_of_what_is_stored() {
        // 400 bytes: a 100-byte head and a 300-byte tail per stream.
        let stored = [
            (1, Stream::Stdout, 60, 0),
            (2, Stream::Stderr, 10, 0),
            (3, Stream::Stdout, 30, 0),
            (4, Stream::Stdout, 50, 0),
            (5, Stream::Stdout, 20, 0),
        ];
        let mut budget = OutputBudget::resume(400, &stored);
        assert_eq!(budget.head_last_seq(Stream::Stdout), 3);
        // The head is closed: 60 + 30 + 50 would not fit it.
        assert_eq!(budget.admit(Stream::Stdout, "x\n".into()).head, None);
        assert_eq!(
            budget.keep_for(Stream::Stdout, 230, 0),
            None,
            "70 + 230 fit the tail"
        );
        assert!(budget.keep_for(Stream::Stdout, 231, 0).is_some());
        // stderr's head is still open, with 90 bytes of room.
        assert_eq!(budget.head_last_seq(Stream::Stderr), 2);
        assert!(budget.admit(Stream::Stderr, "y\n".into()).head.is_some());
    }

    #[test]
    fn taken_counts_the_bytes_given_out_not_those_held_back() {
        let mut splitter = OutputSplitter::new(1024);
        assert_eq!(
            splitter.push(Stream::Stdout, b"one\ntw"),
            Some("one\n".into())
        );
        assert_eq!(splitter.taken(Stream::Stdout), 4);
        assert_eq!(splitter.push(Stream::Stdout, b"o\n"), Some("two\n".into()));
        assert_eq!(splitter.taken(Stream::Stdout), 8);
        assert_eq!(splitter.taken(Stream::Stderr), 0);
        // Invalid UTF-8 is replaced in the text, but counted as it came.
        splitter.push(Stream::Stderr, b"\xff\n");
        assert_eq!(splitter.taken(Stream::Stderr), 2);
    }

    #[test]
    fn splitter_emits_whole_lines_only() {
        let mut splitter = OutputSplitter::new(1024);
        assert_eq!(splitter.push(Stream::Stdout, b"hel"), None);
        assert_eq!(
            splitter.push(Stream::Stdout, b"lo\nwor").as_deref(),
            Some("hello\n")
        );
        assert!(splitter.has_partial(Stream::Stdout));
        assert!(!splitter.has_partial(Stream::Stderr));
        assert_eq!(
            splitter.push(Stream::Stdout, b"ld\na\nb\nc").as_deref(),
            Some("world\na\nb\n")
        );
        assert_eq!(splitter.finish(Stream::Stdout).as_deref(), Some("c"));
        assert_eq!(splitter.finish(Stream::Stdout), None);
    }

    #[test]
    fn splitter_keeps_streams_apart() {
        let mut splitter = OutputSplitter::new(1024);
        assert_eq!(splitter.push(Stream::Stdout, b"out"), None);
        assert_eq!(
            splitter.push(Stream::Stderr, b"err\n").as_deref(),
            Some("err\n")
        );
        assert_eq!(splitter.finish(Stream::Stdout).as_deref(), Some("out"));
    }

    #[test]
    fn long_partial_lines_never_split_a_character() {
        let mut splitter = OutputSplitter::new(4);
        // "aaé" is 4 bytes; push the first byte of a 3-byte '€' after it.
        let euro = "€".as_bytes();
        assert_eq!(splitter.push(Stream::Stdout, &[b'a', b'b', euro[0]]), None);
        let out = splitter.push(Stream::Stdout, &[euro[1]]).unwrap();
        assert_eq!(out, "ab");
        assert_eq!(
            splitter.push(Stream::Stdout, &[euro[2], b'\n']).as_deref(),
            Some("€\n")
        );
    }

    #[test]
    fn nul_bytes_are_replaced() {
        let mut splitter = OutputSplitter::new(1024);
        assert_eq!(
            splitter.push(Stream::Stdout, b"a\0b\n").as_deref(),
            Some("a\u{FFFD}b\n")
        );
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut splitter = OutputSplitter::new(1024);
        assert_eq!(
            splitter.push(Stream::Stdout, b"a\xffb\n").as_deref(),
            Some("a\u{FFFD}b\n")
        );
    }

    #[test]
    fn budget_splits_at_the_head_boundary_on_a_line() {
        let mut budget = OutputBudget::new(40); // head 10, tail 30
        let first = budget.admit(Stream::Stdout, "12345\n".into());
        assert_eq!(first.head.as_deref(), Some("12345\n"));
        let second = budget.admit(Stream::Stdout, "abc\ndefgh\n".into());
        assert_eq!(second.head.as_deref(), Some("abc\n"));
        assert_eq!(second.tail.as_deref(), Some("defgh\n"));
        let third = budget.admit(Stream::Stdout, "x\n".into());
        assert_eq!(third.head, None, "the head is closed once full");

        let mut budget = OutputBudget::new(40); // head 10
        budget.admit(Stream::Stdout, "1234567\n".into());
        let split = budget.admit(Stream::Stdout, "abcdef\n".into());
        assert_eq!(split.head, None, "a line that does not fit is not cut");
        assert_eq!(split.tail.as_deref(), Some("abcdef\n"));
        // The other stream has its own budget.
        assert!(budget.admit(Stream::Stderr, "e\n".into()).head.is_some());
    }

    #[test]
    fn the_tail_never_exceeds_its_budget() {
        // 4 MiB: a 1 MiB head, a 3 MiB tail, a 256 KiB slack.
        let mut budget = OutputBudget::new(4 * 1024 * 1024);
        let tail = budget.tail_budget();
        assert_eq!(tail, 3 * 1024 * 1024);
        budget.stored_tail(Stream::Stdout, tail - 10);
        assert_eq!(
            budget.keep_for(Stream::Stdout, 10, 0),
            None,
            "exactly full fits"
        );
        assert_eq!(
            budget.keep_for(Stream::Stdout, 11, 0),
            Some(tail - 11 - 256 * 1024),
            "past it, room for the batch and the slack"
        );
        assert_eq!(
            budget.keep_for(Stream::Stderr, tail, 0),
            None,
            "streams are apart"
        );
        assert_eq!(budget.keep_for(Stream::Stdout, tail, 0), Some(0));
        assert_eq!(
            budget.keep_for(Stream::Stdout, 10, 5),
            Some(0),
            "text cut in memory is newer than anything stored"
        );
        budget.pruned(Stream::Stdout, 0);
        assert_eq!(budget.keep_for(Stream::Stdout, tail, 0), None);
        assert_eq!(
            budget.keep_for(Stream::Stdout, 10, 5),
            None,
            "nothing to drop"
        );

        // A small budget: the slack is an eighth of it.
        let mut small = OutputBudget::new(4096);
        small.stored_tail(Stream::Stdout, 3000);
        assert_eq!(
            small.keep_for(Stream::Stdout, 100, 0),
            Some(3072 - 100 - 384)
        );
    }

    #[test]
    fn cuts_prefer_line_boundaries() {
        assert_eq!(head_cut("ab\ncd\nef", 7), 6);
        assert_eq!(head_cut("abcdef", 3), 3);
        assert_eq!(head_cut("aé", 2), 1);
        let text = "one\ntwo\nthree\n";
        assert_eq!(&text[tail_cut(text, 9)..], "three\n");
        assert_eq!(tail_cut(text, 100), 0);
        assert_eq!(&"abcdef"[tail_cut("abcdef", 2)..], "ef");
        assert_eq!(&"aé"[tail_cut("aé", 1)..], "");
    }

    #[test]
    fn marker_names_the_exact_count() {
        let chunk = Chunk {
            seq: 9,
            stream: Stream::Stderr,
            text: "tail\n".into(),
            timestamp: Utc::now(),
            dropped_before: 1234,
            source_end: None,
        };
        assert_eq!(
            chunk.display_text(),
            "[rje: 1234 bytes of stderr dropped]\ntail\n"
        );
    }
}
