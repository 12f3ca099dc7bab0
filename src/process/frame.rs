//! Line framing: split a byte stream on `\n` into [`Line`]s capped at `max_line_bytes`.
//!
//! Pure and synchronous; it owns no I/O. It must never buffer more than the cap for one line: the
//! tail of an over-long line is dropped as it arrives, up to the next newline.

use std::mem;

use memchr::memchr;

use super::{Line, Stream};

/// Turns chunks of a stream into lines; holds the unfinished line between chunks.
#[derive(Debug)]
pub(crate) struct Framer {
    stream: Stream,
    max: usize,
    /// The start of the current line, at most `max` bytes.
    partial: Vec<u8>,
    /// True after an over-long line was delivered, until its newline is seen.
    discarding: bool,
}

impl Framer {
    pub(crate) fn new(stream: Stream, max: usize) -> Self {
        Framer {
            stream,
            max,
            partial: Vec::new(),
            discarding: false,
        }
    }

    /// Frames `chunk`, pushing every line it completes (or truncates) onto `out`.
    pub(crate) fn push(&mut self, chunk: &[u8], out: &mut Vec<Line>) {
        let mut rest = chunk;
        while let Some(nl) = memchr(b'\n', rest) {
            self.segment(&rest[..nl], true, out);
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            self.segment(rest, false, out);
        }
    }

    /// Ends the stream: a last line without a newline is still delivered.
    pub(crate) fn finish(&mut self, out: &mut Vec<Line>) {
        if !self.discarding && !self.partial.is_empty() {
            let bytes = mem::take(&mut self.partial);
            out.push(self.line(bytes, false));
        }
        self.discarding = false;
    }

    /// Handles the bytes of one line, `ends_line` when a newline followed them.
    fn segment(&mut self, seg: &[u8], ends_line: bool, out: &mut Vec<Line>) {
        if self.discarding {
            self.discarding = !ends_line;
            return;
        }
        let room = self.max - self.partial.len();
        if seg.len() > room {
            // Deliver now rather than at the newline: the tail may be megabytes away.
            let mut bytes = mem::take(&mut self.partial);
            bytes.extend_from_slice(&seg[..room]);
            out.push(self.line(bytes, true));
            self.discarding = !ends_line;
        } else if !ends_line {
            self.grow(seg.len());
            self.partial.extend_from_slice(seg);
        } else if self.partial.is_empty() {
            // The common case: the whole line sits in this chunk, one copy.
            out.push(self.line(seg.to_vec(), false));
        } else {
            let mut bytes = mem::take(&mut self.partial);
            bytes.extend_from_slice(seg);
            out.push(self.line(bytes, false));
        }
    }

    /// Reserves room for `extra` more bytes, doubling but never past the cap.
    fn grow(&mut self, extra: usize) {
        let need = self.partial.len() + extra;
        if need > self.partial.capacity() {
            let target = need.max(self.partial.capacity() * 2).min(self.max);
            self.partial.reserve_exact(target - self.partial.len());
        }
    }

    fn line(&self, bytes: Vec<u8>, truncated: bool) -> Line {
        Line {
            stream: self.stream,
            bytes,
            truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(chunks: &[&[u8]], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut framer = Framer::new(Stream::Stdout, max);
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk, &mut out);
        }
        framer.finish(&mut out);
        out.into_iter().map(|l| (l.bytes, l.truncated)).collect()
    }

    /// The reference: split the whole input at once, then truncate.
    fn reference(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
            .into_iter()
            .map(|l| (l[..l.len().min(max)].to_vec(), l.len() > max))
            .collect()
    }

    #[test]
    fn splits_joins_and_truncates() {
        assert_eq!(
            frame(&[b"ab\ncd", b"e\n", b"f"], 10),
            vec![
                (b"ab".to_vec(), false),
                (b"cde".to_vec(), false),
                (b"f".to_vec(), false)
            ]
        );
        assert_eq!(
            frame(&[b"abc", b"defgh", b"ij\nk\n"], 4),
            vec![(b"abcd".to_vec(), true), (b"k".to_vec(), false)]
        );
        assert_eq!(frame(&[b"\n\n"], 4), vec![(vec![], false), (vec![], false)]);
        assert_eq!(frame(&[b"abcd\n"], 4), vec![(b"abcd".to_vec(), false)]);
        assert_eq!(
            frame(&[b"\xff\xfe\n"], 4),
            vec![(b"\xff\xfe".to_vec(), false)]
        );
    }

    proptest! {
        #[test]
        fn matches_reference(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            max in 0usize..12,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([input.len()]) {
                chunks.push(&input[start..cut]);
                start = cut;
            }
            prop_assert_eq!(frame(&chunks, max), reference(&input, max));
        }
    }
}
