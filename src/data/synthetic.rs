//! Synthetic languages with known ground truth, for teaching and for tests of interference.
//!
//! A *family* ([`SyntheticSpec::family_seed`]) fixes a base lexicon and a small probabilistic
//! grammar. A language of the family keeps each base word with probability
//! [`SyntheticSpec::shared_vocab`] and otherwise uses a fresh word form of its own, and it
//! orders constituents by [`SyntheticSpec::word_order`] and
//! [`SyntheticSpec::adjective_after_noun`].
//!
//! - Lexicon: 300 nouns, 150 verbs, 80 adjectives, 5 determiners, 10 prepositions and
//!   30 adverbs, built from CV and CVC syllables of a fixed inventory. Function words
//!   (determiners, prepositions) have one syllable, content words two or three, so two
//!   languages that share no entries share (almost) no word forms by chance either. Within a
//!   part of speech, entry `r` is sampled with Zipfian weight `1 / (r + 1)`.
//! - Grammar: `S → NP V NP (Adv)`, `NP → Det Adj* N (PP)`, `PP → Prep NP`, with at most three
//!   adjectives, prepositional phrases nested at most two deep, and 5 to 25 words per sentence.
//! - Order: SVO gives `S V O Adv`, SOV `S O Adv V` (verb-final), VSO `V S O Adv`; adjectives
//!   go before the noun unless `adjective_after_noun`. Sentences are lowercase words joined by
//!   single spaces, without punctuation.
//!
//! The lexicon depends only on `(family_seed, seed, shared_vocab)`; which entries are replaced
//! and by what depends on `(family_seed, seed)` alone, so lowering `shared_vocab` only replaces
//! more entries. The sentences' underlying trees depend only on `(family_seed, seed)`: two
//! specs that differ in `shared_vocab` or order give sentence-by-sentence translations.
//! Languages meant to differ need different `seed`s.

use super::corpus::Corpus;
use crate::error::{Error, Result};
use crate::lang::Lang;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::ops::RangeInclusive;

/// Order of subject, verb and object in a clause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    /// Subject, verb, object (`"svo"`).
    #[default]
    Svo,
    /// Subject, object, verb (`"sov"`); the verb ends the sentence.
    Sov,
    /// Verb, subject, object (`"vso"`); the verb starts the sentence.
    Vso,
}

/// One synthetic language. Every field has a default, so `{}` is a valid JSON spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticSpec {
    /// Seed of the family: the base lexicon and its word frequencies. Default 0.
    pub family_seed: u64,
    /// Probability, in `[0, 1]`, that a base lexicon entry keeps its base form. Default 1.0.
    pub shared_vocab: f64,
    /// Constituent order. Default SVO.
    pub word_order: WordOrder,
    /// Whether adjectives follow the noun. Default false.
    pub adjective_after_noun: bool,
    /// Number of sentences to generate, 1 to 10,000,000. Default 2000.
    pub sentences: usize,
    /// Seed of this language within the family: its replaced words and its sentences. Default 0.
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            family_seed: 0,
            shared_vocab: 1.0,
            word_order: WordOrder::Svo,
            adjective_after_noun: false,
            sentences: 2000,
            seed: 0,
        }
    }
}

/// Most sentences one spec may ask for.
const MAX_SENTENCES: usize = 10_000_000;

impl SyntheticSpec {
    /// Checks that `shared_vocab` is a number in `[0, 1]` and `sentences` is 1 to 10,000,000.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field and the value.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.shared_vocab) {
            return Err(Error::Config(format!("synthetic shared_vocab must be in [0, 1], got {}", self.shared_vocab)));
        }
        if !(1..=MAX_SENTENCES).contains(&self.sentences) {
            return Err(Error::Config(format!(
                "synthetic sentences must be 1 to {MAX_SENTENCES}, got {}",
                self.sentences
            )));
        }
        Ok(())
    }

    /// The language's lexicon.
    ///
    /// # Errors
    /// [`Error::Config`] if the spec is invalid (see [`SyntheticSpec::validate`]).
    pub fn lexicon(&self) -> Result<Lexicon> {
        self.validate()?;
        let base = base_words(self.family_seed);
        let mut taken: HashSet<String> = base.iter().flatten().cloned().collect();
        let mut rng = seeded_rng(Purpose::Language, self.family_seed, self.seed);
        let words = PartOfSpeech::ALL.map(|pos| {
            base[pos as usize]
                .iter()
                .map(|base_word| {
                    let keep = rng.random::<f64>() < self.shared_vocab;
                    let fresh = fresh_word(&mut rng, pos.syllables(), &mut taken);
                    if keep {
                        base_word.clone()
                    } else {
                        fresh
                    }
                })
                .collect()
        });
        Ok(Lexicon { words })
    }
}

