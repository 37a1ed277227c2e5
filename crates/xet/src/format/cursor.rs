//! A bounds-checked little-endian reader over a byte slice.
//!
//! Every decoder reads through this so that no read can index past the input: each read either
//! returns the bytes or a [`FormatError::Truncated`] naming what was being read and where.

use super::FormatError;

/// Read position within an input slice.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Offset of the next byte to read, from the start of the input.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The unread bytes, without consuming them.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn truncated(&self, what: &'static str, needed: u64) -> FormatError {
        FormatError::Truncated { what, offset: self.pos, needed, available: self.remaining() }
    }

    /// Fails unless at least `needed` more bytes are present: the check made before allocating
    /// for a count read from the input.
    pub(crate) fn ensure(&self, needed: u64, what: &'static str) -> Result<(), FormatError> {
        if needed > self.remaining() as u64 {
            return Err(self.truncated(what, needed));
        }
        Ok(())
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.truncated(what, n as u64))?;
        let out = self.buf.get(self.pos..end).ok_or_else(|| self.truncated(what, n as u64))?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], FormatError> {
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| self.truncated(what, N as u64))
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_reports_truncation() {
        let mut c = Cursor::new(&[1, 0, 0, 0, 2]);
        assert_eq!(c.u32("a").ok(), Some(1));
        assert_eq!(c.pos(), 4);
        assert!(matches!(
            c.u32("b"),
            Err(FormatError::Truncated { what: "b", offset: 4, needed: 4, available: 1 })
        ));
        assert_eq!(c.rest(), &[2]);
        assert!(c.ensure(1, "c").is_ok());
        assert!(c.ensure(2, "c").is_err());
        assert!(c.take(usize::MAX, "d").is_err());
    }
}
