//! The change list each entry of a change commit carries inside its sealed body: which
//! record-store keys the commit put (with the keyed digest of the stored value) or
//! deleted (docs/FORMAT.md "Change list"). It binds every stored value to the log entry
//! of its write, and lets `verify` name which key differs when the state digest does not
//! match.
//!
//! Appended by the commit protocol after the entry body: `list || u32 len(list)`, where
//! `list = u32 n || n × (lp16 key || u8 present || digest[32] if present)`; `n =
//! 0xffff_ffff` (and nothing else) means "not listed" (a commit with more changes than
//! one entry may list). A commit's changes are spread over its entries in order.

use crate::codec::{Reader, put_lp16};
use crate::error::{Error, Result, Structure};

/// Changes one entry may list; a commit with more (spread over its entries) lists none.
pub const MAX_LISTED_PER_ENTRY: usize = 8192;
const UNLISTED: u32 = u32::MAX;

/// One listed change: the key, and the digest term of the value put (`None`: deleted).
pub type Change = (Vec<u8>, Option<[u8; 32]>);

/// Appends the change list `changes` (or "not listed" when `None`) to `body`.
pub fn append(body: &mut Vec<u8>, changes: Option<&[Change]>) {
    let start = body.len();
    match changes {
        None => body.extend_from_slice(&UNLISTED.to_be_bytes()),
        Some(cs) => {
            body.extend_from_slice(&(cs.len() as u32).to_be_bytes());
            for (k, t) in cs {
                put_lp16(body, k);
                match t {
                    Some(t) => {
                        body.push(1);
                        body.extend_from_slice(t);
                    }
                    None => body.push(0),
                }
            }
        }
    }
    let len = (body.len() - start) as u32;
    body.extend_from_slice(&len.to_be_bytes());
}

/// Splits an opened entry plaintext into the entry body and its change list (`None`:
/// not listed). [`Error::Integrity`] when malformed.
pub fn split(pt: &[u8]) -> Result<(&[u8], Option<Vec<Change>>)> {
    let bad = || Error::integrity(Structure::LogEntry, "malformed change list");
    let at = pt.len().checked_sub(4).ok_or_else(bad)?;
    let mut l = [0u8; 4];
    l.copy_from_slice(&pt[at..]);
    let len = u32::from_be_bytes(l) as usize;
    let start = at.checked_sub(len).ok_or_else(bad)?;
    let mut r = Reader::new(&pt[start..at], Structure::LogEntry);
    let n = r.u32()?;
    if n == UNLISTED {
        r.finish()?;
        return Ok((&pt[..start], None));
    }
    let n = n as usize;
    if n > MAX_LISTED_PER_ENTRY {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let k = r.lp16()?.to_vec();
        let t = match r.u8()? {
            0 => None,
            1 => Some(r.array()?),
            _ => return Err(bad()),
        };
        out.push((k, t));
    }
    r.finish()?;
    Ok((&pt[..start], Some(out)))
}

/// Spreads `changes` over `entries` lists in order (each at most
/// [`MAX_LISTED_PER_ENTRY`]); `None` for each when they do not fit.
pub fn spread(changes: &[Change], entries: usize) -> Vec<Option<&[Change]>> {
    if entries == 0 {
        return Vec::new();
    }
    let per = changes.len().div_ceil(entries);
    if per > MAX_LISTED_PER_ENTRY {
        return vec![None; entries];
    }
    (0..entries)
        .map(|i| {
            let a = (i * per).min(changes.len());
            let b = ((i + 1) * per).min(changes.len());
            Some(&changes[a..b])
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;

    #[test]
    fn list_layout_and_round_trip() {
        let mut b = b"entry".to_vec();
        let cs = vec![(b"rk".to_vec(), Some([9u8; 32])), (b"x".to_vec(), None)];
        append(&mut b, Some(&cs));
        // Oracle: the bytes written out by hand.
        let mut want = b"entry".to_vec();
        want.extend_from_slice(&[0, 0, 0, 2, 0, 2, b'r', b'k', 1]);
        want.extend_from_slice(&[9; 32]);
        want.extend_from_slice(&[0, 1, b'x', 0]);
        want.extend_from_slice(&(4 + 5 + 32 + 4u32).to_be_bytes());
        assert_eq!(b, want);
        assert_eq!(split(&b).unwrap(), (&b"entry"[..], Some(cs)));
        let mut u = b"e".to_vec();
        append(&mut u, None);
        assert_eq!(split(&u).unwrap(), (&b"e"[..], None));
        for cut in 0..b.len() {
            let _ = split(&b[..cut]);
        }
        assert!(split(&[0, 0, 0, 9]).is_err());
    }

    #[test]
    fn spread_keeps_order_and_bounds() {
        let cs: Vec<Change> = (0..10u8).map(|i| (vec![i], None)).collect();
        let s = spread(&cs, 3);
        let joined: Vec<Change> = s.iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(joined, cs);
        let many: Vec<Change> = (0..MAX_LISTED_PER_ENTRY + 1)
            .map(|_| (vec![], None))
            .collect();
        assert!(spread(&many, 1)[0].is_none());
    }
}