/// Generates the corpus of the synthetic language `spec` under the code `lang`.
/// The same spec always gives the same sentences, byte for byte.
///
/// # Errors
/// [`Error::Config`] if the spec is invalid (see [`SyntheticSpec::validate`]).
pub fn generate(spec: &SyntheticSpec, lang: Lang) -> Result<Corpus> {
    let lexicon = spec.lexicon()?;
    let mut sampler = Sampler {
        rng: seeded_rng(Purpose::Sentences, spec.family_seed, spec.seed),
        zipf: PartOfSpeech::ALL.map(|pos| Zipf::new(pos.lexicon_size())),
    };
    let sentences = (0..spec.sentences)
        .map(|_| {
            let clause = sampler.clause();
            let mut words = Vec::with_capacity(MAX_WORDS);
            clause.linearize(spec, &lexicon, &mut words);
            words.join(" ")
        })
        .collect();
    Ok(Corpus::new(lang, sentences))
}

/// A part of speech of the synthetic lexicon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartOfSpeech {
    /// Nouns (300 entries).
    Noun,
    /// Verbs (150 entries).
    Verb,
    /// Adjectives (80 entries).
    Adjective,
    /// Determiners (5 entries).
    Determiner,
    /// Prepositions (10 entries).
    Preposition,
    /// Adverbs (30 entries).
    Adverb,
}

impl PartOfSpeech {
    /// Every part of speech, in lexicon order.
    pub const ALL: [PartOfSpeech; 6] = [
        PartOfSpeech::Noun,
        PartOfSpeech::Verb,
        PartOfSpeech::Adjective,
        PartOfSpeech::Determiner,
        PartOfSpeech::Preposition,
        PartOfSpeech::Adverb,
    ];

    /// Number of lexicon entries of this part of speech.
    fn lexicon_size(self) -> usize {
        match self {
            PartOfSpeech::Noun => 300,
            PartOfSpeech::Verb => 150,
            PartOfSpeech::Adjective => 80,
            PartOfSpeech::Determiner => 5,
            PartOfSpeech::Preposition => 10,
            PartOfSpeech::Adverb => 30,
        }
    }

    /// Number of syllables of a word of this part of speech.
    fn syllables(self) -> RangeInclusive<usize> {
        match self {
            PartOfSpeech::Determiner | PartOfSpeech::Preposition => 1..=1,
            _ => 2..=3,
        }
    }
}

/// The word forms of a synthetic language by part of speech, all distinct.
///
/// Entry `i` of a part of speech means the same in every language of a family (it is a
/// translation of the other languages' entry `i`), and entries are ranked by frequency:
/// entry 0 is the most frequent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lexicon {
    /// Word forms, indexed by `PartOfSpeech as usize`.
    words: [Vec<String>; 6],
}

impl Lexicon {
    /// The word forms of part of speech `pos`, most frequent first.
    pub fn words(&self, pos: PartOfSpeech) -> &[String] {
        &self.words[pos as usize]
    }

    /// Every entry with its part of speech, in lexicon order.
    pub fn iter(&self) -> impl Iterator<Item = (PartOfSpeech, &str)> {
        PartOfSpeech::ALL.into_iter().flat_map(move |pos| self.words(pos).iter().map(move |w| (pos, w.as_str())))
    }
}

/// What a random stream is for; part of its seed so that streams never coincide.
#[derive(Clone, Copy)]
enum Purpose {
    /// The family's base lexicon.
    Family = 1,
    /// A language's replacement words.
    Language = 2,
    /// A language's sentences.
    Sentences = 3,
}

