//! What every crate's bounded fuzz tests share (feature `fuzz`, for dev-dependencies only):
//! the proptest settings and edits of a valid document drawn from a vocabulary.

use proptest::prelude::*;

/// Cases per property, and no regression files written into the source tree.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One edit: at a fraction of the text, delete up to some bytes and insert a token.
pub type Edit = (f64, usize, &'static str);

/// One to eight edits with tokens from `vocab`.
pub fn edits(vocab: &'static [&'static str]) -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec((0.0..1.0f64, 0usize..12, prop::sample::select(vocab)), 1..8)
}

/// `seed` with `edits` applied in order (on character boundaries).
pub fn apply(seed: &str, edits: &[Edit]) -> String {
    let mut text = seed.to_owned();
    for (at, delete, token) in edits {
        let mut i = (text.len() as f64 * at) as usize;
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        let mut j = (i + delete).min(text.len());
        while !text.is_char_boundary(j) {
            j += 1;
        }
        text.replace_range(i..j, token);
    }
    text
}
