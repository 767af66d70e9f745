//! Language-specific parameters: top-k masks and Jaccard overlap, learned masks (straight-through
//! estimator) and Fisher importance masks, on tiny synthetic languages.

use candle_core::{DType, Device, Tensor, Var};
use interference::batch::MlmBatch;
use interference::data::{generate_synthetic, SyntheticSpec};
use interference::grads::mlm_gradients;
use interference::model::{LayerSlot, MlmModel, ModelConfig, ParamGroup};
use interference::probe::{
    fisher_overlap, jaccard, keep_count, learn_mask, learned_mask_overlap, random_jaccard, straight_through_gradients,
    top_k_mask, LayerOverlap, MaskLearningConfig, MaskScope, OverlapReport, ProbeBatchConfig, ProbeBatches,
};
use interference::tokenize::SharedTokenizer;
use interference::train::{split_held_out, AdamW, AdamWConfig, MlmData};
use interference::{Error, Lang, LangSet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Two synthetic languages `aa` and `bb` (seeds 1 and 2) keeping a share `shared_vocab` of the
/// family lexicon, with one shared tokenizer of `vocab` tokens.
fn synthetic(shared_vocab: f64, vocab: usize) -> MlmData {
    let specs = [
        ("aa", SyntheticSpec { sentences: 300, seed: 1, shared_vocab, ..Default::default() }),
        ("bb", SyntheticSpec { sentences: 300, seed: 2, shared_vocab, ..Default::default() }),
    ];
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (code, spec) in specs {
        let corpus = generate_synthetic(&spec, Lang::new(code).unwrap()).unwrap();
        let (t, v) = split_held_out(&corpus, 60, 0).unwrap();
        train.push(t);
        valid.push(v);
    }
    let tok = SharedTokenizer::train(&train, vocab).unwrap();
    MlmData::encode(&tok, &train, &valid).unwrap()
}

/// Two copies of one synthetic language (same lexicon and word order, different sentences),
/// over a vocabulary of twice the tokenizer's size. `disjoint`: `bb`'s non-special ids are
/// moved to the upper half, so the two languages share no token at all and differ in
/// nothing else; otherwise both use the lower half and are copies.
fn relabelled(disjoint: bool) -> MlmData {
    let data = synthetic(1.0, 150);
    let (v, specials) = (data.vocab_size() as u32, data.specials());
    let ids = |l: usize, sentences: &[Vec<u32>]| -> Vec<Vec<u32>> {
        let moved = |id: u32| if disjoint && l == 1 && !specials.contains(id) { id + v } else { id };
        sentences.iter().map(|s| s.iter().map(|&id| moved(id)).collect()).collect()
    };
    let train = (0..2).map(|l| ids(l, data.train(l))).collect();
    let valid = (0..2).map(|l| ids(l, data.valid(l))).collect();
    MlmData::from_ids(data.langs().clone(), train, valid, specials, 2 * v as usize).unwrap()
}

fn config(vocab_size: usize, lang_embeddings: bool) -> ModelConfig {
    ModelConfig {
        vocab_size,
        d_model: 16,
        layers: 1,
        heads: 2,
        d_ff: 32,
        max_len: 32,
        dropout: 0.0,
        lang_embeddings,
        adapter_bottleneck: 0,
        languages: LangSet::parse(&["aa", "bb"]).unwrap(),
        ln_eps: 1e-5,
    }
}

fn probe_batches(data: &MlmData, batches: usize) -> ProbeBatches {
    let config = ProbeBatchConfig { batches, batch_size: 8, seq_len: 24, seed: 3, held_out: false };
    ProbeBatches::new(data, &config).unwrap()
}

/// A one-layer model trained on `data` (plain AdamW on training-text batches, alternating
/// languages), and 8 probe batches per language.
fn train(data: &MlmData, lang_embeddings: bool) -> (MlmModel, ProbeBatches) {
    let model = MlmModel::new(config(data.vocab_size(), lang_embeddings), 7, DType::F32, &Device::Cpu).unwrap();
    let batches = ProbeBatchConfig { batches: 50, batch_size: 8, seq_len: 24, seed: 11, held_out: false };
    let batches = ProbeBatches::new(data, &batches).unwrap();
    let vars: Vec<&Var> = model.registry().vars().iter().collect();
    let decay: Vec<bool> = vars.iter().map(|v| v.rank() >= 2).collect();
    let mut adam = AdamW::new(AdamWConfig::default(), vars.len());
    for step in 0..200 {
        let g = mlm_gradients(&model, &batches.of(step % 2)[(step / 2) % 50]).unwrap();
        let grads: Vec<Option<Tensor>> = g.grads.into_iter().map(Some).collect();
        adam.step(&vars, &grads, &decay, 1e-2).unwrap();
    }
    (model, probe_batches(data, 8))
}

/// The model trained on two languages with disjoint vocabularies (built once, shared).
fn trained() -> &'static (MlmModel, ProbeBatches) {
    static TRAINED: OnceLock<(MlmModel, ProbeBatches)> = OnceLock::new();
    TRAINED.get_or_init(|| train(&relabelled(true), true))
}

