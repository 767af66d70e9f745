//! Tests of the shared tokenizer: round trips across scripts, special ids, persistence,
//! determinism, statistics and errors.

use interference::data::Corpus;
use interference::tokenize::{special, tokenizer_stats, SharedTokenizer, SpecialIds};
use interference::{Error, Lang};

const EN: &[&str] = &[
    "the cat sat on the mat",
    "a dog ran after the cat",
    "the children are playing in the garden",
    "she reads a book every evening",
];
const RU: &[&str] =
    &["кошка сидит на ковре", "собака бежит за кошкой", "дети играют в саду", "она читает книгу каждый вечер"];
const HI: &[&str] =
    &["बिल्ली चटाई पर बैठी है", "कुत्ता बिल्ली के पीछे भागा", "बच्चे बगीचे में खेल रहे हैं", "वह हर शाम एक किताब पढ़ती है"];
const AR: &[&str] =
    &["جلس القط على الحصيرة", "ركض الكلب خلف القط", "الأطفال يلعبون في الحديقة", "هي تقرأ كتابا كل مساء"];

/// A corpus of `sentences` repeated `times` times, so BPE sees every pair often enough.
fn corpus(lang: &str, sentences: &[&str], times: usize) -> Corpus {
    let sentences = (0..times).flat_map(|_| sentences.iter().map(|s| s.to_string())).collect();
    Corpus::new(Lang::new(lang).unwrap(), sentences)
}

fn four_scripts() -> Vec<Corpus> {
    vec![corpus("en", EN, 10), corpus("ru", RU, 10), corpus("hi", HI, 10), corpus("ar", AR, 10)]
}

#[test]
fn round_trips_sentences_of_several_scripts() {
    let tok = SharedTokenizer::train(&four_scripts(), 200).unwrap();
    for s in EN.iter().chain(RU).chain(HI).chain(AR) {
        let ids = tok.encode(s).unwrap();
        assert!(!ids.is_empty());
        assert!(!ids.contains(&tok.specials().unk), "{s:?} has unknown characters: {ids:?}");
        assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        assert_eq!(tok.decode(&ids).unwrap(), *s);
    }
}

#[test]
fn whitespace_is_normalised_and_specials_are_skipped_when_decoding() {
    let tok = SharedTokenizer::train(&four_scripts(), 200).unwrap();
    let ids = tok.encode("  the cat\tsat \n on   the mat ").unwrap();
    assert_eq!(ids, tok.encode("the cat sat on the mat").unwrap());
    let sp = tok.specials();
    let mut framed = vec![sp.cls];
    framed.extend(&ids);
    framed.extend([sp.mask, sp.sep, sp.pad, sp.pad]);
    assert_eq!(tok.decode(&framed).unwrap(), "the cat sat on the mat");
    assert!(tok.encode("").unwrap().is_empty());
    assert!(tok.encode("the [MASK] sat").unwrap().contains(&sp.mask));
    let bad = tok.vocab_size() as u32;
    assert!(matches!(tok.decode(&[bad]), Err(Error::Tokenizer(_))));
}

#[test]
fn special_tokens_come_first() {
    let tok = SharedTokenizer::train(&four_scripts(), 200).unwrap();
    assert_eq!(tok.specials(), SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 });
    let names: Vec<String> = (0..5).map(|id| tok.token(id).unwrap()).collect();
    assert_eq!(names, [special::PAD, special::UNK, special::CLS, special::SEP, special::MASK]);
    let n = tok.vocab_size() as u32;
    assert!(n > 5 && n <= 200);
    assert!(tok.token(n - 1).is_some());
    assert!(tok.token(n).is_none());
}

#[test]
fn save_then_load_gives_the_same_tokenizer() {
    let tok = SharedTokenizer::train(&four_scripts(), 200).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), tok.to_json().unwrap());
    let loaded = SharedTokenizer::load(&path).unwrap();
    assert_eq!(loaded.to_json().unwrap(), tok.to_json().unwrap());
    assert_eq!(loaded.specials(), tok.specials());
    assert_eq!(loaded.vocab_size(), tok.vocab_size());
    for s in EN.iter().chain(RU).chain(HI).chain(AR).chain(&["unseen: ñ 漢字"]) {
        assert_eq!(loaded.encode(s).unwrap(), tok.encode(s).unwrap());
    }
}

/// A pseudo-random corpus over `letters` with a skewed word distribution (deterministic).
fn synthetic(lang: &str, letters: &[char], seed: u64, n: usize) -> Corpus {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let words: Vec<String> =
        (0..500).map(|_| (0..1 + next(8)).map(|_| letters[next(letters.len())]).collect()).collect();
    let sentences = (0..n)
        .map(|_| {
            let k = 3 + next(10);
            let picks: Vec<&str> = (0..k).map(|_| words[next(words.len()).min(next(words.len()))].as_str()).collect();
            picks.join(" ")
        })
        .collect();
    Corpus::new(Lang::new(lang).unwrap(), sentences)
}

