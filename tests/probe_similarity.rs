//! Gradient-similarity probes against a straightforward f64 oracle, and on synthetic
//! languages built to agree or to conflict.

use candle_core::{DType, Device};
use interference::data::{generate_synthetic, SyntheticSpec, WordOrder};
use interference::grads::mlm_gradients;
use interference::model::{LayerSlot, MlmModel, ModelConfig, ParamGroup};
use interference::probe::{slot_name, ConflictSeries, GradientProbe, ProbeBatchConfig, ProbeBatches, ProbeHook};
use interference::progress::Silent;
use interference::tokenize::{SharedTokenizer, SpecialIds};
use interference::train::{split_held_out, Method, MlmData, TrainConfig, Trainer};
use interference::{Lang, LangSet};

fn config(langs: &LangSet, vocab: usize, d: usize) -> ModelConfig {
    ModelConfig {
        vocab_size: vocab,
        d_model: d,
        layers: 2,
        heads: 2,
        d_ff: 2 * d,
        max_len: 32,
        dropout: 0.1,
        lang_embeddings: false,
        adapter_bottleneck: 0,
        languages: langs.clone(),
        ln_eps: 1e-5,
    }
}

#[test]
fn cosines_match_a_plain_f64_computation() {
    let langs = LangSet::parse(&["aa", "bb", "cc"]).unwrap();
    let vocab = 40;
    let sentences = |seed: u32| -> Vec<Vec<u32>> {
        (0..30u32).map(|i| (0..6u32).map(|j| 5 + (i * 7 + j * 3 + seed * 11) % (vocab as u32 - 5)).collect()).collect()
    };
    let data = MlmData::from_ids(
        langs.clone(),
        vec![sentences(0), sentences(1), sentences(2)],
        vec![sentences(3), sentences(4), sentences(5)],
        SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 },
        vocab,
    )
    .unwrap();
    let model = MlmModel::new(config(&langs, vocab, 8), 2, DType::F64, &Device::Cpu).unwrap();
    let batches =
        ProbeBatches::new(&data, &ProbeBatchConfig { batches: 3, batch_size: 2, seq_len: 12, ..Default::default() })
            .unwrap();
    let report = GradientProbe::new(&model, batches.clone()).unwrap().run(&model, 0).unwrap();

    // The oracle: flatten each language's gradient of a group on the host and take cosines pair
    // by pair, then average over the batches.
    let infos = model.registry().infos();
    let host: Vec<Vec<Vec<Vec<f64>>>> = (0..3)
        .map(|k| {
            (0..3)
                .map(|l| {
                    let g = mlm_gradients(&model, &batches.of(l)[k]).unwrap();
                    g.grads.iter().map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap()).collect()
                })
                .collect()
        })
        .collect();
    let shared: Vec<usize> = (0..infos.len()).filter(|&i| infos[i].group == ParamGroup::Shared).collect();
    let groups: Vec<(String, Vec<usize>)> = vec![
        ("model".into(), shared.clone()),
        (
            slot_name(LayerSlot::Layer(1)),
            shared.iter().copied().filter(|&i| infos[i].slot == LayerSlot::Layer(1)).collect(),
        ),
        ("layers.0.fc1.weight".into(), vec![model.registry().index("layers.0.fc1.weight").unwrap()]),
    ];
    let mut worst: f64 = 0.0;
    for (name, members) in groups {
        let flat = |k: usize, l: usize| -> Vec<f64> { members.iter().flat_map(|&p| host[k][l][p].clone()).collect() };
        let group = report.group(&name).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let cos: f64 = (0..3)
                    .map(|k| {
                        let (a, b) = (flat(k, i), flat(k, j));
                        let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
                        let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
                        let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
                        dot / (na * nb)
                    })
                    .sum::<f64>()
                    / 3.0;
                worst = worst.max((cos - group.cosine[i][j]).abs());
            }
        }
    }
    println!("max |probe cosine - f64 oracle| = {worst:e}");
    assert!(worst < 1e-12, "{worst}");
    let model_group = report.group("model").unwrap();
    assert!((model_group.cosine[1][1] - 1.0).abs() < 1e-12);
    assert!(report.groups.len() > 3 + 2);
}

