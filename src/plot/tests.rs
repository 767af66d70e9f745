//! Each figure is an SVG document holding the expected labels and shapes; saving is atomic.

use super::*;
use crate::lang::Lang;
use crate::model::LayerSlot;
use crate::probe::{
    ConflictSeries, GroupKind, GroupSimilarity, LayerOverlap, OverlapReport, PairOverlap, SimilarityReport,
};
use crate::run::{demo_config, DemoResults, InterferenceRow};
use crate::tokenize::TokenizerStats;
use crate::train::{LangEval, LangLoss, StepReport};
use crate::Error;

fn langs(codes: &[&str]) -> Vec<Lang> {
    codes.iter().map(|c| Lang::new(c).unwrap()).collect()
}

fn group(name: &str, kind: GroupKind, cos_ab: f64) -> GroupSimilarity {
    let cosine = vec![vec![1.0, cos_ab, 0.2], vec![cos_ab, 1.0, -0.05], vec![0.2, -0.05, 1.0]];
    GroupSimilarity {
        name: name.into(),
        kind,
        cosine_std: vec![vec![0.0; 3]; 3],
        cosine,
        norm: vec![1.0; 3],
        norm_std: vec![0.0; 3],
    }
}

fn report(step: usize, cos_ab: f64) -> SimilarityReport {
    SimilarityReport {
        step,
        langs: langs(&["aa", "bb", "cc"]),
        batches: 2,
        groups: vec![
            group("model", GroupKind::Model, cos_ab),
            group("embeddings", GroupKind::Layer(LayerSlot::Embeddings), cos_ab),
            group("layer.0", GroupKind::Layer(LayerSlot::Layer(0)), -0.37),
            group("output", GroupKind::Layer(LayerSlot::Output), 0.5),
            group("layers.0.fc1.weight", GroupKind::Matrix("layers.0.fc1.weight".into()), 0.1),
        ],
    }
}

/// Parse-free checks that `svg` is one SVG document. With `PLOT_TEST_DIR` set, the figure is
/// also saved there (named after its title's first words) to look at.
fn assert_svg(fig: &Figure) {
    if let Ok(dir) = std::env::var("PLOT_TEST_DIR") {
        let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        fig.save(&std::path::Path::new(&dir).join(format!("figure-{n}.svg"))).unwrap();
    }
    let svg = fig.svg();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(&format!("width=\"{}\"", fig.width())));
    assert!(svg.contains(&format!("height=\"{}\"", fig.height())));
}

/// Whether `svg` has a text element reading exactly `text` (plotters writes the text on its
/// own line).
fn has_text(svg: &str, text: &str) -> bool {
    svg.contains(&format!(">\n{text}\n</text>"))
}

fn count(svg: &str, what: &str) -> usize {
    svg.matches(what).count()
}

#[test]
fn heatmap_has_a_cell_and_a_value_per_pair() {
    let fig = conflict_heatmap(&report(40, -0.42), "model").unwrap();
    assert_svg(&fig);
    let svg = fig.svg();
    for lang in ["aa", "bb", "cc"] {
        assert!(count(svg, &format!(">\n{lang}\n</text>")) >= 2, "row and column label of {lang}");
    }
    assert!(has_text(svg, "−0.42"), "the conflicting pair's value with a minus sign");
    assert!(has_text(svg, "1.00"));
    assert!(svg.contains("step 40"));
    // 9 cells filled + 9 outlined, 40 colour-bar slices + its frame, the background.
    assert!(count(svg, "<rect") > 9 + 9 + 40, "{}", count(svg, "<rect"));
    // The conflicting pair's cell is filled with its colour from the diverging scale.
    let c = diverging_color(-0.42);
    assert!(svg.contains(&format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)), "fill of the −0.42 cell");
}

#[test]
fn unknown_group_is_a_config_error_naming_it() {
    let err = conflict_heatmap(&report(0, 0.1), "layer.7").unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("layer.7") && m.contains("layer.0")), "{err}");
    let mut series = ConflictSeries::default();
    series.push(report(0, 0.1));
    let err = similarity_curves(&series, "nope", &[]).unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("nope")), "{err}");
    let err = similarity_curves(&series, "model", &[("aa", "zz")]).unwrap_err();
    assert!(matches!(&err, Error::UnknownLanguage { code, .. } if code == "zz"), "{err}");
    let err = similarity_curves(&ConflictSeries::default(), "model", &[]).unwrap_err();
    assert!(matches!(err, Error::Config(_)));
}