/// The random stream for `purpose` of language `seed` in family `family_seed`.
fn seeded_rng(purpose: Purpose, family_seed: u64, seed: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0] = purpose as u8;
    key[8..16].copy_from_slice(&family_seed.to_le_bytes());
    key[16..24].copy_from_slice(&seed.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// The family's base word forms, indexed by `PartOfSpeech as usize`.
fn base_words(family_seed: u64) -> [Vec<String>; 6] {
    let mut rng = seeded_rng(Purpose::Family, family_seed, 0);
    let mut taken = HashSet::new();
    PartOfSpeech::ALL
        .map(|pos| (0..pos.lexicon_size()).map(|_| fresh_word(&mut rng, pos.syllables(), &mut taken)).collect())
}

/// Syllable onsets.
const ONSETS: [&str; 16] = ["p", "t", "k", "b", "d", "g", "m", "n", "s", "l", "r", "f", "v", "z", "h", "w"];
/// Syllable nuclei.
const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];
/// Syllable codas.
const CODAS: [&str; 6] = ["n", "m", "s", "l", "r", "k"];
/// Probability that a syllable is CVC rather than CV.
const P_CODA: f64 = 0.3;

/// A random word of `syllables` syllables that is not in `taken`; it is added to `taken`.
/// The lexicon sizes are far below the number of possible forms, so this ends quickly.
fn fresh_word(rng: &mut ChaCha8Rng, syllables: RangeInclusive<usize>, taken: &mut HashSet<String>) -> String {
    loop {
        let mut word = String::new();
        for _ in 0..rng.random_range(syllables.clone()) {
            word.push_str(ONSETS[rng.random_range(0..ONSETS.len())]);
            word.push_str(VOWELS[rng.random_range(0..VOWELS.len())]);
            if rng.random_bool(P_CODA) {
                word.push_str(CODAS[rng.random_range(0..CODAS.len())]);
            }
        }
        if taken.insert(word.clone()) {
            return word;
        }
    }
}

/// Zipfian sampling of ranks `0..n` with weights `1 / (rank + 1)`.
struct Zipf {
    /// Running sums of the weights.
    cumulative: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks.
    fn new(n: usize) -> Self {
        let cumulative = (1..=n)
            .scan(0.0, |sum, r| {
                *sum += 1.0 / r as f64;
                Some(*sum)
            })
            .collect();
        Zipf { cumulative }
    }

    /// A random rank.
    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        self.cumulative.partition_point(|&c| c <= u).min(self.cumulative.len().saturating_sub(1))
    }
}

/// Most words in a sentence.
const MAX_WORDS: usize = 25;
/// Most adjectives in a noun phrase.
const MAX_ADJECTIVES: usize = 3;
/// Deepest nesting of prepositional phrases.
const MAX_PP_DEPTH: usize = 2;
/// Probability of each further adjective.
const P_ADJECTIVE: f64 = 0.35;
/// Probability that a noun phrase has a prepositional phrase.
const P_PP: f64 = 0.3;
/// Probability that a clause has an adverb.
const P_ADVERB: f64 = 0.3;

/// A noun phrase; words are lexicon ranks.
struct NounPhrase {
    /// The determiner.
    det: usize,
    /// The adjectives, in order.
    adjectives: Vec<usize>,
    /// The head noun.
    noun: usize,
    /// An optional prepositional phrase: the preposition and its noun phrase.
    pp: Option<(usize, Box<NounPhrase>)>,
}

impl NounPhrase {
    /// Number of words.
    fn len(&self) -> usize {
        2 + self.adjectives.len() + self.pp.as_ref().map_or(0, |(_, np)| 1 + np.len())
    }

