//! Latin letters Unicode does not decompose, folded to the ASCII letters a clinician
//! types for them (`ø` → `o`, `ł` → `l`, `ß` → `ss`, `æ` → `ae`, `þ` → `th`, ...), so a
//! name search in plain ASCII finds "Søren Łukasz Đorđević". Keys are lowercase (the
//! name normalization lowercases first; an uppercase letter reaches the table through
//! its lowercase form). Mappings follow the CLDR "Latin-ASCII" transform; the table is
//! documented in docs/INDEXES.md ("Name folding") and each entry has a test.
//!
//! Letters with no Latin base letter stay as they are: tone letters (ƅ ƨ ƽ), clicks
//! (ǀ ǁ ǂ ǃ), glottal stops (ɂ ʔ), and letters borrowed from other scripts (ʃ esh,
//! ɣ gamma, ɩ iota, ʊ upsilon, ɯ turned m, ƛ lambda, ȝ yogh, ƍ, ƪ, ƻ, ƾ).

/// `(letter, ASCII folding)`, sorted by letter (binary search). Lowercase letters only.
pub(crate) const FOLDS: &[(char, &str)] = &[
    ('ß', "ss"), // U+00DF sharp s (uppercase ẞ U+1E9E lowercases to it)
    ('æ', "ae"), // U+00E6 ae (Æ; ǣ ǽ decompose to it)
    ('ð', "d"),  // U+00F0 eth (Ð)
    ('ø', "o"),  // U+00F8 o with stroke (Ø; ǿ decomposes to it)
    ('þ', "th"), // U+00FE thorn (Þ)
    ('đ', "d"),  // U+0111 d with stroke (Đ)
    ('ħ', "h"),  // U+0127 h with stroke (Ħ)
    ('ı', "i"),  // U+0131 dotless i
    ('ĸ', "q"),  // U+0138 kra (Greenlandic; spelled q since 1973)
    ('ŀ', "l"),  // U+0140 l with middle dot (Ŀ; NFKD would leave "l·")
    ('ł', "l"),  // U+0142 l with stroke (Ł)
    ('ŉ', "n"),  // U+0149 n preceded by apostrophe
    ('ŋ', "n"),  // U+014B eng (Ŋ)
    ('œ', "oe"), // U+0153 oe (Œ)
    ('ŧ', "t"),  // U+0167 t with stroke (Ŧ)
    ('ƀ', "b"),  // U+0180 b with stroke (Ƀ)
    ('ƃ', "b"),  // U+0183 b with topbar (Ƃ)
    ('ƈ', "c"),  // U+0188 c with hook (Ƈ)
    ('ƌ', "d"),  // U+018C d with topbar (Ƌ)
    ('ƒ', "f"),  // U+0192 f with hook (Ƒ)
    ('ƕ', "hv"), // U+0195 hv (Ƕ)
    ('ƙ', "k"),  // U+0199 k with hook (Ƙ)
    ('ƚ', "l"),  // U+019A l with bar (Ƚ)
    ('ƞ', "n"),  // U+019E n with long right leg (Ƞ)
    ('ƣ', "oi"), // U+01A3 oi (Ƣ)
    ('ƥ', "p"),  // U+01A5 p with hook (Ƥ)
    ('ƫ', "t"),  // U+01AB t with palatal hook
    ('ƭ', "t"),  // U+01AD t with hook (Ƭ)
    ('ƴ', "y"),  // U+01B4 y with hook (Ƴ)
    ('ƶ', "z"),  // U+01B6 z with stroke (Ƶ)
    ('ƺ', "z"),  // U+01BA ezh with tail
    ('ƿ', "w"),  // U+01BF wynn (Ƿ)
    ('ǝ', "e"),  // U+01DD turned e (Ǝ)
    ('ǥ', "g"),  // U+01E5 g with stroke (Ǥ)
    ('ȡ', "d"),  // U+0221 d with curl
    ('ȣ', "ou"), // U+0223 ou (Ȣ)
    ('ȥ', "z"),  // U+0225 z with hook (Ȥ)
    ('ȴ', "l"),  // U+0234 l with curl
    ('ȵ', "n"),  // U+0235 n with curl
    ('ȶ', "t"),  // U+0236 t with curl
    ('ȷ', "j"),  // U+0237 dotless j
    ('ȸ', "db"), // U+0238 db digraph
    ('ȹ', "qp"), // U+0239 qp digraph
    ('ȼ', "c"),  // U+023C c with stroke (Ȼ)
    ('ȿ', "s"),  // U+023F s with swash tail
    ('ɀ', "z"),  // U+0240 z with swash tail
    ('ɇ', "e"),  // U+0247 e with stroke (Ɇ)
    ('ɉ', "j"),  // U+0249 j with stroke (Ɉ)
    ('ɋ', "q"),  // U+024B q with hook tail (Ɋ)
    ('ɍ', "r"),  // U+024D r with stroke (Ɍ)
    ('ɏ', "y"),  // U+024F y with stroke (Ɏ)
    ('ɓ', "b"),  // U+0253 b with hook (Ɓ)
    ('ɔ', "o"),  // U+0254 open o (Ɔ)
    ('ɖ', "d"),  // U+0256 African d (Ɖ)
    ('ɗ', "d"),  // U+0257 d with hook (Ɗ)
    ('ə', "e"),  // U+0259 schwa (Ə)
    ('ɛ', "e"),  // U+025B open e (Ɛ)
    ('ɠ', "g"),  // U+0260 g with hook (Ɠ)
    ('ɨ', "i"),  // U+0268 i with stroke (Ɨ)
    ('ɲ', "n"),  // U+0272 n with left hook (Ɲ)
    ('ɵ', "o"),  // U+0275 barred o (Ɵ)
    ('ʀ', "r"),  // U+0280 yr (Ʀ)
    ('ʈ', "t"),  // U+0288 t with retroflex hook (Ʈ)
    ('ʉ', "u"),  // U+0289 u bar (Ʉ)
    ('ʋ', "v"),  // U+028B v with hook (Ʋ)
    ('ʒ', "z"),  // U+0292 ezh (Ʒ; ǯ decomposes to it)
    ('ⱥ', "a"),  // U+2C65 a with stroke (Ⱥ)
    ('ⱦ', "t"),  // U+2C66 t with diagonal stroke (Ⱦ)
];

/// The ASCII folding of a lowercase letter, if the table has one.
pub(crate) fn fold(c: char) -> Option<&'static str> {
    if c.is_ascii() {
        return None;
    }
    FOLDS
        .binary_search_by(|(k, _)| k.cmp(&c))
        .ok()
        .and_then(|i| FOLDS.get(i))
        .map(|(_, f)| *f)
}

#[cfg(test)]
mod tests {
    use super::FOLDS;

    #[test]
    fn table_is_sorted_lowercase_and_ascii() {
        assert!(FOLDS.windows(2).all(|w| w[0].0 < w[1].0));
        for (c, f) in FOLDS {
            assert_eq!(c.to_lowercase().collect::<String>(), c.to_string(), "{c}");
            assert!(f.bytes().all(|b| b.is_ascii_lowercase()), "{c}");
        }
    }
}
