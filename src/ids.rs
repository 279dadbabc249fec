//! Fixed-size identifiers a vault writes to disk: the vault's own id and the keyed
//! pseudonym of a subject. Both are 16 bytes; they are distinct types so that one
//! cannot be passed where the other is expected.

use std::fmt;

/// Lower-case hex of 16 bytes.
fn hex16(b: &[u8; 16], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for x in b {
        write!(f, "{x:02x}")?;
    }
    Ok(())
}

/// The random 128-bit id of one vault, drawn at creation and stored in the header
/// (docs/FORMAT.md "Header"). Every sealed value's associated data names it, so a
/// value copied from another vault does not open. Not secret. `Display` and `Debug`
/// print 32 lower-case hex digits.
///
/// ```
/// use medvault::VaultId;
/// let id = VaultId::from([0xab; 16]);
/// assert_eq!(id.to_string(), "ab".repeat(16));
/// assert_eq!(id.as_bytes(), &[0xab; 16]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VaultId([u8; 16]);

impl VaultId {
    /// The id from its 16 stored bytes (the same as `From<[u8; 16]>`, usable in a `const`).
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        VaultId(b)
    }

    /// The 16 bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl From<[u8; 16]> for VaultId {
    fn from(b: [u8; 16]) -> Self {
        VaultId(b)
    }
}

impl AsRef<[u8]> for VaultId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for VaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex16(&self.0, f)
    }
}

impl fmt::Debug for VaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VaultId(")?;
        hex16(&self.0, f)?;
        write!(f, ")")
    }
}

/// A subject's keyed pseudonym on disk: HMAC-SHA256 of the logical subject id under
/// the vault's pseudonym key, truncated to 128 bits (docs/FORMAT.md "Keys derived from
/// the vault secret"). It names the subject in storage keys and in the access log
/// without revealing the id; only a holder of the vault secret can compute it from an
/// id. `Display` and `Debug` print 32 lower-case hex digits.
///
/// ```
/// use medvault::SubjectTag;
/// let t = SubjectTag::from([1; 16]);
/// assert_eq!(t.to_string(), "01".repeat(16));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectTag([u8; 16]);

impl SubjectTag {
    /// The id from its 16 stored bytes (the same as `From<[u8; 16]>`, usable in a `const`).
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        SubjectTag(b)
    }

    /// The 16 bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl From<[u8; 16]> for SubjectTag {
    fn from(b: [u8; 16]) -> Self {
        SubjectTag(b)
    }
}

impl AsRef<[u8]> for SubjectTag {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for SubjectTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex16(&self.0, f)
    }
}

impl fmt::Debug for SubjectTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectTag(")?;
        hex16(&self.0, f)?;
        write!(f, ")")
    }
}

impl TryFrom<&[u8]> for SubjectTag {
    type Error = std::array::TryFromSliceError;

    /// A tag from a slice of exactly 16 bytes (e.g. a storage-key suffix).
    fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 16]>::try_from(b).map(SubjectTag)
    }
}