    /// Appends the phrase's words to `out`.
    fn linearize<'l>(&self, spec: &SyntheticSpec, lex: &'l Lexicon, out: &mut Vec<&'l str>) {
        let adjectives = self.adjectives.iter().map(|&a| lex.words(PartOfSpeech::Adjective)[a].as_str());
        out.push(&lex.words(PartOfSpeech::Determiner)[self.det]);
        if spec.adjective_after_noun {
            out.push(&lex.words(PartOfSpeech::Noun)[self.noun]);
            out.extend(adjectives);
        } else {
            out.extend(adjectives);
            out.push(&lex.words(PartOfSpeech::Noun)[self.noun]);
        }
        if let Some((prep, np)) = &self.pp {
            out.push(&lex.words(PartOfSpeech::Preposition)[*prep]);
            np.linearize(spec, lex, out);
        }
    }
}

/// A sentence: a transitive clause; words are lexicon ranks.
struct Clause {
    /// The subject.
    subject: NounPhrase,
    /// The verb.
    verb: usize,
    /// The object.
    object: NounPhrase,
    /// An optional adverb.
    adverb: Option<usize>,
}

impl Clause {
    /// Appends the clause's words to `out` in the order of `spec`.
    fn linearize<'l>(&self, spec: &SyntheticSpec, lex: &'l Lexicon, out: &mut Vec<&'l str>) {
        let verb = lex.words(PartOfSpeech::Verb)[self.verb].as_str();
        let adverb = self.adverb.map(|a| lex.words(PartOfSpeech::Adverb)[a].as_str());
        match spec.word_order {
            WordOrder::Svo => {
                self.subject.linearize(spec, lex, out);
                out.push(verb);
                self.object.linearize(spec, lex, out);
                out.extend(adverb);
            }
            WordOrder::Sov => {
                self.subject.linearize(spec, lex, out);
                self.object.linearize(spec, lex, out);
                out.extend(adverb);
                out.push(verb);
            }
            WordOrder::Vso => {
                out.push(verb);
                self.subject.linearize(spec, lex, out);
                self.object.linearize(spec, lex, out);
                out.extend(adverb);
            }
        }
    }
}

/// Samples clauses from the grammar.
struct Sampler {
    /// The sentence stream.
    rng: ChaCha8Rng,
    /// Word-frequency distributions, indexed by `PartOfSpeech as usize`.
    zipf: [Zipf; 6],
}

impl Sampler {
    /// The rank of a random word of part of speech `pos`.
    fn word(&mut self, pos: PartOfSpeech) -> usize {
        self.zipf[pos as usize].sample(&mut self.rng)
    }

    /// A random clause of at most [`MAX_WORDS`] words.
    fn clause(&mut self) -> Clause {
        let adverb = self.rng.random_bool(P_ADVERB).then(|| self.word(PartOfSpeech::Adverb));
        let fixed = 1 + usize::from(adverb.is_some());
        let subject = self.noun_phrase(0, MAX_WORDS - fixed - 2);
        let verb = self.word(PartOfSpeech::Verb);
        let object = self.noun_phrase(0, MAX_WORDS - fixed - subject.len());
        Clause { subject, verb, object, adverb }
    }