#[test]
fn top_k_keeps_exact_counts_and_breaks_ties_by_index() {
    assert_eq!(top_k_mask(&[0.1, 0.5, 0.3, 0.5], 0.5), vec![false, true, false, true]);
    assert_eq!(top_k_mask(&[2.0, 2.0, 2.0, 2.0], 0.5), vec![true, true, false, false]);
    // -0.0 and 0.0 tie, so the lower index wins.
    assert_eq!(top_k_mask(&[0.0, -0.0, 1.0], 0.67), vec![true, false, true]);
    assert_eq!(top_k_mask(&[-0.0, 0.0, 1.0], 0.67), vec![true, false, true]);
    assert_eq!(top_k_mask(&[3.0, 1.0, 2.0], 1.0), vec![true, true, true]);
    // A tiny density keeps one entry, the largest; 0 and NaN densities too.
    assert_eq!(top_k_mask(&[0.2, 0.9, 0.4, 0.1, 0.3, 0.0, 0.5, 0.6, 0.7, 0.8], 0.01).iter().filter(|&&k| k).count(), 1);
    assert!(top_k_mask(&[0.2, 0.9, 0.4], 1e-9)[1]);
    assert_eq!(top_k_mask(&[0.2, 0.9, 0.4], 0.0), vec![false, true, false]);
    assert_eq!(top_k_mask(&[0.2, 0.9, 0.4], f64::NAN), vec![false, true, false]);
    // NaN scores count as lowest.
    assert_eq!(top_k_mask(&[f32::NAN, 0.1, 0.2], 2.0 / 3.0), vec![false, true, true]);
    assert!(top_k_mask(&[], 0.5).is_empty());
    // round(keep · n), half away from zero.
    assert_eq!(keep_count(10, 0.25), 3);
    assert_eq!(keep_count(10, 0.24), 2);
    assert_eq!(keep_count(10, 5.0), 10);
    assert_eq!(keep_count(0, 0.5), 0);
    let scores: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
    for keep in [0.001, 0.1, 0.3, 0.5, 0.999] {
        let mask = top_k_mask(&scores, keep);
        let kept = mask.iter().filter(|&&k| k).count();
        assert_eq!(kept, keep_count(1000, keep));
        // The kept entries are exactly those at or above the k-th largest score.
        let threshold = 1000.0 - kept as f32;
        assert!(mask.iter().zip(&scores).all(|(&k, &s)| k == (s >= threshold)), "keep {keep}");
    }
}

