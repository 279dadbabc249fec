//! Byte layout of a log segment: the segment header and the frames after it
//! (docs/FORMAT.md "Log segment files"). Pure codecs, no I/O, so the fuzz targets and
//! the tests reach them directly.
//!
//! A frame carries its own length and an unkeyed checksum, so a torn last write (a crash
//! in the middle of an append) is told apart from a whole frame without any key; whether
//! a whole frame is genuine is the chain link's business (keyed, checked above this layer).

use crate::crypto::sha256;

/// Magic bytes opening every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MVLOGSEG";
/// Segment-header format version.
pub const SEGMENT_VERSION: u8 = 1;
/// Bytes of a segment header: magic (8), version (1), vault_id (16), first seq (8),
/// checksum (8).
pub const SEGMENT_HEADER_LEN: usize = 8 + 1 + 16 + 8 + 8;
/// Frame format version.
pub const FRAME_VERSION: u8 = 1;
/// Frame flag: the entry describes a change to the record store (a write, a delete, an
/// erasure, a key operation); recovery looks for these past the applied marker.
pub const FLAG_CHANGE: u8 = 0x01;
/// Every flag this version knows; a frame with another bit set is refused.
pub const KNOWN_FLAGS: u8 = FLAG_CHANGE;
/// Bytes a frame adds to its body: length (4), version (1), flags (1), seq (8),
/// link (32), checksum (8).
pub const FRAME_OVERHEAD: usize = 4 + 1 + 1 + 8 + 32 + 8;
/// Upper bound of a frame's body (a sealed entry body: the 1 MiB entry bound plus the
/// AEAD nonce and tag, rounded up).
pub const MAX_FRAME_BODY: usize = (1 << 20) + 64;
const CHECK_LEN: usize = 8;
/// Bounds of a frame's length field (the bytes after it).
pub const FRAME_LEN_RANGE: std::ops::RangeInclusive<usize> =
    FRAME_OVERHEAD - 4..=MAX_FRAME_BODY + FRAME_OVERHEAD - 4;

/// One access-log entry as the log store keeps it: the sealed body and its chain link,
/// both opaque to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Sequence number (gapless, from the segment's first seq).
    pub seq: u64,
    /// Frame format version ([`FRAME_VERSION`]).
    pub version: u8,
    /// Flags ([`FLAG_CHANGE`]).
    pub flags: u8,
    /// The sealed entry body.
    pub body: Vec<u8>,
    /// `HMAC(chain key, prev link || version || flags || seq || body)`.
    pub link: [u8; 32],
}

impl Frame {
    /// Bytes this frame takes in a segment.
    pub fn encoded_len(&self) -> usize {
        FRAME_OVERHEAD + self.body.len()
    }

    /// Appends the encoded frame to `out`:
    /// `u32 len || u8 version || u8 flags || u64 seq || body || link[32] || check[8]`,
    /// big-endian, where `len` counts every byte after itself (so `len = 50 + body`) and
    /// `check` is the first 8 bytes of SHA-256 over every byte before it in the frame.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let len = (self.encoded_len() - 4) as u32;
        out.extend_from_slice(&len.to_be_bytes());
        out.push(self.version);
        out.push(self.flags);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&self.link);
        let check = sha256(&[&out[start..]]);
        out.extend_from_slice(&check[..CHECK_LEN]);
    }
}

/// What [`decode_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, well-formed frame and the bytes it took.
    Frame(Frame, usize),
    /// The buffer ends inside a frame (or is empty): at the end of a file, a torn write.
    Incomplete,
    /// The bytes are not a frame (length out of bounds, checksum mismatch, unknown
    /// version or flag). The reason names no content.
    Bad(&'static str),
}