    /// A random noun phrase at PP depth `depth` of at most `budget` (≥ 2) words.
    fn noun_phrase(&mut self, depth: usize, budget: usize) -> NounPhrase {
        let det = self.word(PartOfSpeech::Determiner);
        let noun = self.word(PartOfSpeech::Noun);
        let mut adjectives = Vec::new();
        while adjectives.len() < MAX_ADJECTIVES && 2 + adjectives.len() < budget && self.rng.random_bool(P_ADJECTIVE) {
            adjectives.push(self.word(PartOfSpeech::Adjective));
        }
        let used = 2 + adjectives.len();
        let pp = (depth < MAX_PP_DEPTH && used + 3 <= budget && self.rng.random_bool(P_PP)).then(|| {
            let prep = self.word(PartOfSpeech::Preposition);
            (prep, Box::new(self.noun_phrase(depth + 1, budget - used - 1)))
        });
        NounPhrase { det, adjectives, noun, pp }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn spec(family_seed: u64, seed: u64, shared_vocab: f64) -> SyntheticSpec {
        SyntheticSpec { family_seed, seed, shared_vocab, sentences: 300, ..SyntheticSpec::default() }
    }

    fn corpus(spec: &SyntheticSpec) -> Corpus {
        generate(spec, Lang::new("syn").unwrap()).unwrap()
    }

    fn types(lexicon: &Lexicon) -> BTreeSet<&str> {
        lexicon.iter().map(|(_, w)| w).collect()
    }

    fn jaccard(a: &Lexicon, b: &Lexicon) -> f64 {
        let (a, b) = (types(a), types(b));
        a.intersection(&b).count() as f64 / a.union(&b).count() as f64
    }

    #[test]
    fn same_spec_same_corpus_other_seed_other_corpus() {
        let a = spec(7, 1, 0.5);
        assert_eq!(corpus(&a), corpus(&a.clone()));
        assert_ne!(corpus(&a).sentences, corpus(&SyntheticSpec { seed: 2, ..a.clone() }).sentences);
        assert_ne!(corpus(&a).sentences, corpus(&SyntheticSpec { family_seed: 8, ..a }).sentences);
    }

    #[test]
    fn sentences_are_lexicon_words_within_length_bounds() {
        let s = SyntheticSpec { sentences: 2000, ..spec(3, 4, 0.5) };
        let lexicon = s.lexicon().unwrap();
        let known = types(&lexicon);
        let corpus = corpus(&s);
        assert_eq!(corpus.len(), 2000);
        for sentence in &corpus.sentences {
            let words: Vec<&str> = sentence.split(' ').collect();
            assert!((5..=MAX_WORDS).contains(&words.len()), "{sentence}");
            assert!(words.iter().all(|w| known.contains(w)), "{sentence}");
        }
        let longest = corpus.sentences.iter().map(|s| s.split(' ').count()).max().unwrap();
        assert!(longest > 12, "grammar never recursed: longest sentence has {longest} words");
    }

    #[test]
    fn lexicon_is_distinct_lowercase_words_of_the_right_sizes() {
        let lexicon = spec(0, 0, 0.5).lexicon().unwrap();
        for pos in PartOfSpeech::ALL {
            assert_eq!(lexicon.words(pos).len(), pos.lexicon_size());
        }
        assert_eq!(types(&lexicon).len(), 575);
        assert!(lexicon.iter().all(|(_, w)| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())));
    }