#[test]
fn jaccard_by_hand_and_the_random_baseline() {
    assert_eq!(jaccard(&[true, true, false, false], &[false, true, true, false]), 1.0 / 3.0);
    assert_eq!(jaccard(&[true, false], &[true, false]), 1.0);
    assert_eq!(jaccard(&[true, false], &[false, true]), 0.0);
    assert_eq!(jaccard(&[false, false], &[false, false]), 0.0);
    assert_eq!(jaccard(&[], &[]), 0.0);
    // Masks are sets of kept indices: missing entries are not kept.
    assert_eq!(jaccard(&[true, true], &[true, true, true, false]), 2.0 / 3.0);
    // Two independent random masks of density keep overlap by keep / (2 − keep).
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 20_000;
    for keep in [0.1, 0.3, 0.5, 0.9] {
        let a: Vec<f32> = (0..n).map(|_| rng.random()).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.random()).collect();
        let j = jaccard(&top_k_mask(&a, keep), &top_k_mask(&b, keep));
        println!("keep {keep}: random masks overlap {j:.4}, expected {:.4}", random_jaccard(keep));
        assert!((j - random_jaccard(keep)).abs() < 0.01);
    }
}

#[test]
fn scopes_select_block_matrices_and_the_token_embedding_by_metadata() {
    let mut config = config(60, true);
    config.layers = 2;
    config.adapter_bottleneck = 4;
    let model = MlmModel::new(config, 0, DType::F32, &Device::Cpu).unwrap();
    let registry = model.registry();
    let blocks = MaskScope::Blocks.params(registry).unwrap();
    let names: Vec<&str> = blocks.iter().map(|&p| registry.infos()[p].name.as_str()).collect();
    println!("Blocks: {names:?}");
    assert_eq!(blocks.len(), 12, "q, k, v, o, fc1, fc2 in each of 2 layers");
    for &p in &blocks {
        let info = &registry.infos()[p];
        assert_eq!(info.group, ParamGroup::Shared);
        assert!(matches!(info.slot, LayerSlot::Layer(_)));
        assert_eq!(registry.vars()[p].rank(), 2, "{}", info.name);
    }
    let with_emb = MaskScope::BlocksAndEmbeddings.params(registry).unwrap();
    assert_eq!(with_emb.len(), 13);
    assert_eq!(with_emb[0], registry.index("tok.weight").unwrap());
    assert_eq!(MaskScope::default(), MaskScope::Blocks);
    let empty = interference::model::ParamRegistry::new();
    assert!(matches!(MaskScope::Blocks.params(&empty), Err(Error::Config(_))));
    assert!(matches!(MaskScope::BlocksAndEmbeddings.params(&empty), Err(Error::Config(_))));
}

fn tiny_f64_model() -> MlmModel {
    let config = ModelConfig {
        vocab_size: 17,
        d_model: 8,
        layers: 1,
        heads: 2,
        d_ff: 12,
        max_len: 8,
        dropout: 0.1,
        lang_embeddings: true,
        adapter_bottleneck: 0,
        languages: LangSet::parse(&["en", "sw"]).unwrap(),
        ln_eps: 1e-5,
    };
    MlmModel::new(config, 3, DType::F64, &Device::Cpu).unwrap()
}

fn tiny_batch() -> MlmBatch {
    MlmBatch {
        lang: Lang::new("sw").unwrap(),
        rows: 2,
        cols: 6,
        tokens: vec![2, 5, 4, 9, 3, 11, 2, 7, 4, 16, 0, 0],
        positions: vec![2, 4, 8, 9],
        targets: vec![6, 13, 12, 15],
        pad: Some(0),
    }
}