/// Decodes the frame at the start of `buf`. Never panics; bounds the length before use.
pub fn decode_frame(buf: &[u8]) -> Decoded {
    let Some(len_bytes) = buf.get(..4) else {
        return Decoded::Incomplete;
    };
    let mut l = [0u8; 4];
    l.copy_from_slice(len_bytes);
    let len = u32::from_be_bytes(l) as usize;
    if !FRAME_LEN_RANGE.contains(&len) {
        return Decoded::Bad("frame length out of bounds");
    }
    let total = 4 + len;
    let Some(frame) = buf.get(..total) else {
        return Decoded::Incomplete;
    };
    let (covered, check) = frame.split_at(total - CHECK_LEN);
    if sha256(&[covered])[..CHECK_LEN] != *check {
        return Decoded::Bad("frame checksum mismatch");
    }
    let version = covered[4];
    let flags = covered[5];
    if version != FRAME_VERSION {
        return Decoded::Bad("frame has an unknown version");
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Decoded::Bad("frame has unknown flags");
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&covered[6..14]);
    let body_end = covered.len() - 32;
    let mut link = [0u8; 32];
    link.copy_from_slice(&covered[body_end..]);
    Decoded::Frame(
        Frame {
            seq: u64::from_be_bytes(s),
            version,
            flags,
            body: covered[14..body_end].to_vec(),
            link,
        },
        total,
    )
}

/// Finds the whole frame that ends exactly at the end of `buf` and carries sequence
/// number `seq`, reading backward: every start offset a frame of a valid length could
/// have is tried, nearest first, and accepted only when its length field reaches exactly
/// the end of `buf`, its checksum holds ([`decode_frame`]) and its seq is `seq`. Returns
/// the frame and its start offset in `buf`; `None` when no such frame starts in `buf`
/// (the caller may retry with more bytes before it, up to a maximal frame). Never panics.
///
/// The checksum is unkeyed, so a match says only that the bytes are a well-formed frame
/// with that seq: whether it is genuine is for the caller to check (the body's AEAD
/// seal is bound to the seq; the chain link is `verify`'s).
pub fn frame_ending_at(buf: &[u8], seq: u64) -> Option<(Frame, usize)> {
    let end = buf.len();
    let smallest = *FRAME_LEN_RANGE.start() + 4;
    let largest = *FRAME_LEN_RANGE.end() + 4;
    if end < smallest {
        return None;
    }
    let lowest = end.saturating_sub(largest);
    let mut at = end - smallest;
    loop {
        if let Some(l) = buf.get(at..at + 4) {
            let mut len = [0u8; 4];
            len.copy_from_slice(l);
            if u32::from_be_bytes(len) as usize == end - at - 4
                && let Some(rest) = buf.get(at..)
                && let Decoded::Frame(f, n) = decode_frame(rest)
                && n == end - at
                && f.seq == seq
            {
                return Some((f, at));
            }
        }
        if at == lowest {
            return None;
        }
        at -= 1;
    }
}

/// Encodes a segment header: `magic[8] || u8 version || vault_id[16] || u64 first_seq ||
/// check[8]`, `check` the first 8 bytes of SHA-256 over the bytes before it.
pub fn encode_segment_header(
    vault_id: &crate::VaultId,
    first_seq: u64,
) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8] = SEGMENT_VERSION;
    h[9..25].copy_from_slice(vault_id.as_bytes());
    h[25..33].copy_from_slice(&first_seq.to_be_bytes());
    let check = sha256(&[&h[..33]]);
    h[33..].copy_from_slice(&check[..CHECK_LEN]);
    h
}

