//! MLM masking rates, packing and temperature-sampling proportions.

use interference::batch::{MaskingConfig, MlmBatchJson, MlmMasker, TemperatureSampler};
use interference::rng::{stream, Purpose};
use interference::tokenize::SpecialIds;
use interference::Lang;

const SPECIALS: SpecialIds = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };

fn masker() -> MlmMasker {
    MlmMasker::new(MaskingConfig::default(), SPECIALS, 1000).unwrap()
}

#[test]
fn masking_rates_follow_15_80_10_10() {
    let m = masker();
    let sentences: Vec<Vec<u32>> =
        (0..500).map(|i| (0..20).map(|j| 5 + ((i * 31 + j * 7) % 995) as u32).collect()).collect();
    let (mut regular, mut chosen, mut masked, mut random, mut kept) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for b in 0..40u64 {
        let mut tokens = Vec::new();
        let mut next = (b as usize * 13) % sentences.len();
        for _ in 0..32 {
            next = m.pack_row(&sentences, next, 64, true, &mut tokens);
        }
        let original = tokens.clone();
        regular += original.iter().filter(|&&t| t >= 5).count();
        let batch = m.mask(Lang::new("en").unwrap(), tokens, 64, &mut stream(9, Purpose::Batch, b)).unwrap();
        for (&p, &t) in batch.positions.iter().zip(&batch.targets) {
            let p = p as usize;
            assert_eq!(original[p], t, "target must be the original id");
            assert!(t >= 5, "special token {t} was chosen");
            chosen += 1;
            match batch.tokens[p] {
                4 => masked += 1,
                x if x == t => kept += 1,
                x => {
                    assert!(x >= 5, "random replacement {x} is special");
                    random += 1
                }
            }
        }
    }
    let select = chosen as f64 / regular as f64;
    let (pm, pr, pk) = (masked as f64 / chosen as f64, random as f64 / chosen as f64, kept as f64 / chosen as f64);
    println!("selected {select:.4} of {regular}; mask {pm:.4} random {pr:.4} keep {pk:.4} (random may hit the same id: 1/995)");
    assert!((select - 0.15).abs() < 0.005);
    assert!((pm - 0.8).abs() < 0.01);
    assert!((pr - 0.1).abs() < 0.01);
    assert!((pk - 0.1).abs() < 0.01);
}

#[test]
fn every_batch_has_a_target_even_when_short() {
    let m = masker();
    for seed in 0..50 {
        let batch =
            m.mask(Lang::new("en").unwrap(), vec![2, 7, 3, 0], 4, &mut stream(seed, Purpose::Batch, 0)).unwrap();
        assert_eq!(batch.targets, vec![7]);
        assert_eq!(batch.pad, Some(0));
    }
    assert!(m.mask(Lang::new("en").unwrap(), vec![2, 3, 0, 0], 4, &mut stream(0, Purpose::Batch, 0)).is_err());
    assert!(m.mask(Lang::new("en").unwrap(), vec![2, 7, 3], 4, &mut stream(0, Purpose::Batch, 0)).is_err());
}

#[test]
fn packing_wraps_in_training_and_pads_in_evaluation() {
    let m = masker();
    let sentences = vec![vec![10, 11], vec![12], vec![13, 14, 15]];
    let mut row = Vec::new();
    let next = m.pack_row(&sentences, 2, 9, true, &mut row);
    assert_eq!(row, vec![2, 13, 14, 15, 3, 10, 11, 3, 12]);
    assert_eq!(next, 5);
    let mut row = Vec::new();
    let next = m.pack_row(&sentences, 1, 9, false, &mut row);
    assert_eq!(row, vec![2, 12, 3, 13, 14, 15, 3, 0, 0]);
    assert_eq!(next, 3);
}

#[test]
fn sampling_proportions_follow_counts_to_the_alpha() {
    let counts = [8000, 2000, 500];
    for alpha in [1.0, 0.5, 0.0] {
        let sampler = TemperatureSampler::new(&counts, alpha).unwrap();
        let expected: Vec<f64> = {
            let w: Vec<f64> = counts.iter().map(|&n| (n as f64).powf(alpha)).collect();
            let s: f64 = w.iter().sum();
            w.iter().map(|x| x / s).collect()
        };
        let mut hits = [0usize; 3];
        let mut rng = stream(1, Purpose::Batch, 0);
        let n = 200_000;
        for _ in 0..n {
            hits[sampler.sample(&mut rng)] += 1;
        }
        for l in 0..3 {
            let got = hits[l] as f64 / n as f64;
            assert!((sampler.probs()[l] - expected[l]).abs() < 1e-12);
            // 5 standard errors of a binomial share.
            let se = (expected[l] * (1.0 - expected[l]) / n as f64).sqrt();
            assert!((got - expected[l]).abs() < 5.0 * se + 1e-9, "alpha {alpha} lang {l}: {got} vs {}", expected[l]);
        }
        println!("alpha {alpha}: expected {expected:?}, drew {hits:?}");
    }
    assert!(TemperatureSampler::new(&[10, 0], 0.5).is_err());
    assert!(TemperatureSampler::new(&[10], f64::NAN).is_err());
}

#[test]
fn batch_json_is_validated() {
    let ok: MlmBatchJson = serde_json::from_str(
        r#"{"tokens": [[2, 7, 3], [2, 8, 0]], "lang": "en", "positions": [[1, 1]], "targets": [8]}"#,
    )
    .unwrap();
    let batch = ok.clone().into_batch(10, 0).unwrap();
    assert_eq!(batch.positions, vec![4]);
    assert_eq!(batch.pad, Some(0));
    let mut ragged = ok.clone();
    ragged.tokens[1].pop();
    assert!(ragged.into_batch(10, 0).unwrap_err().to_string().contains("row 1"));
    let mut outside = ok.clone();
    outside.positions = vec![[2, 0]];
    assert!(outside.into_batch(10, 0).unwrap_err().to_string().contains("[2, 0]"));
    assert!(ok.into_batch(8, 0).unwrap_err().to_string().contains('8'));
    assert!(serde_json::from_str::<MlmBatchJson>(
        r#"{"tokens": [[2]], "lang": "EN!", "positions": [], "targets": []}"#
    )
    .is_err());
}