#[test]
fn straight_through_score_gradient_is_weight_gradient_times_weight() {
    let model = tiny_f64_model();
    // Weights ten times the initial scale, so attention is far from uniform and every
    // gradient is well above finite-difference noise.
    for v in model.registry().vars() {
        if v.rank() == 2 {
            v.set(&(v.as_tensor() * 10.0).unwrap()).unwrap();
        }
    }
    let batch = tiny_batch();
    let params = MaskScope::BlocksAndEmbeddings.params(model.registry()).unwrap();
    let keep = 0.5;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let base = model.registry().detached();
    let scores: Vec<Var> = params
        .iter()
        .map(|&p| {
            let v: Vec<f64> = (0..base[p].elem_count()).map(|_| rng.random()).collect();
            Var::from_tensor(&Tensor::from_vec(v, base[p].shape(), &Device::Cpu).unwrap()).unwrap()
        })
        .collect();
    let g = straight_through_gradients(&model, &batch, &params, &scores, keep).unwrap();
    // The hard-masked parameters w_eff = w ⊙ m, built independently of the library.
    let mut masked = base.clone();
    let mut masks = Vec::new();
    for (&p, s) in params.iter().zip(&scores) {
        let host: Vec<f32> =
            s.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap().iter().map(|&x| x as f32).collect();
        let mask = top_k_mask(&host, keep);
        let w: Vec<f64> = base[p].flatten_all().unwrap().to_vec1().unwrap();
        let eff: Vec<f64> = w.iter().zip(&mask).map(|(&w, &k)| if k { w } else { 0.0 }).collect();
        masked[p] = Tensor::from_vec(eff, base[p].shape(), &Device::Cpu).unwrap();
        masks.push(mask);
    }
    let loss_at = |params: &[Tensor]| model.loss_with(params, &batch, None).unwrap().to_scalar::<f64>().unwrap();
    let hard = loss_at(&masked);
    println!("straight-through loss {:.6}, hard-masked loss {hard:.6}", g.loss);
    assert!((g.loss - hard).abs() < 1e-12);
    let h = 1e-5;
    let mut checked = (0, 0);
    let mut worst: f64 = 0.0;
    for (j, &p) in params.iter().enumerate() {
        let w: Vec<f64> = base[p].flatten_all().unwrap().to_vec1().unwrap();
        let eff: Vec<f64> = masked[p].flatten_all().unwrap().to_vec1().unwrap();
        let grad: Vec<f64> = g.grads[j].flatten_all().unwrap().to_vec1().unwrap();
        // A few kept and a few dropped weights of every tensor.
        let kept = positions(&masks[j], true).take(2);
        let dropped = positions(&masks[j], false).take(2);
        for i in kept.chain(dropped) {
            let shifted = |delta: f64| {
                let mut v = eff.clone();
                v[i] += delta;
                let mut params = masked.clone();
                params[p] = Tensor::from_vec(v, base[p].shape(), &Device::Cpu).unwrap();
                loss_at(&params)
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h) * w[i];
            let err = (grad[i] - fd).abs() / grad[i].abs().max(fd.abs()).max(1e-6);
            worst = worst.max(err);
            if masks[j][i] {
                checked.0 += 1;
            } else {
                checked.1 += 1;
            }
            assert!(err < 1e-5, "{} [{i}]: score gradient {:e}, FD {fd:e}", model.registry().infos()[p].name, grad[i]);
        }
    }
    println!("{} kept and {} dropped entries: worst relative error {worst:e}", checked.0, checked.1);
}

/// Indices where `mask` equals `value`.
fn positions(mask: &[bool], value: bool) -> impl Iterator<Item = usize> + '_ {
    mask.iter().enumerate().filter(move |(_, &b)| b == value).map(|(i, _)| i)
}

