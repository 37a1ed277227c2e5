//! A streaming parser of `multipart/byteranges` bodies (RFC 9110 §14.6), the answer to a
//! multi-range `GET` of xorb bytes (`xet-protocol.md` §5.3): bytes go in as they arrive, and
//! come out as each part's range followed by its data, never buffered beyond one piece.
//!
//! ```text
//! --B\r\nContent-Type: ...\r\nContent-Range: bytes 0-9/*\r\n\r\n<10 bytes>\r\n--B--\r\n
//! ```

use bytes::{Bytes, BytesMut};

/// Longest part header accepted: a server sending more is not answering byte ranges.
const MAX_HEADER: usize = 16 << 10;

/// What the parser found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A part starts; it holds bytes `start..=end` of the object.
    Part { start: u64, end: u64 },
    /// The next bytes of the current part.
    Data(Bytes),
}

/// The parser's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a part's delimiter and headers (or the closing delimiter).
    Head,
    /// Inside a part, this many bytes to go.
    Body(u64),
    /// After the closing delimiter.
    Done,
}

/// The parser of one body.
pub(crate) struct ByteRanges {
    delimiter: Vec<u8>,
    buf: BytesMut,
    state: State,
}

impl ByteRanges {
    /// A parser for the boundary of a `multipart/byteranges; boundary=...` content type; `None`
    /// when the type is anything else.
    pub(crate) fn for_content_type(content_type: &str) -> Option<Self> {
        let (kind, params) = content_type.split_once(';')?;
        if !kind.trim().eq_ignore_ascii_case("multipart/byteranges") {
            return None;
        }
        let boundary = params.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"'))
        })?;
        let delimiter = format!("--{boundary}").into_bytes();
        Some(Self { delimiter, buf: BytesMut::new(), state: State::Head })
    }

    /// Adds bytes received.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether the closing delimiter was seen.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next event, `None` until more bytes arrive; `Err` for a body that is not byte ranges.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, String> {
        match self.state {
            State::Done => Ok(None),
            State::Body(0) => {
                self.state = State::Head;
                self.next_event()
            }
            State::Body(left) => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.buf.len());
                self.state = State::Body(left - n as u64);
                Ok(Some(Event::Data(self.buf.split_to(n).freeze())))
            }
            State::Head => self.head(),
        }
    }

    /// Parses a delimiter and part headers, or the closing delimiter.
    fn head(&mut self) -> Result<Option<Event>, String> {
        while self.buf.starts_with(b"\r\n") {
            let _ = self.buf.split_to(2);
        }
        let d = self.delimiter.len();
        if self.buf.len() < d + 2 {
            return Ok(None);
        }
        if !self.buf.starts_with(&self.delimiter) {
            return Err("a part does not start with the boundary".into());
        }
        if &self.buf[d..d + 2] == b"--" {
            self.state = State::Done;
            self.buf.clear();
            return Ok(None);
        }
        let Some(end) = find(&self.buf, b"\r\n\r\n") else {
            return if self.buf.len() > MAX_HEADER {
                Err("part headers too long".into())
            } else {
                Ok(None)
            };
        };
        let headers = String::from_utf8_lossy(&self.buf[d..end]).into_owned();
        let _ = self.buf.split_to(end + 4);
        let (start, end) = content_range(&headers).ok_or("a part has no Content-Range")?;
        self.state = State::Body(end - start + 1);
        Ok(Some(Event::Part { start, end }))
    }
}

/// `start..=end` of a part's `Content-Range: bytes start-end/total` header.
fn content_range(headers: &str) -> Option<(u64, u64)> {
    let value = headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-range").then_some(v.trim())
    })?;
    let (a, b) = value.strip_prefix("bytes ")?.split_once('/')?.0.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn body() -> Vec<u8> {
        let mut b = Vec::new();
        for (s, data) in [(10u64, &b"0123456789"[..]), (40, &b"abc"[..])] {
            let e = s + data.len() as u64 - 1;
            b.extend_from_slice(format!("--xyz\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {s}-{e}/*\r\n\r\n").as_bytes());
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--xyz--\r\n");
        b
    }

    /// Fed one byte or all at once, the parts and their bytes come out the same.
    #[test]
    fn parts_whatever_the_pieces() {
        for piece in [1, 7, 1000] {
            let mut p = ByteRanges::for_content_type("multipart/byteranges; boundary=xyz").unwrap();
            let mut parts: Vec<((u64, u64), Vec<u8>)> = Vec::new();
            for chunk in body().chunks(piece) {
                p.push(chunk);
                while let Some(ev) = p.next_event().unwrap() {
                    match ev {
                        Event::Part { start, end } => parts.push(((start, end), Vec::new())),
                        Event::Data(d) => parts.last_mut().unwrap().1.extend_from_slice(&d),
                    }
                }
            }
            assert!(p.is_done());
            assert_eq!(
                parts,
                vec![((10, 19), b"0123456789".to_vec()), ((40, 42), b"abc".to_vec())]
            );
        }
    }

    #[test]
    fn refuses_what_is_not_byte_ranges() {
        assert!(ByteRanges::for_content_type("application/octet-stream").is_none());
        let mut p = ByteRanges::for_content_type("multipart/byteranges; boundary=\"q\"").unwrap();
        p.push(b"--q\r\nContent-Type: x\r\n\r\nzz");
        assert!(p.next_event().is_err(), "no Content-Range");
        let mut p = ByteRanges::for_content_type("multipart/byteranges; boundary=q").unwrap();
        p.push(b"garbage that is long enough");
        assert!(p.next_event().is_err());
    }
}