#[test]
fn layer_heatmaps_draw_one_panel_per_layer() {
    let fig = layer_heatmaps(&report(10, 0.3)).unwrap();
    assert_svg(&fig);
    let svg = fig.svg();
    for name in ["model", "embeddings", "layer.0", "output"] {
        assert!(has_text(svg, name), "panel {name}");
    }
    assert!(!svg.contains("layers.0.fc1.weight"), "matrices get no panel");
    assert!(has_text(svg, "−0.37"));
    assert!(count(svg, "<rect") >= 4 * 18);
}

#[test]
fn diverging_scale_is_red_white_blue() {
    let (red, white, blue) = (diverging_color(-1.0), diverging_color(0.0), diverging_color(1.0));
    assert!(red.0 > red.2 && blue.2 > blue.0);
    assert_eq!((white.0, white.1, white.2), (255, 255, 255));
    assert_eq!(diverging_color(-3.0), red);
}

#[test]
fn similarity_curves_draw_a_line_per_pair() {
    let mut series = ConflictSeries::default();
    for (step, c) in [(0, 0.5), (10, 0.1), (20, -0.2)] {
        series.push(report(step, c));
    }
    let fig = similarity_curves(&series, "model", &[]).unwrap();
    assert_svg(&fig);
    let svg = fig.svg();
    for pair in ["aa–bb", "aa–cc", "bb–cc"] {
        assert!(svg.contains(pair), "legend entry {pair}");
    }
    assert!(svg.contains("Gradient cosine over training"));
    assert!(count(svg, "<polyline") >= 3, "{}", count(svg, "<polyline"));
    let one = similarity_curves(&series, "layer.0", &[("bb", "aa")]).unwrap();
    assert!(one.svg().contains("bb–aa") && !one.svg().contains("aa–cc"));
}

#[test]
fn loss_curves_have_a_line_per_language_and_the_mean() {
    let reports: Vec<StepReport> = (1..=5)
        .map(|s| StepReport {
            step: s,
            loss: 5.0 - s as f64 * 0.3,
            languages: vec![
                LangLoss { lang: Lang::new("aa").unwrap(), loss: 5.1 - s as f64 * 0.3, rows: 3 },
                LangLoss { lang: Lang::new("bb").unwrap(), loss: 4.9 - s as f64 * 0.2, rows: 1 },
            ],
            lr: 1e-3,
            grad_norm: 1.0,
            meta_loss: None,
        })
        .collect();
    let fig = loss_curves(&reports).unwrap();
    assert_svg(&fig);
    let svg = fig.svg();
    for name in ["all", "aa", "bb", "Training loss", "MLM loss", "step"] {
        assert!(has_text(svg, name), "{name}");
    }
    assert!(count(svg, "<polyline") >= 3);
    assert!(matches!(loss_curves(&[]), Err(Error::Config(_))));
}

fn eval(lang: &str, loss: f64) -> LangEval {
    LangEval { lang: Lang::new(lang).unwrap(), loss, perplexity: loss.exp(), accuracy: 0.3, masked_tokens: 100 }
}

fn demo(shift: f64) -> DemoResults {
    let rows = [("aa", 3.0, 3.2), ("bb", 3.4, 3.9), ("cc", 4.0, 3.7)]
        .iter()
        .map(|&(l, m, j)| InterferenceRow {
            lang: Lang::new(l).unwrap(),
            train_sentences: 100,
            sampling_prob: 0.33,
            mono: eval(l, m + shift),
            joint: eval(l, j - shift),
            delta_loss: j - m - 2.0 * shift,
        })
        .collect();
    DemoResults {
        config: demo_config(10, 0),
        tokenizer: TokenizerStats { languages: Vec::new(), overlap: Vec::new() },
        rows,
    }
}

