//! Downstream tasks: metrics against hand-computed cases, readers, fine-tuning on synthetic
//! POS, zero-shot transfer and the resumable experiment harness.

use candle_core::{DType, Device};
use interference::data::{generate_synthetic, PairReader, SyntheticSpec, TagReader, WordOrder};
use interference::model::{MlmModel, ModelConfig};
use interference::run::{run_experiment, ExperimentGrid};
use interference::task::{
    accuracy, entities, entity_scores, finetune, FineTuneConfig, LabelSet, RawTask, TaskKind, TaskSet,
};
use interference::tokenize::SharedTokenizer;
use interference::{Lang, LangSet};
use std::collections::HashMap;
use std::path::Path;

#[test]
fn entity_f1_matches_hand_computed_cases() {
    // seqeval reads I- after O as the start of an entity.
    assert_eq!(
        entities(&["O", "I-PER", "I-PER", "B-LOC", "I-ORG"]),
        vec![("PER".to_string(), 1, 3), ("LOC".to_string(), 3, 4), ("ORG".to_string(), 4, 5)]
    );
    assert_eq!(entities(&["B-PER", "B-PER", "O"]), vec![("PER".to_string(), 0, 1), ("PER".to_string(), 1, 2)]);
    // Gold: PER[0,2), LOC[3,4), ORG[5,7) = 3 entities. Predicted: PER[0,2) right, LOC[3,5) wrong
    // span, ORG[5,7) right, MISC[8,9) spurious = 4. P = 2/4, R = 2/3, F1 = 4/7.
    let gold = vec![vec!["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG", "O", "O"]];
    let pred = vec![vec!["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "O", "B-MISC"]];
    let s = entity_scores(&gold, &pred);
    println!("hand case: precision {} recall {} f1 {}", s.precision, s.recall, s.f1);
    assert!(
        (s.precision - 0.5).abs() < 1e-12 && (s.recall - 2.0 / 3.0).abs() < 1e-12 && (s.f1 - 4.0 / 7.0).abs() < 1e-12
    );
    // Over two sentences, micro-averaged: 1 right of 2 gold and 1 predicted.
    let s = entity_scores(&[vec!["B-X"], vec!["B-Y"]], &[vec!["B-X"], vec!["O"]]);
    assert_eq!((s.precision, s.recall), (1.0, 0.5));
    assert_eq!(entity_scores(&[vec!["O"]], &[vec!["O"]]).f1, 0.0);
    assert_eq!(accuracy(&["a", "b", "c"], &["a", "x", "c"]), 2.0 / 3.0);
}

#[test]
fn pair_and_tag_readers_name_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let nli = dir.path().join("nli.tsv");
    std::fs::write(&nli, "a b\tc d\tentailment\nonly\ttwo\n").unwrap();
    let err = PairReader::read(&nli).unwrap_err().to_string();
    assert!(err.contains("nli.tsv:2") && err.contains("3"), "{err}");
    let pos = dir.path().join("pos.txt");
    std::fs::write(&pos, "Katika ADP\nbaadhi SCONJ extra\n").unwrap();
    let err = TagReader::read(&pos).unwrap_err().to_string();
    assert!(err.contains("pos.txt:2"), "{err}");
    std::fs::write(&pos, "Katika ADP\n\nya\tSCONJ\n").unwrap();
    assert_eq!(TagReader::read(&pos).unwrap().len(), 2);
    assert!(LabelSet::from_labels(["B", "A"]).unwrap().id("C").unwrap_err().to_string().contains("\"C\""));
}

/// Writes a synthetic language's sentences as a two-column POS file (tags from its lexicon).
fn write_pos(spec: &SyntheticSpec, code: &str, path: &Path) {
    let lexicon = spec.lexicon().unwrap();
    let tags: HashMap<&str, String> = lexicon.iter().map(|(pos, w)| (w, format!("{pos:?}").to_uppercase())).collect();
    let corpus = generate_synthetic(spec, Lang::new(code).unwrap()).unwrap();
    let mut text = String::new();
    for s in &corpus.sentences {
        for w in s.split(' ') {
            text.push_str(&format!("{w}\t{}\n", tags[w]));
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn finetuned_tagger_beats_the_majority_and_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |seed, sentences, order| SyntheticSpec { seed, sentences, word_order: order, ..Default::default() };
    write_pos(&spec(1, 300, WordOrder::Svo), "aa", &dir.path().join("aa.train"));
    write_pos(&spec(2, 100, WordOrder::Svo), "aa", &dir.path().join("aa.test"));
    write_pos(&spec(3, 100, WordOrder::Sov), "bb", &dir.path().join("bb.test"));
    let text = [generate_synthetic(&spec(1, 300, WordOrder::Svo), Lang::new("aa").unwrap()).unwrap()];
    let tok = SharedTokenizer::train(&text, 300).unwrap();
    let raw = |f: &str| RawTask::read(TaskKind::Pos, &dir.path().join(f)).unwrap();
    let labels = LabelSet::from_labels(raw("aa.train").labels()).unwrap();
    let set = |f: &str, code: &str| {
        TaskSet::encode(TaskKind::Pos, Lang::new(code).unwrap(), &raw(f), &tok, &labels, 32).unwrap()
    };
    let config = ModelConfig {
        vocab_size: tok.vocab_size(),
        d_model: 32,
        layers: 1,
        heads: 2,
        d_ff: 64,
        max_len: 32,
        dropout: 0.0,
        lang_embeddings: false,
        adapter_bottleneck: 0,
        languages: LangSet::parse(&["aa", "bb"]).unwrap(),
        ln_eps: 1e-12,
    };
    let encoder = MlmModel::new(config, 0, DType::F32, &Device::Cpu).unwrap();
    let before: Vec<f32> = encoder.registry().vars()[0].flatten_all().unwrap().to_vec1().unwrap();
    let tuned = finetune(
        &encoder,
        &set("aa.train", "aa"),
        &labels,
        &FineTuneConfig { steps: 60, lr: 3e-3, max_len: 32, ..Default::default() },
    )
    .unwrap();
    let within = tuned.evaluate(&set("aa.test", "aa")).unwrap();
    let zero_shot = tuned.evaluate(&set("bb.test", "bb")).unwrap();
    // Majority baseline: the most frequent tag's share of the test tokens.
    let test = set("aa.test", "aa");
    let mut counts = HashMap::new();
    test.examples.iter().flat_map(|e| &e.labels).for_each(|l| *counts.entry(*l).or_insert(0usize) += 1);
    let majority = *counts.values().max().unwrap() as f64 / counts.values().sum::<usize>() as f64;
    println!(
        "POS accuracy within {:.3}, zero-shot to verb-final copy {:.3}, majority {majority:.3}",
        within.value, zero_shot.value
    );
    assert!(within.value > majority + 0.2, "{} vs {majority}", within.value);
    assert!(zero_shot.value > majority, "shared words should transfer: {}", zero_shot.value);
    let after: Vec<f32> = encoder.registry().vars()[0].flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(before, after, "fine-tuning must not modify the pretrained encoder");
}

#[test]
fn experiment_grid_runs_resumes_and_tabulates() {
    let dir = tempfile::tempdir().unwrap();
    write_pos(&SyntheticSpec { seed: 1, sentences: 80, ..Default::default() }, "aa", &dir.path().join("aa.pos"));
    write_pos(
        &SyntheticSpec { seed: 2, sentences: 80, word_order: WordOrder::Sov, ..Default::default() },
        "bb",
        &dir.path().join("bb.pos"),
    );
    let grid = r#"{
      "languages": [{"code": "aa", "synthetic": {"sentences": 200, "seed": 1}},
                    {"code": "bb", "synthetic": {"sentences": 200, "seed": 2, "word_order": "sov"}}],
      "tasks": [{"name": "pos", "kind": "pos", "train": {"aa": "aa.pos", "bb": "bb.pos"}, "test": {"aa": "aa.pos", "bb": "bb.pos"}}],
      "seeds": [0, 1],
      "tokenizer": {"train": {"vocab_size": 200}},
      "model": {"d_model": 16, "layers": 1, "heads": 2, "d_ff": 32, "max_len": 32},
      "train": {"steps": 4, "batch_size": 4, "seq_len": 32, "eval_batches": 1},
      "held_out": 20,
      "finetune": {"steps": 4, "batch_size": 4, "max_len": 32}
    }"#;
    std::fs::write(dir.path().join("grid.json"), grid).unwrap();
    let parsed = ExperimentGrid::from_file(&dir.path().join("grid.json")).unwrap();
    let out = dir.path().join("out");
    let mut silent =
        |_: &str| -> Box<dyn interference::progress::Progress> { Box::new(interference::progress::Silent) };
    let first = run_experiment(&parsed, &out, &Device::Cpu, &mut silent).unwrap();
    // 2 seeds × 3 language sets ([aa], [bb], [aa, bb]); the joint model scores 2 × 2 pairs.
    let runs_dir = std::fs::read_dir(out.join("runs")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read_dir(&runs_dir).unwrap().count(), 6);
    assert_eq!(first.scores.len(), 2 * (1 + 1 + 4));
    assert_eq!(first.interference.len(), 2);
    for c in &first.interference {
        println!(
            "{} {} {}: mono {:.3} multi {:.3} Δ {:+.3} ± {:.3} ({} seeds)",
            c.task,
            c.method.name(),
            c.lang,
            c.mono_mean,
            c.multi_mean,
            c.delta_mean,
            c.delta_ci95,
            c.seeds
        );
        assert_eq!(c.seeds, 2);
        assert!((c.delta_mean - (c.multi_mean - c.mono_mean)).abs() < 1e-9);
    }
    // A second run reuses every finished run: same scores, no file rewritten.
    let stamps: Vec<_> =
        std::fs::read_dir(&runs_dir).unwrap().map(|e| e.unwrap().metadata().unwrap().modified().unwrap()).collect();
    let second = run_experiment(&parsed, &out, &Device::Cpu, &mut silent).unwrap();
    assert_eq!(second.scores, first.scores);
    let again: Vec<_> =
        std::fs::read_dir(&runs_dir).unwrap().map(|e| e.unwrap().metadata().unwrap().modified().unwrap()).collect();
    assert_eq!(stamps, again);
    // A changed setting starts a new set of runs instead of reusing these.
    let changed = ExperimentGrid {
        finetune: interference::task::FineTuneConfig { steps: 5, batch_size: 4, max_len: 32, ..Default::default() },
        ..parsed
    };
    run_experiment(&changed, &out, &Device::Cpu, &mut silent).unwrap();
    assert_eq!(std::fs::read_dir(out.join("runs")).unwrap().count(), 2);
}