#[test]
fn learned_masks_keep_exact_counts_lower_the_loss_and_follow_the_seed() {
    let (model, batches) = trained();
    let lang = batches.of(0);
    let (keep, steps, lr) = (0.3, 30, 0.1);
    let a = learn_mask(model, lang, keep, steps, lr, 0, MaskScope::Blocks).unwrap();
    let full = lang.iter().map(|b| model.loss(b, None).unwrap().to_scalar::<f32>().unwrap() as f64).sum::<f64>()
        / lang.len() as f64;
    println!(
        "keep {keep}, {steps} steps: unmasked loss {full:.4}, starting mask {:.4}, learned mask {:.4}",
        a.initial_loss, a.final_loss
    );
    assert!(a.final_loss < a.initial_loss - 0.05, "learning did not lower the masked loss");
    for m in &a.masks {
        let n = model.registry().vars()[m.param].elem_count();
        assert_eq!(m.mask.len(), n);
        assert_eq!(
            m.mask.iter().filter(|&&k| k).count(),
            keep_count(n, keep),
            "{}",
            model.registry().infos()[m.param].name
        );
    }
    // The reported loss is the loss of the applied mask.
    let applied = a.apply(model).unwrap();
    let check = lang
        .iter()
        .map(|b| model.loss_with(&applied, b, None).unwrap().to_scalar::<f32>().unwrap() as f64)
        .sum::<f64>()
        / lang.len() as f64;
    assert!((check - a.final_loss).abs() < 1e-5);
    // Deterministic for a seed, different across seeds and languages.
    let again = learn_mask(model, lang, keep, steps, lr, 0, MaskScope::Blocks).unwrap();
    assert_eq!(again, a);
    let other_seed = learn_mask(model, lang, keep, steps, lr, 1, MaskScope::Blocks).unwrap();
    let other_lang = learn_mask(model, batches.of(1), keep, steps, lr, 0, MaskScope::Blocks).unwrap();
    let flat = |m: &interference::probe::LearnedMask| m.masks.iter().flat_map(|m| m.mask.clone()).collect::<Vec<_>>();
    let seeds = jaccard(&flat(&a), &flat(&other_seed));
    let langs = jaccard(&flat(&a), &flat(&other_lang));
    println!(
        "Jaccard seed 0 vs 1 (aa): {seeds:.4}; aa vs bb (seed 0): {langs:.4}; random {:.4}; bb losses {:.4} -> {:.4}",
        random_jaccard(keep),
        other_lang.initial_loss,
        other_lang.final_loss
    );
    assert_ne!(other_seed.masks, a.masks);
    assert!(seeds < 0.99);
}

/// Fisher overlaps of an untrained model without language embeddings (so that copies look
/// alike to it), with 16 probe batches per language.
fn fisher_report(data: &MlmData) -> OverlapReport {
    let model = MlmModel::new(config(data.vocab_size(), false), 5, DType::F32, &Device::Cpu).unwrap();
    fisher_overlap(&model, &probe_batches(data, 16), &[0.1, 0.3], MaskScope::BlocksAndEmbeddings).unwrap()
}

fn show(report: &OverlapReport) {
    for l in &report.layers {
        println!(
            "  {} keep {:.2} {:?}: cross {:.4}, same-language {:.4}, random {:.4}",
            report.method,
            l.keep,
            l.slot,
            l.mean_pair_jaccard(),
            l.same_language_baseline,
            l.random_baseline
        );
    }
}

fn at(report: &OverlapReport, slot: LayerSlot, keep: f64) -> &LayerOverlap {
    report.layers.iter().find(|l| l.slot == slot && l.keep == keep).unwrap()
}

