//! Training end to end on synthetic languages: learning, exact resume, atomic checkpoints.

#[path = "common/synthetic.rs"]
mod synthetic;

use candle_core::{DType, Device};
use interference::model::{MlmModel, ModelConfig};
use interference::progress::Silent;
use interference::train::{
    Granularity, MetaConfig, MetaOrder, Method, MlmData, SurgeryConfig, TrainConfig, Trainer, TRAINER_FILE,
};
use interference::{Error, Lang, LangSet};

fn data() -> MlmData {
    synthetic::two_languages(400)
}

fn model(data: &MlmData, adapters: usize) -> MlmModel {
    let config = ModelConfig {
        vocab_size: data.vocab_size(),
        d_model: 32,
        layers: 1,
        heads: 2,
        d_ff: 64,
        max_len: 32,
        dropout: 0.1,
        lang_embeddings: true,
        adapter_bottleneck: adapters,
        languages: LangSet::parse(&["aa", "bb"]).unwrap(),
        ln_eps: 1e-12,
    };
    MlmModel::new(config, 7, DType::F32, &Device::Cpu).unwrap()
}

fn train_config(steps: usize, method: Method) -> TrainConfig {
    TrainConfig {
        method,
        steps,
        batch_size: 8,
        seq_len: 32,
        lr: 2e-3,
        warmup_steps: 5,
        seed: 11,
        eval_batches: 2,
        ..TrainConfig::default()
    }
}

fn weights(t: &Trainer) -> Vec<Vec<f32>> {
    t.model().registry().vars().iter().map(|v| v.flatten_all().unwrap().to_vec1().unwrap()).collect()
}

#[test]
fn stepping_reduces_the_held_out_loss_for_every_language() {
    let data = data();
    let mut trainer = Trainer::new(model(&data, 0), data, train_config(60, Method::Joint)).unwrap();
    let before = trainer.evaluate().unwrap();
    let first = trainer.step().unwrap();
    assert_eq!(first.step, 1);
    assert!(first.languages.iter().map(|l| l.rows).sum::<usize>() == 8);
    let evals = trainer.train(&mut Silent).unwrap();
    let after = evals.last().unwrap();
    for (b, a) in before.languages.iter().zip(&after.languages) {
        println!("{}: held-out loss {:.3} -> {:.3}, accuracy {:.3}", a.lang, b.loss, a.loss, a.accuracy);
        assert!(a.loss < b.loss - 0.5, "{} did not learn", a.lang);
    }
}

#[test]
fn resume_continues_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let data = data();
    let mut straight = Trainer::new(model(&data, 4), data.clone(), train_config(12, Method::Adapters)).unwrap();
    let straight_losses: Vec<f64> = (0..12).map(|_| straight.step().unwrap().loss).collect();

    let mut first = Trainer::new(model(&data, 4), data.clone(), train_config(12, Method::Adapters)).unwrap();
    let mut losses: Vec<f64> = (0..5).map(|_| first.step().unwrap().loss).collect();
    first.save(dir.path()).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(dir.path(), data, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(resumed.steps_done(), 5);
    losses.extend((0..7).map(|_| resumed.step().unwrap().loss));
    assert_eq!(losses, straight_losses, "step losses differ after resume");
    assert_eq!(weights(&resumed), weights(&straight), "weights differ after resume");
}

