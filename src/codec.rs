//! Bounds-checked big-endian readers and writers for the persisted formats
//! (docs/FORMAT.md). A decoder never indexes without a check, bounds every length by the
//! bytes that remain before allocating, and names the structure in its error.

use crate::error::{Error, Result, Structure};

/// A cursor over bytes read from disk.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: Structure,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the structure in errors.
    pub(crate) fn new(buf: &'a [u8], what: Structure) -> Self {
        Reader { buf, pos: 0, what }
    }

    fn short(&self) -> Error {
        Error::integrity(self.what, "truncated")
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.short())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.short())?;
        self.pos = end;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A u16-length-prefixed byte string.
    pub(crate) fn lp16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }

    /// A u32-length-prefixed byte string, at most `max` bytes.
    pub(crate) fn lp32(&mut self, max: usize) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(Error::integrity(self.what, "length over its bound"));
        }
        self.bytes(n)
    }

    /// A u16-length-prefixed UTF-8 string.
    pub(crate) fn str16(&mut self) -> Result<&'a str> {
        let b = self.lp16()?;
        std::str::from_utf8(b).map_err(|_| Error::integrity(self.what, "bad UTF-8"))
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was read (no trailing garbage).
    pub(crate) fn finish(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(Error::integrity(self.what, "trailing bytes"))
        }
    }
}

/// Appends a u16-length-prefixed byte string. The caller has bounded `b` to 65535 bytes.
pub(crate) fn put_lp16(out: &mut Vec<u8>, b: &[u8]) {
    debug_assert!(b.len() <= u16::MAX as usize);
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Appends a u32-length-prefixed byte string.
pub(crate) fn put_lp32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;

    #[test]
    fn reader_bounds() {
        let mut r = Reader::new(&[0, 5, 1, 2], Structure::Header);
        assert!(r.lp16().is_err());
        let mut r = Reader::new(&[0, 2, 1, 2], Structure::Header);
        assert_eq!(r.lp16().unwrap(), &[1, 2]);
        r.finish().unwrap();
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff], Structure::Header);
        assert!(r.lp32(10).is_err());
        let mut r = Reader::new(&[1], Structure::Header);
        assert!(r.u64().is_err());
    }
}
