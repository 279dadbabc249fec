//! Normalizations applied to a value before it is hashed into a blind index, and to a
//! query before it is looked up, so that equal-meaning spellings hash alike. Pure
//! functions of the value: deterministic across runs, builds and machines (Unicode
//! data of the `unicode-normalization` crate, fixed per release of that crate).

mod fold;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::{decompose_compatible, is_combining_mark};
use zeroize::Zeroizing;

/// How a value is canonicalized before hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Normalization {
    /// The value as stored, byte for byte (codes, dates).
    Exact,
    /// Names: lowercased, Unicode NFKD, combining marks dropped (accent folding: `"Peña"`
    /// → `"pena"`), the Latin letters Unicode does not decompose folded to ASCII (`ø` →
    /// `o`, `ł` → `l`, `ß` → `ss`, `æ` → `ae`, `þ` → `th`: the table in
    /// docs/INDEXES.md, "Name folding"), surrounding whitespace trimmed and inner runs of
    /// whitespace collapsed to one space.
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
                let mut emit = |c: char| {
                    if c.is_whitespace() {
                        pending_space = !out.is_empty();
                        return;
                    }
                    if pending_space {
                        out.push(' ');
                        pending_space = false;
                    }
                    match fold::fold(c) {
                        Some(ascii) => out.push_str(ascii),
                        None => out.push(c),
                    }
                };
                for c in value.chars() {
                    for l in c.to_lowercase() {
                        if fold::fold(l).is_some() {
                            emit(l);
                            continue;
                        }
                        // NFKD may yield capitals (`ℌ` → `H`) or a letter of the
                        // table (`ǿ` → `ø` + acute): lowercase and fold again.
                        decompose_compatible(l, |d| {
                            if !is_combining_mark(d) {
                                d.to_lowercase().for_each(&mut emit);
                            }
                        });
                    }
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

    /// One test per letter of the folding table (docs/INDEXES.md, "Name folding"): the
    /// letter, its uppercase form and any decomposable letter built on it fold to the
    /// ASCII a clinician types. The expectations are written out here, not read from
    /// the table.
    macro_rules! folds {
        ($($test:ident: $letters:literal => $ascii:literal),* $(,)?) => {
            $(
                #[test]
                fn $test() {
                    for c in $letters.chars() {
                        let name = format!("X{c}y Z");
                        let want = format!("x{}y z", $ascii);
                        assert_eq!(*Name.apply(&name), want, "{c} U+{:04X}", c as u32);
                    }
                }
            )*
        };
    }

    folds! {
        fold_sharp_s: "ßẞ" => "ss",
        fold_ae: "æÆǣǢǽǼ" => "ae",
        fold_eth: "ðÐ" => "d",
        fold_o_stroke: "øØǿǾ" => "o",
        fold_thorn: "þÞ" => "th",
        fold_d_stroke: "đĐ" => "d",
        fold_h_stroke: "ħĦ" => "h",
        fold_dotless_i: "ıİ" => "i",
        fold_kra: "ĸ" => "q",
        fold_l_middle_dot: "ŀĿ" => "l",
        fold_l_stroke: "łŁ" => "l",
        fold_n_apostrophe: "ŉ" => "n",
        fold_eng: "ŋŊ" => "n",
        fold_oe: "œŒ" => "oe",
        fold_t_stroke: "ŧŦ" => "t",
        fold_b_stroke: "ƀɃ" => "b",
        fold_b_topbar: "ƃƂ" => "b",
        fold_c_hook: "ƈƇ" => "c",
        fold_d_topbar: "ƌƋ" => "d",
        fold_f_hook: "ƒƑ" => "f",
        fold_hv: "ƕǶ" => "hv",
        fold_k_hook: "ƙƘ" => "k",
        fold_l_bar: "ƚȽ" => "l",
        fold_n_long_leg: "ƞȠ" => "n",
        fold_oi: "ƣƢ" => "oi",
        fold_p_hook: "ƥƤ" => "p",
        fold_t_palatal_hook: "ƫ" => "t",
        fold_t_hook: "ƭƬ" => "t",
        fold_y_hook: "ƴƳ" => "y",
        fold_z_stroke: "ƶƵ" => "z",
        fold_ezh_tail: "ƺ" => "z",
        fold_wynn: "ƿǷ" => "w",
        fold_turned_e: "ǝƎ" => "e",
        fold_g_stroke: "ǥǤ" => "g",
        fold_d_curl: "ȡ" => "d",
        fold_ou: "ȣȢ" => "ou",
        fold_z_hook: "ȥȤ" => "z",
        fold_l_curl: "ȴ" => "l",
        fold_n_curl: "ȵ" => "n",
        fold_t_curl: "ȶ" => "t",
        fold_dotless_j: "ȷ" => "j",
        fold_db: "ȸ" => "db",
        fold_qp: "ȹ" => "qp",
        fold_c_stroke: "ȼȻ" => "c",
        fold_s_swash: "ȿ" => "s",
        fold_z_swash: "ɀ" => "z",
        fold_e_stroke: "ɇɆ" => "e",
        fold_j_stroke: "ɉɈ" => "j",
        fold_q_hook_tail: "ɋɊ" => "q",
        fold_r_stroke: "ɍɌ" => "r",
        fold_y_stroke: "ɏɎ" => "y",
        fold_b_hook: "ɓƁ" => "b",
        fold_open_o: "ɔƆ" => "o",
        fold_african_d: "ɖƉ" => "d",
        fold_d_hook: "ɗƊ" => "d",
        fold_schwa: "əƏ" => "e",
        fold_open_e: "ɛƐ" => "e",
        fold_g_hook: "ɠƓ" => "g",
        fold_i_stroke: "ɨƗ" => "i",
        fold_n_left_hook: "ɲƝ" => "n",
        fold_barred_o: "ɵƟ" => "o",
        fold_yr: "ʀƦ" => "r",
        fold_t_retroflex_hook: "ʈƮ" => "t",
        fold_u_bar: "ʉɄ" => "u",
        fold_v_hook: "ʋƲ" => "v",
        fold_ezh: "ʒƷǯǮ" => "z",
        fold_a_stroke: "ⱥȺ" => "a",
        fold_t_diagonal_stroke: "ⱦȾ" => "t",
    }

    /// Every entry of the table has its test above (the list is checked by count and
    /// by letter, so a new entry without a test fails).
    #[test]
    fn every_table_letter_is_tested() {
        let tested = "ßæðøþđħıĸŀłŉŋœŧƀƃƈƌƒƕƙƚƞƣƥƫƭƴƶƺƿǝǥȡȣȥȴȵȶȷȸȹȼȿɀɇɉɋɍɏɓɔɖɗəɛɠɨɲɵʀʈʉʋʒⱥⱦ";
        let table: String = super::fold::FOLDS.iter().map(|(c, _)| *c).collect();
        assert_eq!(table, tested);
    }

    #[test]
    fn names_typed_in_ascii_match() {
        assert_eq!(
            *Name.apply("Søren Łukasz Đorđević"),
            "soren lukasz dordevic"
        );
        assert_eq!(*Name.apply("Þórður Ægisson"), "thordur aegisson");
        assert_eq!(*Name.apply("STRAẞE Œuvre"), "strasse oeuvre");
        assert_eq!(*Name.apply("Ŀlorenç"), "llorenc");
        assert_eq!(*Name.apply("ℌilde ¨x"), "hilde x");
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