    #[test]
    fn full_sharing_gives_identical_lexicons() {
        let a = spec(5, 1, 1.0).lexicon().unwrap();
        let b = spec(5, 2, 1.0).lexicon().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, spec(6, 1, 1.0).lexicon().unwrap());
    }

    #[test]
    fn no_sharing_gives_almost_disjoint_lexicons() {
        let a = spec(5, 1, 0.0).lexicon().unwrap();
        let b = spec(5, 2, 0.0).lexicon().unwrap();
        let base = spec(5, 1, 1.0).lexicon().unwrap();
        assert_eq!(jaccard(&a, &base), 0.0);
        assert!(jaccard(&a, &b) < 0.02, "jaccard {}", jaccard(&a, &b));
    }

    #[test]
    fn half_sharing_lies_in_between() {
        let base = spec(5, 9, 1.0).lexicon().unwrap();
        let a = spec(5, 1, 0.5).lexicon().unwrap();
        let b = spec(5, 2, 0.5).lexicon().unwrap();
        // Expected: 0.5 / 1.5 against the base, 0.25 / 1.75 between two half-sharing languages.
        let with_base = jaccard(&a, &base);
        let between = jaccard(&a, &b);
        assert!((0.25..0.42).contains(&with_base), "jaccard with base {with_base}");
        assert!((0.08..0.22).contains(&between), "jaccard between {between}");
    }

    #[test]
    fn lower_sharing_only_replaces_more_entries() {
        let high = spec(5, 1, 0.7).lexicon().unwrap();
        let low = spec(5, 1, 0.3).lexicon().unwrap();
        let base = spec(5, 1, 1.0).lexicon().unwrap();
        for ((h, l), b) in high.iter().zip(low.iter()).zip(base.iter()) {
            assert!(h == b || h == l, "{h:?} is replaced at 0.7 but not the same at 0.3 ({l:?})");
        }
    }

    #[test]
    fn word_order_places_the_verb() {
        let first_and_last = |order: WordOrder| {
            let s = SyntheticSpec { word_order: order, ..spec(2, 3, 1.0) };
            let lexicon = s.lexicon().unwrap();
            let verbs: BTreeSet<&str> = lexicon.words(PartOfSpeech::Verb).iter().map(String::as_str).collect();
            corpus(&s)
                .sentences
                .iter()
                .map(|sentence| {
                    let words: Vec<&str> = sentence.split(' ').collect();
                    (verbs.contains(words[0]), verbs.contains(words[words.len() - 1]))
                })
                .collect::<Vec<_>>()
        };
        assert!(first_and_last(WordOrder::Sov).iter().all(|&(_, last)| last));
        assert!(first_and_last(WordOrder::Vso).iter().all(|&(first, _)| first));
        assert!(first_and_last(WordOrder::Svo).iter().all(|&(first, last)| !first && !last));
    }

    #[test]
    fn adjective_position_follows_the_spec() {
        let after = SyntheticSpec { adjective_after_noun: true, ..spec(2, 3, 1.0) };
        let lexicon = after.lexicon().unwrap();
        let dets = lexicon.words(PartOfSpeech::Determiner);
        let nouns = lexicon.words(PartOfSpeech::Noun);
        let adjectives = lexicon.words(PartOfSpeech::Adjective);
        let after_det = |s: &SyntheticSpec| -> Vec<String> {
            let corpus = corpus(s);
            let mut next = Vec::new();
            for sentence in &corpus.sentences {
                let words: Vec<&str> = sentence.split(' ').collect();
                next.extend(words.windows(2).filter(|w| dets.iter().any(|d| d == w[0])).map(|w| w[1].to_string()));
            }
            next
        };
        assert!(after_det(&after).iter().all(|w| nouns.contains(w)));
        let before = SyntheticSpec { adjective_after_noun: false, ..after };
        assert!(after_det(&before).iter().any(|w| adjectives.contains(w)));
    }

    #[test]
    fn order_and_sharing_change_words_not_trees() {
        let svo = spec(4, 4, 1.0);
        let sov = SyntheticSpec { word_order: WordOrder::Sov, adjective_after_noun: true, ..svo.clone() };
        let bag = |s: &str| {
            let mut words: Vec<&str> = s.split(' ').collect();
            words.sort_unstable();
            words.join(" ")
        };
        for (a, b) in corpus(&svo).sentences.iter().zip(&corpus(&sov).sentences) {
            assert_eq!(bag(a), bag(b));
        }
        let lengths = |s: &SyntheticSpec| corpus(s).sentences.iter().map(|x| x.split(' ').count()).collect::<Vec<_>>();
        assert_eq!(lengths(&svo), lengths(&SyntheticSpec { shared_vocab: 0.2, ..svo.clone() }));
    }

    #[test]
    fn invalid_specs_are_config_errors_naming_the_value() {
        for (bad, value) in [(1.5, "1.5"), (-0.1, "-0.1"), (f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
            let err = generate(&spec(0, 0, bad), Lang::new("syn").unwrap()).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err}");
            assert!(err.to_string().contains(&format!("shared_vocab must be in [0, 1], got {value}")), "{err}");
        }
        let err = SyntheticSpec { sentences: 0, ..SyntheticSpec::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("sentences must be 1 to 10000000, got 0"), "{err}");
    }

    #[test]
    fn spec_json_has_defaults_lowercase_orders_and_no_unknown_fields() {
        let empty: SyntheticSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, SyntheticSpec::default());
        let sov: SyntheticSpec = serde_json::from_str(r#"{"word_order": "sov", "seed": 3}"#).unwrap();
        assert_eq!((sov.word_order, sov.seed), (WordOrder::Sov, 3));
        assert_eq!(serde_json::to_value(WordOrder::Vso).unwrap(), "vso");
        assert!(serde_json::from_str::<SyntheticSpec>(r#"{"shared_vocb": 0.5}"#).is_err());
        assert!(serde_json::from_str::<SyntheticSpec>(r#"{"word_order": "SVO"}"#).is_err());
    }
}