#[test]
fn fisher_masks_separate_disjoint_vocabularies_and_not_copies() {
    let disjoint = fisher_report(&relabelled(true));
    println!("disjoint vocabularies (copies with relabelled tokens):");
    show(&disjoint);
    let copies = fisher_report(&relabelled(false));
    println!("copies (same lexicon and order, different sentences):");
    show(&copies);
    let natural = synthetic(0.0, 200);
    let tokens: Vec<HashSet<u32>> = (0..2).map(|l| natural.train(l).iter().flatten().copied().collect()).collect();
    println!(
        "shared_vocab 0.0 ({} and {} subword types, {} shared):",
        tokens[0].len(),
        tokens[1].len(),
        tokens[0].intersection(&tokens[1]).count()
    );
    let natural = fisher_report(&natural);
    show(&natural);
    for keep in [0.1, 0.3] {
        let (d, c, n) = (
            at(&disjoint, LayerSlot::Embeddings, keep),
            at(&copies, LayerSlot::Embeddings, keep),
            at(&natural, LayerSlot::Embeddings, keep),
        );
        // No shared token: the embedding masks overlap at or below chance.
        assert!(d.mean_pair_jaccard() < d.random_baseline, "keep {keep}: disjoint {:.3}", d.mean_pair_jaccard());
        assert!(d.mean_pair_jaccard() < d.same_language_baseline / 3.0);
        // Copies: as much overlap across languages as within one.
        let gap = c.mean_pair_jaccard() - c.same_language_baseline;
        assert!(
            gap.abs() < 0.1,
            "keep {keep}: copies cross {:.3} vs same {:.3}",
            c.mean_pair_jaccard(),
            c.same_language_baseline
        );
        // Different words over shared syllables: in between.
        assert!(
            n.mean_pair_jaccard() < n.same_language_baseline - 0.05,
            "keep {keep}: natural {:.3}",
            n.mean_pair_jaccard()
        );
        assert!(d.mean_pair_jaccard() < n.mean_pair_jaccard());
    }
}