/// Decodes a segment header, returning `(vault_id, first_seq)`, or what is wrong.
pub fn decode_segment_header(buf: &[u8]) -> Result<(crate::VaultId, u64), &'static str> {
    let h = buf
        .get(..SEGMENT_HEADER_LEN)
        .ok_or("segment header truncated")?;
    if h[..8] != SEGMENT_MAGIC {
        return Err("not a medvault log segment (bad magic)");
    }
    if sha256(&[&h[..33]])[..CHECK_LEN] != h[33..] {
        return Err("segment header checksum mismatch");
    }
    if h[8] != SEGMENT_VERSION {
        return Err("segment header has an unknown version");
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[9..25]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&h[25..33]);
    Ok((crate::VaultId::from(id), u64::from_be_bytes(s)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;

    fn frame(seq: u64, body: &[u8]) -> Frame {
        Frame {
            seq,
            version: FRAME_VERSION,
            flags: FLAG_CHANGE,
            body: body.to_vec(),
            link: [7; 32],
        }
    }

    #[test]
    fn frame_layout_matches_the_spec_bytes() {
        // Oracle: the layout written out by hand from docs/FORMAT.md, checksum from sha2.
        let f = frame(0x0102, b"abc");
        let mut got = Vec::new();
        f.encode_into(&mut got);
        let mut want = Vec::new();
        want.extend_from_slice(&53u32.to_be_bytes());
        want.push(1);
        want.push(1);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        want.extend_from_slice(b"abc");
        want.extend_from_slice(&[7; 32]);
        use sha2::Digest;
        let h = sha2::Sha256::digest(&want);
        want.extend_from_slice(&h[..8]);
        assert_eq!(got, want);
        assert_eq!(got.len(), f.encoded_len());
        assert_eq!(decode_frame(&got), Decoded::Frame(f, got.len()));
    }

    #[test]
    fn every_cut_of_a_frame_is_incomplete_and_every_flip_is_bad() {
        let f = frame(9, &[0x55; 40]);
        let mut b = Vec::new();
        f.encode_into(&mut b);
        for cut in 0..b.len() {
            assert_eq!(decode_frame(&b[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
        for i in 0..b.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = b.clone();
                t[i] ^= bit;
                match decode_frame(&t) {
                    Decoded::Frame(..) => panic!("flip at {i} accepted"),
                    // A flipped length byte may also read as a longer, incomplete frame.
                    Decoded::Bad(_) | Decoded::Incomplete => {}
                }
            }
        }
    }

    #[test]
    fn frame_ending_at_finds_each_frame_backward_from_hand_built_bytes() {
        // Oracle: the frames laid out by hand (length, version, flags, seq, body, link,
        // sha2 checksum), independently of encode_into; their starts are known.
        fn by_hand(seq: u64, body: &[u8]) -> Vec<u8> {
            use sha2::Digest;
            let mut b = Vec::new();
            b.extend_from_slice(&((50 + body.len()) as u32).to_be_bytes());
            b.extend_from_slice(&[1, 1]);
            b.extend_from_slice(&seq.to_be_bytes());
            b.extend_from_slice(body);
            b.extend_from_slice(&[7; 32]);
            let h = sha2::Sha256::digest(&b);
            b.extend_from_slice(&h[..8]);
            b
        }
        let mut buf = vec![0xEEu8; 13]; // bytes before the first frame (a header, say)
        let mut starts = Vec::new();
        // Bodies that themselves look like length fields and frame starts.
        let bodies: [&[u8]; 4] = [b"", &[0, 0, 0, 50, 1, 1], &[0x55; 300], &[0, 0, 0, 0]];
        for (i, body) in bodies.iter().enumerate() {
            starts.push(buf.len());
            buf.extend_from_slice(&by_hand(40 + i as u64, body));
        }
        let mut end = buf.len();
        for i in (0..bodies.len()).rev() {
            let (f, at) = frame_ending_at(&buf[..end], 40 + i as u64).unwrap();
            assert_eq!(at, starts[i]);
            assert_eq!(f.seq, 40 + i as u64);
            assert_eq!(f.body, bodies[i]);
            end = at;
        }
        // The wrong seq, a cut window, a flipped byte: nothing found.
        let last = *starts.last().unwrap();
        assert!(frame_ending_at(&buf, 42).is_none());
        assert!(frame_ending_at(&buf[last + 1..], 43).is_none());
        assert!(frame_ending_at(&buf[..buf.len() - 1], 43).is_none());
        let mut t = buf.clone();
        t[last + 20] ^= 1;
        assert!(frame_ending_at(&t, 43).is_none());
        for n in 0..starts[1] {
            assert!(
                frame_ending_at(&buf[..n], 40).is_none(),
                "window of {n} bytes"
            );
        }
        assert_eq!(frame_ending_at(&buf[..starts[1]], 40).unwrap().1, starts[0]);
    }

    #[test]
    fn segment_header_round_trips_and_refuses_flips() {
        let h = encode_segment_header(&crate::VaultId::from([3; 16]), 77);
        assert_eq!(&h[..8], b"MVLOGSEG");
        assert_eq!(
            decode_segment_header(&h),
            Ok((crate::VaultId::from([3; 16]), 77))
        );
        for i in 0..h.len() {
            let mut t = h;
            t[i] ^= 0x10;
            assert!(decode_segment_header(&t).is_err(), "flip at {i}");
        }
        assert!(decode_segment_header(&h[..40]).is_err());
    }
}