#[test]
fn interference_bars_pair_mono_and_joint() {
    let fig = interference_bars(&demo(0.0)).unwrap();
    assert_svg(&fig);
    let svg = fig.svg();
    for name in ["monolingual", "joint", "aa", "bb", "cc"] {
        assert!(has_text(svg, name), "{name}");
    }
    let one_run = count(svg, "<rect");
    let seeds = interference_bars_over_seeds(&[demo(0.0), demo(0.1), demo(-0.1)]).unwrap();
    assert_svg(&seeds);
    assert!(seeds.svg().contains("mean ± sd over 3 runs"));
    assert_eq!(count(seeds.svg(), "<rect"), one_run, "same bars");
    // Error bars: one vertical stroke and two caps each, as lines, for six bars.
    assert!(
        count(seeds.svg(), "<polyline") + count(seeds.svg(), "<line") > count(svg, "<polyline") + count(svg, "<line")
    );
    assert!(matches!(interference_bars_over_seeds(&[]), Err(Error::Config(_))));
}

#[test]
fn bar_chart_draws_one_bar_per_row_and_checks_means() {
    let series = vec![
        BarSeries::new("a", vec![BarRow::new("x", 1.0, 0.1), BarRow::new("y", -0.5, 0.2)]),
        BarSeries::new("b", vec![BarRow::new("x", 2.0, 0.0), BarRow::new("z", 0.5, 0.0)]),
    ];
    let fig = bar_chart("T", "v", &series).unwrap();
    assert_svg(&fig);
    let base = bar_chart("T", "v", &[]).unwrap_err();
    assert!(matches!(base, Error::Config(_)));
    for label in ["x", "y", "z", "a", "b"] {
        assert!(has_text(fig.svg(), label), "{label}");
    }
    let bad = vec![BarSeries::new("a", vec![BarRow::new("x", f64::NAN, 0.0)])];
    assert!(matches!(bar_chart("T", "v", &bad), Err(Error::Config(_))));
    let row = BarRow::from_samples("s", &[1.0, 2.0, 3.0]);
    assert!((row.mean - 2.0).abs() < 1e-12 && (row.spread - 1.0).abs() < 1e-12);
}

fn overlap_report() -> OverlapReport {
    let l = langs(&["aa", "bb", "cc"]);
    let mut layers = Vec::new();
    for keep in [0.1, 0.5] {
        for slot in [LayerSlot::Layer(0), LayerSlot::Layer(1)] {
            let pairs = [(0, 1, 0.2), (0, 2, 0.25), (1, 2, 0.3)]
                .iter()
                .map(|&(a, b, j)| PairOverlap { a: l[a].clone(), b: l[b].clone(), jaccard: j * keep * 2.0 })
                .collect();
            layers.push(LayerOverlap {
                slot,
                keep,
                pairs,
                same_language_baseline: 0.6 * keep * 2.0,
                random_baseline: keep / (2.0 - keep),
            });
        }
    }
    OverlapReport { method: "learned_mask".into(), langs: l, layers }
}

#[test]
fn mask_overlap_draws_three_bars_per_layer() {
    let fig = mask_overlap(&overlap_report(), 0.5).unwrap();
    assert_svg(&fig);
    let svg = fig.svg();
    for name in ["layer.0", "layer.1", "cross-language", "same language", "random masks", "Learned masks"] {
        assert!(svg.contains(name), "{name}");
    }
    let err = mask_overlap(&overlap_report(), 0.3).unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("0.3") && m.contains("0.1, 0.5")), "{err}");
}

#[test]
fn saving_is_atomic_and_svg_only() {
    let dir = tempfile::tempdir().unwrap();
    let fig = conflict_heatmap(&report(1, 0.2), "layer.0").unwrap();
    let path = dir.path().join("heat.svg");
    std::fs::write(&path, "old").unwrap();
    fig.save(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), fig.svg());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
    assert!(matches!(fig.save(&dir.path().join("heat.png")), Err(Error::Config(_))));
    let missing = dir.path().join("no/such/dir/heat.svg");
    assert!(matches!(fig.save(&missing), Err(Error::Io { .. })));
}

#[test]
fn evcxr_content_wraps_the_svg_in_markers() {
    let fig = Figure::from_svg("<svg width=\"1\" height=\"1\"></svg>\n", 1, 1);
    assert_eq!(
        fig.evcxr_content(),
        "EVCXR_BEGIN_CONTENT image/svg+xml\n<svg width=\"1\" height=\"1\"></svg>\nEVCXR_END_CONTENT"
    );
}