#[test]
fn training_is_deterministic() {
    let latin: Vec<char> = "aeioubcdfgklmnprstz".chars().collect();
    let cyrillic: Vec<char> = "абвгдежзиклмнопрсту".chars().collect();
    let corpora = vec![
        synthetic("en", &latin, 1, 1500),
        synthetic("ru", &cyrillic, 2, 1500),
        synthetic("de", &latin[..12], 3, 1500),
        corpus("hi", HI, 20),
    ];
    let first = SharedTokenizer::train(&corpora, 1500).unwrap().to_json().unwrap();
    for _ in 0..3 {
        assert_eq!(SharedTokenizer::train(&corpora, 1500).unwrap().to_json().unwrap(), first);
    }
}

#[test]
fn statistics_measure_unknowns_and_overlap() {
    let tok = SharedTokenizer::train(&[corpus("en", EN, 10), corpus("ru", RU, 10)], 150).unwrap();
    let eval = vec![corpus("en", EN, 1), corpus("ru", RU, 1), corpus("hi", HI, 1), corpus("en-copy", EN, 2)];
    let stats = tokenizer_stats(&tok, &eval).unwrap();
    let [en, ru, hi, copy] = &stats.languages[..] else { panic!("expected 4 languages") };

    assert_eq!(en.lang.as_str(), "en");
    assert_eq!(en.sentences, 4);
    assert_eq!(copy.sentences, 8);
    let en_tokens: usize = EN.iter().map(|s| tok.encode(s).unwrap().len()).sum();
    assert_eq!(en.tokens, en_tokens);
    assert!((en.tokens_per_sentence - en_tokens as f64 / 4.0).abs() < 1e-12);
    assert_eq!(en.unk_rate, 0.0);
    assert_eq!(ru.unk_rate, 0.0);
    assert!(hi.unk_rate > 0.5, "Devanagari was never seen: unk rate {}", hi.unk_rate);
    assert!(en.types_used > 0 && en.types_used == copy.types_used);

    let n = stats.languages.len();
    assert_eq!(stats.overlap.len(), n);
    for i in 0..n {
        assert_eq!(stats.overlap[i].len(), n);
        assert_eq!(stats.overlap[i][i], 1.0);
        for j in 0..n {
            assert_eq!(stats.overlap[i][j], stats.overlap[j][i]);
            assert!((0.0..=1.0).contains(&stats.overlap[i][j]));
        }
    }
    assert_eq!(stats.overlap[0][3], 1.0, "identical corpora use identical types");
    assert!(stats.overlap[0][1] < 0.2, "Latin vs Cyrillic overlap {}", stats.overlap[0][1]);

    let table = stats.to_string();
    for code in ["en", "ru", "hi", "en-copy", "tok/sent", "unk %", "overlap"] {
        assert!(table.contains(code), "{code:?} missing from\n{table}");
    }
}

#[test]
fn overlap_of_an_empty_corpus_is_zero() {
    let tok = SharedTokenizer::train(&[corpus("en", EN, 10)], 100).unwrap();
    let stats = tokenizer_stats(&tok, &[corpus("en", EN, 1), corpus("xx", &[], 1)]).unwrap();
    assert_eq!(stats.overlap, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    assert_eq!(stats.languages[1].tokens_per_sentence, 0.0);
    assert_eq!(stats.languages[1].unk_rate, 0.0);
}

#[test]
fn loading_a_missing_or_garbage_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-tokenizer.json");
    let err = SharedTokenizer::load(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "this is { not a tokenizer").unwrap();
    let err = SharedTokenizer::load(&garbage).unwrap_err();
    assert!(err.to_string().contains(&garbage.display().to_string()), "{err}");
}

#[test]
fn loading_a_tokenizer_without_a_special_token_names_it() {
    let tok = SharedTokenizer::train(&[corpus("en", EN, 10)], 100).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, tok.to_json().unwrap().replace("[MASK]", "[MASQ]")).unwrap();
    let err = SharedTokenizer::load(&path).unwrap_err();
    assert!(matches!(err, Error::Tokenizer(_)));
    let msg = err.to_string();
    assert!(msg.contains("[MASK]") && msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn bad_training_requests_are_config_errors() {
    let corpora = [corpus("en", EN, 10)];
    assert!(matches!(SharedTokenizer::train(&corpora, 5), Err(Error::Config(_))));
    assert!(matches!(SharedTokenizer::train(&corpora, 0), Err(Error::Config(_))));
    assert!(SharedTokenizer::train(&corpora, 6).is_ok());
    assert!(matches!(SharedTokenizer::train(&[], 100), Err(Error::Config(_))));
    let blank = [corpus("en", &[], 1), corpus("ru", &["", "   "], 3)];
    assert!(matches!(SharedTokenizer::train(&blank, 100), Err(Error::Config(_))));
}
