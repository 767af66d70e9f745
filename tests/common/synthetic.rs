//! Two small synthetic languages for training tests: `aa` (SVO) and `bb` (SOV, 200 sentences),
//! 40 sentences of each held out, one shared 300-token vocabulary.

use interference::data::{generate_synthetic, SyntheticSpec, WordOrder};
use interference::tokenize::SharedTokenizer;
use interference::train::{split_held_out, MlmData};
use interference::Lang;

/// The encoded data, with `aa_sentences` sentences of `aa`.
pub fn two_languages(aa_sentences: usize) -> MlmData {
    let specs = [
        ("aa", SyntheticSpec { sentences: aa_sentences, seed: 1, ..Default::default() }),
        ("bb", SyntheticSpec { sentences: 200, seed: 2, word_order: WordOrder::Sov, ..Default::default() }),
    ];
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (code, spec) in specs {
        let corpus = generate_synthetic(&spec, Lang::new(code).unwrap()).unwrap();
        let (t, v) = split_held_out(&corpus, 40, 0).unwrap();
        train.push(t);
        valid.push(v);
    }
    let tok = SharedTokenizer::train(&train, 300).unwrap();
    MlmData::encode(&tok, &train, &valid).unwrap()
}
