//! Per-language statistics of a shared tokenizer: fertility, unknown rate, vocabulary use and
//! overlap between languages.

use crate::data::Corpus;
use crate::error::Result;
use crate::lang::Lang;
use crate::tokenize::SharedTokenizer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// How one language's corpus tokenizes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LanguageStats {
    /// The corpus's language.
    pub lang: Lang,
    /// Number of sentences.
    pub sentences: usize,
    /// Number of tokens over all sentences (no special tokens added).
    pub tokens: usize,
    /// `tokens / sentences` (0 for an empty corpus).
    pub tokens_per_sentence: f64,
    /// Fraction of the tokens that are `[UNK]` (0 when there are no tokens).
    pub unk_rate: f64,
    /// Number of distinct non-special token ids used.
    pub types_used: usize,
}

/// Statistics of a tokenizer over several corpora.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenizerStats {
    /// One entry per corpus, in the corpora's order.
    pub languages: Vec<LanguageStats>,
    /// `overlap[i][j]`: Jaccard index of the sets of non-special token ids used by corpus `i`
    /// and corpus `j` (1 on the diagonal; 0 when both sets are empty, off the diagonal).
    pub overlap: Vec<Vec<f64>>,
}

/// Tokenizes every corpus with `tok` and summarises each language and the overlap of their
/// vocabularies. Special tokens (`[UNK]` included) count as tokens but not as types.
pub fn tokenizer_stats(tok: &SharedTokenizer, corpora: &[Corpus]) -> Result<TokenizerStats> {
    let specials = tok.specials();
    let mut languages = Vec::with_capacity(corpora.len());
    let mut types: Vec<BTreeSet<u32>> = Vec::with_capacity(corpora.len());
    for corpus in corpora {
        let (mut tokens, mut unks) = (0usize, 0usize);
        let mut used = BTreeSet::new();
        for sentence in &corpus.sentences {
            let ids = tok.encode(sentence)?;
            tokens += ids.len();
            unks += ids.iter().filter(|&&id| id == specials.unk).count();
            used.extend(ids.into_iter().filter(|&id| !specials.contains(id)));
        }
        languages.push(LanguageStats {
            lang: corpus.lang.clone(),
            sentences: corpus.len(),
            tokens,
            tokens_per_sentence: ratio(tokens, corpus.len()),
            unk_rate: ratio(unks, tokens),
            types_used: used.len(),
        });
        types.push(used);
    }
    let overlap = (0..types.len())
        .map(|i| (0..types.len()).map(|j| if i == j { 1.0 } else { jaccard(&types[i], &types[j]) }).collect())
        .collect();
    Ok(TokenizerStats { languages, overlap })
}

/// `num / den`, or 0 when `den` is 0.
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// |a ∩ b| / |a ∪ b|, with 0/0 taken as 0.
fn jaccard(a: &BTreeSet<u32>, b: &BTreeSet<u32>) -> f64 {
    let shared = a.intersection(b).count();
    ratio(shared, a.len() + b.len() - shared)
}

impl fmt::Display for TokenizerStats {
    /// A table with one row per language (sentences, tokens per sentence, `[UNK]` percentage,
    /// types used), then the overlap matrix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.languages.iter().map(|l| l.lang.as_str().len()).max().unwrap_or(0).max(4);
        writeln!(f, "{:<w$}  {:>9}  {:>8}  {:>7}  {:>7}", "lang", "sentences", "tok/sent", "unk %", "types")?;
        for l in &self.languages {
            writeln!(
                f,
                "{:<w$}  {:>9}  {:>8.2}  {:>6.2}%  {:>7}",
                l.lang.as_str(),
                l.sentences,
                l.tokens_per_sentence,
                100.0 * l.unk_rate,
                l.types_used
            )?;
        }
        writeln!(f)?;
        writeln!(f, "type overlap (Jaccard)")?;
        let widths: Vec<usize> = self.languages.iter().map(|l| l.lang.as_str().len().max(5)).collect();
        write!(f, "{:<w$}", "")?;
        for (l, cw) in self.languages.iter().zip(&widths) {
            write!(f, "  {:>cw$}", l.lang.as_str())?;
        }
        writeln!(f)?;
        for (l, row) in self.languages.iter().zip(&self.overlap) {
            write!(f, "{:<w$}", l.lang.as_str())?;
            for (v, cw) in row.iter().zip(&widths) {
                write!(f, "  {v:>cw$.3}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u32]) -> BTreeSet<u32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn jaccard_and_ratio_handle_empty_sets() {
        assert_eq!(jaccard(&set(&[]), &set(&[])), 0.0);
        assert_eq!(jaccard(&set(&[1, 2]), &set(&[])), 0.0);
        assert_eq!(jaccard(&set(&[1, 2, 3]), &set(&[2, 3, 4])), 0.5);
        assert_eq!(jaccard(&set(&[7]), &set(&[7])), 1.0);
        assert_eq!(ratio(3, 0), 0.0);
        assert_eq!(ratio(3, 4), 0.75);
    }

    #[test]
    fn display_aligns_columns() {
        let lang = |code: &str| LanguageStats {
            lang: Lang::new(code).unwrap(),
            sentences: 10,
            tokens: 125,
            tokens_per_sentence: 12.5,
            unk_rate: 0.004,
            types_used: 42,
        };
        let stats = TokenizerStats {
            languages: vec![lang("en"), lang("syn-long-12")],
            overlap: vec![vec![1.0, 0.25], vec![0.25, 1.0]],
        };
        let text = stats.to_string();
        assert!(text.contains("12.50") && text.contains("0.40%") && text.contains("0.250"), "{text}");
        let matrix: Vec<&str> = text.lines().skip_while(|l| !l.contains("overlap")).skip(1).collect();
        assert_eq!(matrix.len(), 3, "{text}");
        assert!(matrix.iter().all(|l| l.len() == matrix[0].len()), "{text}");
    }
}