#[test]
fn checkpoints_are_atomic_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let data = data();
    let mut trainer = Trainer::new(model(&data, 0), data.clone(), train_config(3, Method::Joint)).unwrap();
    trainer.step().unwrap();
    trainer.save(dir.path()).unwrap();
    trainer.step().unwrap();
    trainer.save(dir.path()).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "temporary files left: {names:?}");
    assert_eq!(names.len(), 3, "{names:?}");
    // Missing parts of a checkpoint are clear errors naming the file.
    std::fs::remove_file(dir.path().join(TRAINER_FILE)).unwrap();
    match Trainer::resume(dir.path(), data.clone(), DType::F32, &Device::Cpu) {
        Err(Error::MissingCheckpoint { path }) => assert!(path.ends_with(TRAINER_FILE)),
        other => panic!("expected a missing-checkpoint error, got {:?}", other.err()),
    }
    let empty = tempfile::tempdir().unwrap();
    let err = MlmModel::load(&empty.path().join("model.safetensors"), DType::F32, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn a_failed_write_leaves_the_old_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    interference::io::write_atomic(&path, b"old").unwrap();
    // A directory in the way of the temporary file makes the write fail.
    let pid = std::process::id();
    std::fs::create_dir(dir.path().join(format!(".out.json.{pid}.tmp"))).unwrap();
    assert!(interference::io::write_atomic(&path, b"new").is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
}

#[test]
fn method_and_model_must_agree() {
    let data = data();
    assert!(Trainer::new(model(&data, 4), data.clone(), train_config(1, Method::Joint)).is_err());
    assert!(Trainer::new(model(&data, 0), data.clone(), train_config(1, Method::Adapters)).is_err());
    let mono = data.subset(&[Lang::new("bb").unwrap()]).unwrap();
    let mut t = Trainer::new(model(&data, 0), mono, train_config(2, Method::Joint)).unwrap();
    let r = t.step().unwrap();
    assert_eq!(r.languages.len(), 1);
    assert!(data.subset(&[Lang::new("zz").unwrap()]).unwrap_err().to_string().contains("zz"));
}

fn with_method(steps: usize, method: Method) -> TrainConfig {
    TrainConfig {
        meta: MetaConfig { meta_sentences: 40, meta_batch_size: 2, ..MetaConfig::default() },
        ..train_config(steps, method)
    }
}

#[test]
fn every_method_learns_every_language() {
    let data = data();
    let cases: Vec<(&str, usize, TrainConfig)> = vec![
        ("meta exact", 4, with_method(40, Method::Meta)),
        (
            "meta finite difference",
            4,
            TrainConfig {
                meta: MetaConfig {
                    order: MetaOrder::FiniteDifference,
                    meta_sentences: 40,
                    meta_batch_size: 2,
                    ..MetaConfig::default()
                },
                ..train_config(40, Method::Meta)
            },
        ),
        (
            "meta first order",
            4,
            TrainConfig {
                meta: MetaConfig {
                    order: MetaOrder::FirstOrder,
                    meta_sentences: 40,
                    meta_batch_size: 2,
                    ..MetaConfig::default()
                },
                ..train_config(40, Method::Meta)
            },
        ),
        ("pcgrad", 0, train_config(40, Method::Pcgrad)),
        (
            "pcgrad per layer",
            0,
            TrainConfig {
                surgery: SurgeryConfig { granularity: Granularity::Layer, ..SurgeryConfig::default() },
                ..train_config(40, Method::Pcgrad)
            },
        ),
        ("gradvac", 4, train_config(40, Method::Gradvac)),
    ];
    for (name, adapters, config) in cases {
        let mut trainer = Trainer::new(model(&data, adapters), data.clone(), config).unwrap();
        let before = trainer.evaluate().unwrap();
        let first = trainer.step().unwrap();
        let after = trainer.train(&mut Silent).unwrap().pop().unwrap();
        let losses: Vec<String> = before
            .languages
            .iter()
            .zip(&after.languages)
            .map(|(b, a)| format!("{} {:.3}->{:.3}", a.lang, b.loss, a.loss))
            .collect();
        println!("{name:>24}: {} (first meta loss {:?})", losses.join(", "), first.meta_loss);
        for (b, a) in before.languages.iter().zip(&after.languages) {
            assert!(a.loss < b.loss - 0.3, "{name}: {} did not learn", a.lang);
        }
        assert_eq!(first.meta_loss.is_some(), name.starts_with("meta"));
    }
}

#[test]
fn meta_and_gradvac_resume_bit_for_bit() {
    let data = data();
    for (method, adapters) in [(Method::Meta, 4), (Method::Gradvac, 4)] {
        let dir = tempfile::tempdir().unwrap();
        let mut straight = Trainer::new(model(&data, adapters), data.clone(), with_method(8, method)).unwrap();
        let expected: Vec<f64> = (0..8).map(|_| straight.step().unwrap().loss).collect();
        let mut first = Trainer::new(model(&data, adapters), data.clone(), with_method(8, method)).unwrap();
        let mut losses: Vec<f64> = (0..3).map(|_| first.step().unwrap().loss).collect();
        first.save(dir.path()).unwrap();
        let mut resumed = Trainer::resume(dir.path(), data.clone(), DType::F32, &Device::Cpu).unwrap();
        losses.extend((0..5).map(|_| resumed.step().unwrap().loss));
        assert_eq!(losses, expected, "{method:?}");
        assert_eq!(weights(&resumed), weights(&straight), "{method:?}");
    }
}
