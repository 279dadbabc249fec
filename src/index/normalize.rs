//! Normalizations applied to a value before it is hashed into a blind index, and to a
//! query before it is looked up, so that equal-meaning spellings hash alike. Pure
//! functions of the value: deterministic across runs, builds and machines (Unicode
//! data of the `unicode-normalization` crate, fixed per release of that crate).

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use zeroize::Zeroizing;

/// How a value is canonicalized before hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Normalization {
    /// The value as stored, byte for byte (codes, dates).
    Exact,
    /// Names: Unicode NFKD, combining marks dropped (accent folding: `"Peña"` → `"pena"`),
    /// lowercased, surrounding whitespace trimmed and inner runs of whitespace collapsed
    /// to one space.
    Name,
    /// Identifiers: Unicode NFKC (full-width digits become ASCII), then only letters and
    /// digits kept (spaces, dashes, dots, slashes dropped), uppercased:
    /// `"999-53 8547"` → `"999538547"`, `"x343.288-01x"` → `"X34328801X"`.
    Identifier,
}

impl Normalization {
    /// Stable one-byte code in a persisted index definition (docs/INDEXES.md).
    pub(crate) fn code(self) -> u8 {
        match self {
            Normalization::Exact => 0,
            Normalization::Name => 1,
            Normalization::Identifier => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Normalization::Exact),
            1 => Some(Normalization::Name),
            2 => Some(Normalization::Identifier),
            _ => None,
        }
    }

    /// Canonicalizes `value` (see each variant). The result is zeroized on drop: it is
    /// patient data.
    pub fn apply(self, value: &str) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(value.len()));
        match self {
            Normalization::Exact => out.push_str(value),
            Normalization::Name => {
                let mut pending_space = false;
                for c in value.nfkd().filter(|c| !is_combining_mark(*c)) {
                    if c.is_whitespace() {
                        pending_space = !out.is_empty();
                        continue;
                    }
                    if pending_space {
                        out.push(' ');
                        pending_space = false;
                    }
                    out.extend(c.to_lowercase());
                }
            }
            Normalization::Identifier => {
                for c in value.nfkc().filter(|c| c.is_alphanumeric()) {
                    out.extend(c.to_uppercase());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Normalization::*;

    #[test]
    fn names_fold_case_accents_and_whitespace() {
        assert_eq!(*Name.apply("  Peña909 "), "pena909");
        assert_eq!(*Name.apply("GÓMEZ206"), "gomez206");
        assert_eq!(*Name.apply("Gómez206"), *Name.apply("gomez206"));
        assert_eq!(*Name.apply("Mary \t  Ann\nLee"), "mary ann lee");
        assert_eq!(*Name.apply("Ǆemal"), "dzemal"); // NFKD splits the digraph
        assert_eq!(*Name.apply("   "), "");
    }

    #[test]
    fn identifiers_drop_punctuation_and_uppercase() {
        assert_eq!(*Identifier.apply("999-53-8547"), "999538547");
        assert_eq!(*Identifier.apply(" 999 53 8547 "), "999538547");
        assert_eq!(*Identifier.apply("x343.288/01x"), "X34328801X");
        assert_eq!(*Identifier.apply("１２３"), "123"); // full-width digits
    }

    #[test]
    fn exact_is_identity() {
        assert_eq!(*Exact.apply(" A-b "), " A-b ");
    }
}