#[test]
fn reports_cover_every_layer_and_density_and_round_trip() {
    let (model, batches) = trained();
    let config = MaskLearningConfig {
        keeps: vec![0.1, 0.3],
        steps: 40,
        lr: 0.1,
        scope: MaskScope::BlocksAndEmbeddings,
        ..MaskLearningConfig::default()
    };
    let report = learned_mask_overlap(model, batches, &config).unwrap();
    println!("learned masks, disjoint vocabularies:");
    show(&report);
    assert_eq!(report.method, "learned_mask");
    assert_eq!(report.langs, batches.langs().iter().cloned().collect::<Vec<_>>());
    let got: Vec<(f64, LayerSlot)> = report.layers.iter().map(|l| (l.keep, l.slot)).collect();
    assert_eq!(
        got,
        vec![
            (0.1, LayerSlot::Embeddings),
            (0.1, LayerSlot::Layer(0)),
            (0.3, LayerSlot::Embeddings),
            (0.3, LayerSlot::Layer(0))
        ]
    );
    for l in &report.layers {
        assert_eq!(l.pairs.len(), 1);
        assert_eq!((l.pairs[0].a.as_str(), l.pairs[0].b.as_str()), ("aa", "bb"));
        assert!((0.0..=1.0).contains(&l.pairs[0].jaccard) && (0.0..=1.0).contains(&l.same_language_baseline));
        assert_eq!(l.random_baseline, random_jaccard(l.keep));
        if l.slot == LayerSlot::Embeddings {
            // Languages without a shared token learn embedding masks that barely overlap.
            assert!(l.mean_pair_jaccard() < l.same_language_baseline / 2.0, "keep {}", l.keep);
        }
    }
    let json = serde_json::to_string(&report).unwrap();
    let back: OverlapReport = serde_json::from_str(&json).unwrap();
    assert_eq!((&back.method, &back.langs, back.layers.len()), (&report.method, &report.langs, report.layers.len()));
    for (b, l) in back.layers.iter().zip(&report.layers) {
        assert_eq!((b.slot, b.keep, &b.pairs[0].a, &b.pairs[0].b), (l.slot, l.keep, &l.pairs[0].a, &l.pairs[0].b));
        assert!((b.pairs[0].jaccard - l.pairs[0].jaccard).abs() < 1e-12);
        assert!((b.same_language_baseline - l.same_language_baseline).abs() < 1e-12);
    }
    let fisher = fisher_overlap(model, batches, &[0.1], MaskScope::Blocks).unwrap();
    assert_eq!(fisher.method, "fisher");
    assert_eq!(fisher.layers.iter().map(|l| l.slot).collect::<Vec<_>>(), vec![LayerSlot::Layer(0)]);
    // The config is strict JSON with defaults.
    let parsed: MaskLearningConfig =
        serde_json::from_str(r#"{"keeps": [0.1], "scope": "blocks_and_embeddings"}"#).unwrap();
    assert_eq!(parsed.steps, MaskLearningConfig::default().steps);
    assert!(serde_json::from_str::<MaskLearningConfig>(r#"{"keep": [0.1]}"#).is_err());
}

#[test]
fn learned_masks_of_copies_overlap_as_much_as_one_language() {
    // Without language embeddings the model cannot tell the copies apart.
    let (model, batches) = train(&relabelled(false), false);
    let config = MaskLearningConfig { keeps: vec![0.1, 0.3], steps: 40, lr: 0.1, ..MaskLearningConfig::default() };
    let report = learned_mask_overlap(&model, &batches, &config).unwrap();
    println!("learned masks, copies:");
    show(&report);
    for l in &report.layers {
        let gap = l.mean_pair_jaccard() - l.same_language_baseline;
        assert!(
            gap.abs() < 0.1,
            "keep {}: cross {:.3} vs same {:.3}",
            l.keep,
            l.mean_pair_jaccard(),
            l.same_language_baseline
        );
    }
}

#[test]
fn bad_inputs_are_errors_naming_the_value() {
    let (model, batches) = trained();
    let err = |r: Result<OverlapReport, Error>| match r {
        Err(Error::Config(m)) => m,
        other => panic!("expected a config error, got {other:?}"),
    };
    let one = probe_batches(&relabelled(true), 1);
    assert!(err(fisher_overlap(model, &one, &[0.1], MaskScope::Blocks)).contains("K = 1"));
    assert!(err(fisher_overlap(model, batches, &[0.1, 1.5], MaskScope::Blocks)).contains("1.5"));
    assert!(err(fisher_overlap(model, batches, &[], MaskScope::Blocks)).contains("keeps"));
    let same_seeds = MaskLearningConfig { seeds: [4, 4], ..MaskLearningConfig::default() };
    assert!(err(learned_mask_overlap(model, batches, &same_seeds)).contains("[4, 4]"));
    let zero = MaskLearningConfig { keeps: vec![0.0], ..MaskLearningConfig::default() };
    assert!(err(learned_mask_overlap(model, batches, &zero)).contains("keep 0"));
    let bad_lr = MaskLearningConfig { lr: f64::NAN, ..MaskLearningConfig::default() };
    assert!(err(learned_mask_overlap(model, batches, &bad_lr)).contains("NaN"));
    let mixed: Vec<MlmBatch> = vec![batches.of(0)[0].clone(), batches.of(1)[0].clone()];
    match learn_mask(model, &mixed, 0.5, 1, 0.1, 0, MaskScope::Blocks) {
        Err(Error::Config(m)) => assert!(m.contains("aa") && m.contains("bb"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(matches!(learn_mask(model, &[], 0.5, 1, 0.1, 0, MaskScope::Blocks), Err(Error::Config(_))));
    assert!(err(learned_mask_overlap(model, &one, &MaskLearningConfig::default())).contains("K = 1"));
    // Masks and scores that do not fit the model are shape errors naming the sizes.
    let mut mask = learn_mask(model, batches.of(0), 0.5, 1, 0.1, 0, MaskScope::Blocks).unwrap();
    mask.masks[0].mask.pop();
    match mask.apply(model) {
        Err(Error::Shape(m)) => assert!(m.contains("entries"), "{m}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    mask.masks[0].param = 10_000;
    assert!(matches!(mask.apply(model), Err(Error::Shape(m)) if m.contains("10000")));
    let one_score = [Var::zeros(3, DType::F32, &Device::Cpu).unwrap()];
    let batch = &batches.of(0)[0];
    assert!(matches!(straight_through_gradients(model, batch, &[0, 1], &one_score, 0.5), Err(Error::Shape(_))));
    match straight_through_gradients(model, batch, &[0], &one_score, 0.5) {
        Err(Error::Shape(m)) => assert!(m.contains("tok.weight"), "{m}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
}
