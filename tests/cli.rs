//! The command line as a user drives it: train, resume, eval, grads and clear errors.

use candle_core::{DType, Device};
use interference::batch::MlmBatchJson;
use interference::grads::mlm_gradients;
use interference::model::{load_tensors, MlmModel};
use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interference")).args(args).output().expect("run the CLI")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const RUN: &str = r#"{
  "languages": [
    {"code": "aa", "synthetic": {"sentences": 300, "seed": 1}},
    {"code": "bb", "synthetic": {"sentences": 150, "seed": 2, "word_order": "vso"}}
  ],
  "tokenizer": {"train": {"vocab_size": 200}},
  "model": {"d_model": 16, "layers": 1, "heads": 2, "d_ff": 32, "max_len": 16, "adapter_bottleneck": 4},
  "train": {"method": "adapters", "steps": 6, "batch_size": 4, "seq_len": 16, "eval_batches": 2, "checkpoint_every": 3},
  "held_out": 30
}"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn train_resume_eval_and_grads() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "run.json", RUN);
    let out = dir.path().join("out");
    let out_s = out.to_string_lossy().into_owned();
    let first = cli(&["train", "--config", &config, "--out", &out_s]);
    assert!(first.status.success(), "{}", stderr(&first));
    for f in ["run.json", "tokenizer.json", "results.json", "checkpoint/model.safetensors", "checkpoint/trainer.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["evals"].as_array().unwrap().last().unwrap()["step"], 6);

    // Running again on a finished run resumes from its checkpoint and trains no further.
    let again = cli(&["train", "--config", &config, "--out", &out_s]);
    assert!(again.status.success(), "{}", stderr(&again));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("checkpoint/trainer.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 6);

    let eval = cli(&["eval", "--run", &out_s]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    let scores: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(scores["languages"].as_array().unwrap().len(), 2);

    let probe = cli(&[
        "probe",
        "--run",
        &out_s,
        "--batches",
        "2",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--fisher",
        "--masks",
        "--keeps",
        "0.2,0.5",
        "--mask-steps",
        "3",
    ]);
    assert!(probe.status.success(), "{}", stderr(&probe));
    let probed: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("probe.json")).unwrap()).unwrap();
    let model_group = &probed["similarity"]["groups"][0];
    assert_eq!(model_group["name"], "model");
    assert_eq!(model_group["cosine"][1][1].as_f64().unwrap().round(), 1.0);
    assert!(String::from_utf8_lossy(&probe.stdout).contains("aa-bb"));
    for method in ["fisher", "masks"] {
        let keeps: Vec<f64> =
            probed[method]["layers"].as_array().unwrap().iter().map(|l| l["keep"].as_f64().unwrap()).collect();
        assert!(keeps.contains(&0.2) && keeps.contains(&0.5), "{method}: {keeps:?}");
    }

    // grads writes exactly what the library computes, under the registry's names.
    let weights = out.join("checkpoint/model.safetensors");
    let batch_json = r#"{"tokens": [[2, 9, 4, 12, 3], [2, 15, 4, 0, 0]], "lang": "bb", "positions": [[0, 2], [1, 2]], "targets": [30, 31]}"#;
    let batch = write(dir.path(), "batch.json", batch_json);
    let grads_path = dir.path().join("g.safetensors");
    let g = cli(&[
        "grads",
        "--checkpoint",
        &weights.to_string_lossy(),
        "--batch",
        &batch,
        "--out",
        &grads_path.to_string_lossy(),
    ]);
    assert!(g.status.success(), "{}", stderr(&g));
    let model = MlmModel::load(&weights, DType::F32, &Device::Cpu).unwrap();
    let parsed: MlmBatchJson = serde_json::from_str(batch_json).unwrap();
    let expected = mlm_gradients(&model, &parsed.into_batch(model.config().vocab_size, 0).unwrap()).unwrap();
    let (written, meta) = load_tensors(&grads_path, &Device::Cpu).unwrap();
    assert_eq!(meta["loss"].parse::<f64>().unwrap(), expected.loss);
    for (info, grad) in model.registry().infos().iter().zip(&expected.grads) {
        let w: Vec<f32> = written[&info.name].flatten_all().unwrap().to_vec1().unwrap();
        let e: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(w, e, "{}", info.name);
    }
    assert!(written.keys().any(|k| k.starts_with("adapters.aa.")), "unused adapters must be written (as zeros)");
}

#[test]
fn bad_input_gives_one_clear_line_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_key = write(dir.path(), "bad.json", &RUN.replace("\"held_out\"", "\"bogus\": 1, \"held_out\""));
    let bad_file = write(dir.path(), "text.txt", "good line\nbad \u{1} line\n");
    let bad_text = write(
        dir.path(),
        "badtext.json",
        &format!(
            r#"{{"languages": [{{"code": "aa", "train": "{bad_file}"}}], "model": {{"d_model": 8, "layers": 1, "heads": 2, "d_ff": 8, "max_len": 16}}}}"#
        ),
    );
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["train".into(), "--config".into(), unknown_key.clone()], "bogus"),
        (vec!["train".into(), "--config".into(), dir.path().join("none.json").to_string_lossy().into()], "none.json"),
        (vec!["train".into(), "--config".into(), bad_text], "text.txt:2"),
        (vec!["demo".into(), "--device".into(), "tpu".into()], "tpu"),
        (vec!["eval".into(), "--run".into(), dir.path().join("norun").to_string_lossy().into()], "norun"),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cli(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: stderr {err:?} does not name {needle:?}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: expected one line, got {err:?}");
    }
}
