//! Guards: a checkpoint's text form must be lower- or upper-case hex only; `+1` in place
//! of `01` was accepted (Rust's `from_str_radix` takes a sign), so one checkpoint had
//! several texts.

use medvault::Checkpoint;
use medvault::testing::fuzz as fuzzing;

const GOLDEN: &str = include_str!("golden/checkpoint.txt");

#[test]
fn sign_in_checkpoint_hex_is_refused() {
    let good = GOLDEN.trim();
    let cp = Checkpoint::from_text(good).expect("the golden checkpoint parses");
    assert_eq!(cp.to_text(), good);
    let signed = format!("mvcp1:+1{}", &good["mvcp1:01".len()..]);
    assert!(matches!(
        Checkpoint::from_text(&signed),
        Err(medvault::Error::InvalidInput(_))
    ));
    // The same input through the fuzz check (mode byte 0, then the text).
    fuzzing::check_checkpoint(include_bytes!(
        "../fuzz/seeds/checkpoint/crash-plus-sign-in-hex"
    ));
}
