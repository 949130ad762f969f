//! The SVG figures parse as XML, have one cell per layer × position, and
//! escape token strings.

mod common;

use common::RefModel;
use logit_lens::{
    compare, CellColor, CurveChart, CurveOptions, Divergence, Heatmap, HeatmapOptions, LensModel,
    LensOptions, TokenContrast, TokenSet,
};

fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("invalid XML: {e}\n{svg}"))
}

fn count(doc: &roxmltree::Document, tag: &str) -> usize {
    doc.descendants().filter(|n| n.has_tag_name(tag)).count()
}

fn texts(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

fn comparison() -> logit_lens::Comparison {
    let base = RefModel::random(11, 24, 12, 3, false);
    let ft = base.perturbed(12, 0.6);
    let comp = base.perturbed(12, 0.15);
    let opts = LensOptions {
        contrast: Some(
            TokenContrast::new(
                TokenSet::from_ids("refusal", [0, 1]),
                TokenSet::from_ids("compliance", [2, 3]),
            )
            .unwrap(),
        ),
        ..LensOptions::default()
    };
    let models: [(&str, &dyn LensModel); 3] =
        [("base", &base), ("fine-tune", &ft), ("compressed", &comp)];
    // Input includes the awkward token strings (ids 0..6).
    compare(&models, &[0, 1, 2, 3, 4, 5, 9], &opts).unwrap()
}

#[test]
fn heatmap_is_valid_xml_with_one_cell_per_layer_and_position() {
    let c = comparison();
    for color in [
        CellColor::TopProbability,
        CellColor::Entropy,
        CellColor::ForwardKl,
    ] {
        let r = &c.models[1];
        let svg = Heatmap::from_report(r, color)
            .to_svg(&HeatmapOptions::default())
            .unwrap();
        let doc = parse(&svg);
        let (rows, cols) = (r.points.len(), r.positions.len());
        assert_eq!((rows, cols), (7, 7));
        assert_eq!(count(&doc, "rect"), rows * cols, "{color:?}");
        // Cells form a grid: distinct x and y coordinates.
        let mut xs: Vec<&str> = Vec::new();
        let mut ys: Vec<&str> = Vec::new();
        for n in doc.descendants().filter(|n| n.has_tag_name("rect")) {
            xs.push(n.attribute("x").unwrap());
            ys.push(n.attribute("y").unwrap());
        }
        xs.sort_unstable();
        xs.dedup();
        ys.sort_unstable();
        ys.dedup();
        assert_eq!((ys.len(), xs.len()), (rows, cols));
        let t = texts(&doc);
        for p in &r.points {
            assert!(t.contains(&p.label), "row label {}", p.label);
        }
        // Input-token axis labels, escaped and made visible.
        assert!(t.contains(&"0: <b>".to_string()), "{t:?}");
        assert!(t.contains(&"1: a&b".to_string()));
        assert!(t.contains(&"2: \"q\"".to_string()));
        assert!(t.contains(&"3: it's".to_string()));
        assert!(t.contains(&"4: ␣space".to_string()));
        assert!(t.contains(&"5: \\n".to_string()));
        assert!(
            svg.contains("&lt;b&gt;") && svg.contains("a&amp;b") && svg.contains("&quot;q&quot;")
        );
    }
}

#[test]
fn cell_text_is_escaped() {
    let hm = Heatmap {
        title: "t <&> \"x\"".into(),
        statistic: "p".into(),
        row_labels: vec!["embed".into(), "L0.post".into()],
        col_labels: vec!["0: <s>".into(), "1: &".into(), "2: '".into()],
        values: vec![vec![0.0, 0.5, 1.0], vec![0.2, 0.4, 0.9]],
        text: vec![
            vec!["<".into(), "&".into(), "\"".into()],
            vec!["'".into(), "a\u{1}b".into(), "</text>".into()],
        ],
        scale: (0.0, 1.0),
    };
    let svg = hm.to_svg(&HeatmapOptions::default()).unwrap();
    let doc = parse(&svg);
    assert_eq!(count(&doc, "rect"), 6);
    let t = texts(&doc);
    for s in ["<", "&", "\"", "'", "a\\u{1}b", "</text>", "t <&> \"x\""] {
        assert!(t.contains(&s.to_string()), "{s:?} not in {t:?}");
    }
    assert!(!svg.contains('\u{1}'));
}

#[test]
fn pair_heatmap_and_curves() {
    let c = comparison();
    let pair = c.pair("base", "fine-tune").unwrap();
    let hm = Heatmap::from_pair(&c, pair, Divergence::Js).unwrap();
    let doc_svg = hm.to_svg(&HeatmapOptions::default()).unwrap();
    assert_eq!(count(&parse(&doc_svg), "rect"), 7 * 7);

    let chart = CurveChart::log_prob_diff(&c, 6).unwrap();
    assert_eq!(chart.series.len(), 3);
    let svg = chart.to_svg(&CurveOptions::default()).unwrap();
    let doc = parse(&svg);
    let t = texts(&doc);
    for name in ["base", "fine-tune", "compressed"] {
        assert!(t.iter().any(|s| s == name), "legend {name}: {t:?}");
    }
    assert!(t.iter().any(|s| s == "L2.post"));
    assert!(count(&doc, "polyline") >= 3);

    let div = CurveChart::divergence(&c, "base", Divergence::Kl, 6).unwrap();
    assert_eq!(div.series.len(), 2);
    parse(&div.to_svg(&CurveOptions::default()).unwrap());

    // Gaps: a series with missing values still draws.
    let mut gap = chart.clone();
    gap.series[0].values[3] = None;
    parse(&gap.to_svg(&CurveOptions::default()).unwrap());
}

#[test]
fn files_are_written_atomically() {
    let c = comparison();
    let dir = tempfile::tempdir().unwrap();
    let hm = dir.path().join("heatmap.svg");
    let cv = dir.path().join("curves.svg");
    Heatmap::from_report(&c.models[0], CellColor::Entropy)
        .write_svg(&hm, &HeatmapOptions::default())
        .unwrap();
    CurveChart::log_prob_diff(&c, 6)
        .unwrap()
        .write_svg(&cv, &CurveOptions::default())
        .unwrap();
    parse(&std::fs::read_to_string(&hm).unwrap());
    parse(&std::fs::read_to_string(&cv).unwrap());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