/// Four synthetic languages of one family: `aa`; `ab`, an exact copy of it; `bb`, the same
/// words in the same order but other sentences; and `cc`, built to conflict (disjoint words,
/// verb-final, adjectives after nouns).
fn family() -> (MlmData, LangSet) {
    let base = SyntheticSpec { sentences: 600, ..Default::default() };
    let specs = [
        ("aa", SyntheticSpec { seed: 1, ..base.clone() }),
        ("ab", SyntheticSpec { seed: 1, ..base.clone() }),
        ("bb", SyntheticSpec { seed: 2, ..base.clone() }),
        (
            "cc",
            SyntheticSpec {
                seed: 3,
                shared_vocab: 0.0,
                word_order: WordOrder::Sov,
                adjective_after_noun: true,
                ..base
            },
        ),
    ];
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (code, spec) in specs {
        let (t, v) = split_held_out(&generate_synthetic(&spec, Lang::new(code).unwrap()).unwrap(), 100, 0).unwrap();
        train.push(t);
        valid.push(v);
    }
    let tok = SharedTokenizer::train(&train, 600).unwrap();
    let data = MlmData::encode(&tok, &train, &valid).unwrap();
    let langs = data.langs().clone();
    (data, langs)
}

#[test]
fn copies_agree_and_conflicting_languages_do_not() {
    let (data, langs) = family();
    let model = MlmModel::new(config(&langs, data.vocab_size(), 32), 0, DType::F32, &Device::Cpu).unwrap();
    let batches =
        ProbeBatches::new(&data, &ProbeBatchConfig { batches: 2, batch_size: 32, seq_len: 32, ..Default::default() })
            .unwrap();
    let probe = GradientProbe::new(&model, batches).unwrap();
    let train = TrainConfig {
        method: Method::Joint,
        steps: 40,
        batch_size: 12,
        seq_len: 32,
        lr: 2e-3,
        warmup_steps: 4,
        ..Default::default()
    };
    let mut trainer = Trainer::new(model, data, train).unwrap();
    let mut hook = ProbeHook::new(probe, 20);
    hook.probe_now(&trainer).unwrap();
    trainer.train_with(&mut Silent, &mut [&mut hook]).unwrap();
    let series: ConflictSeries = hook.into_series();
    assert_eq!(series.points.iter().map(|p| p.step).collect::<Vec<_>>(), vec![0, 20, 40]);
    let last = series.points.last().unwrap();
    for name in ["model", "embeddings", "layer.0", "layer.1", "output"] {
        let c = &last.group(name).unwrap().cosine;
        println!(
            "{name:>10}: cos(aa, exact copy) {:.4}  cos(aa, same grammar) {:.3}  cos(aa, conflict) {:.3}",
            c[0][1], c[0][2], c[0][3]
        );
    }
    for name in ["model", "layer.0", "layer.1"] {
        let c = &last.group(name).unwrap().cosine;
        assert!(c[0][1] > 0.999, "{name}: exact copies should agree: {}", c[0][1]);
        assert!(c[0][2] > c[0][3] + 0.05, "{name}: same grammar {} vs conflict {}", c[0][2], c[0][3]);
    }
    let curve = series.cosine_curve("model", &langs.as_slice()[0], &langs.as_slice()[3]);
    println!("cos(aa, cc) over training: {curve:?}");
    let summary = series.summary();
    let model_conflicts = summary.iter().find(|g| g.group == "model").unwrap();
    assert_eq!(model_conflicts.pairs.len(), 6);
    assert_eq!(model_conflicts.over_time.len(), 3);
    assert!((0.0..=1.0).contains(&model_conflicts.negative_share));
}
