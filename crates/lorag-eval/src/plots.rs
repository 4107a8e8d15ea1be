//! SVG plots of the results, drawn with `plotters`' SVG backend (text is written as SVG
//! `<text>` elements, escaped by the backend; no font files are read):
//! - `metrics`: a bar per route per metric with its 95% interval as a whisker;
//! - `latency`: the distribution (empirical CDF) of time to first token and of total time per
//!   answer, per route;
//! - `loss`: the training loss curves;
//! - `learning_curve`: F1 against the share of the train split trained on.
//!
//! A plot with no data is not drawn.

use crate::results::{Results, METRICS};
use plotters::prelude::*;

/// One rendered plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// File stem: `metrics`, `latency`, `loss` or `learning_curve`.
    pub name: &'static str,
    pub title: &'static str,
    /// The SVG document.
    pub svg: String,
}

type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

const PALETTE: [RGBColor; 8] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0x9c, 0x75, 0x5f),
];

/// The colour of `route`: by its place among the results' routes, so it is the same in every
/// plot.
pub fn route_color(results: &Results, route: &str) -> RGBColor {
    let i = results
        .routes
        .keys()
        .position(|r| r == route)
        .unwrap_or_else(|| results.routes.len() + route.len());
    PALETTE[i % PALETTE.len()]
}

const W: u32 = 900;
const H: u32 = 420;
const FONT: &str = "sans-serif";

/// Every plot that has data, in the order above. Errors name the plot.
pub fn render(results: &Results) -> std::result::Result<Vec<Plot>, String> {
    let mut out = Vec::new();
    let plots: [(&'static str, &'static str, Maker); 4] = [
        ("metrics", "Metrics per route (95% intervals)", metrics_plot),
        ("latency", "Latency per answer", latency_plot),
        ("loss", "Training loss", loss_plot),
        ("learning_curve", "Learning curve", learning_plot),
    ];
    for (name, title, make) in plots {
        let Some(draw) = make(results) else { continue };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
            draw(results, &root, title).map_err(|e| format!("plot {name}: {e}"))?;
            root.present().map_err(|e| format!("plot {name}: {e}"))?;
        }
        out.push(Plot { name, title, svg });
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Drawer = fn(&Results, &Area, &str) -> Drawn;
/// The drawer of a plot, when the results have its data.
type Maker = fn(&Results) -> Option<Drawer>;

fn metrics_plot(r: &Results) -> Option<Drawer> {
    r.routes
        .values()
        .any(|v| !v.metrics.is_empty())
        .then_some(draw_metrics as Drawer)
}

fn draw_metrics(r: &Results, root: &Area, title: &str) -> Drawn {
    root.fill(&WHITE)?;
    let names: Vec<&str> = METRICS
        .iter()
        .copied()
        .filter(|m| r.routes.values().any(|v| v.metrics.contains_key(*m)))
        .collect();
    let routes: Vec<&String> = r.routes.keys().collect();
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..names.len() as f64, 0f64..1.05f64)?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("mean (0–1)")
        .draw()?;
    let width = 0.8 / routes.len() as f64;
    for (ri, route) in routes.iter().enumerate() {
        let color = route_color(r, route);
        let mut bars = Vec::new();
        let mut whiskers = Vec::new();
        for (mi, m) in names.iter().enumerate() {
            let Some(e) = r.routes[*route].metrics.get(*m) else {
                continue;
            };
            let x0 = mi as f64 + 0.1 + ri as f64 * width;
            let x1 = x0 + width * 0.9;
            let xc = (x0 + x1) / 2.0;
            bars.push(Rectangle::new([(x0, 0.0), (x1, e.value)], color.filled()));
            whiskers.push(PathElement::new(
                vec![(xc, e.low), (xc, e.high)],
                BLACK.stroke_width(1),
            ));
            for y in [e.low, e.high] {
                whiskers.push(PathElement::new(
                    vec![(xc - width * 0.2, y), (xc + width * 0.2, y)],
                    BLACK.stroke_width(1),
                ));
            }
        }
        chart
            .draw_series(bars)?
            .label(route.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart.draw_series(whiskers)?;
    }
    for (mi, m) in names.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(mi as f64 + 0.5, 0.0));
        let style =
            TextStyle::from((FONT, 13).into_font()).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ));
        root.draw(&Text::new(m.to_string(), (x, y + 8), style))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn latency_plot(r: &Results) -> Option<Drawer> {
    r.questions
        .iter()
        .any(|q| !q.answers.is_empty())
        .then_some(draw_latency as Drawer)
}

fn draw_latency(r: &Results, root: &Area, title: &str) -> Drawn {
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 20))?;
    let (left, right) = root.split_horizontally(W / 2);
    for (area, which) in [
        (left, "time to first token (ms)"),
        (right, "total time (ms)"),
    ] {
        let series: Vec<(&String, Vec<f64>)> = r
            .routes
            .keys()
            .map(|route| {
                let mut v: Vec<f64> = r
                    .questions
                    .iter()
                    .filter_map(|q| q.answers.get(route))
                    .map(|a| {
                        if which.starts_with("time") {
                            a.ttft_ms
                        } else {
                            a.total_ms
                        }
                    })
                    .collect();
                v.sort_by(f64::total_cmp);
                (route, v)
            })
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let max = series
            .iter()
            .filter_map(|(_, v)| v.last())
            .fold(1.0f64, |a, &b| a.max(b));
        let min = series
            .iter()
            .filter_map(|(_, v)| v.first())
            .fold(max, |a, &b| a.min(b));
        let pad = ((max - min) * 0.05).max(1.0);
        let decimals = usize::from(max - min < 20.0);
        let fmt = move |x: &f64| format!("{x:.decimals$}");
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d((min - pad).max(0.0)..max + pad, 0f64..1.0f64)?;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .x_desc(which)
            .x_label_formatter(&fmt)
            .y_desc("share of answers")
            .draw()?;
        for (route, v) in &series {
            let color = route_color(r, route);
            let n = v.len() as f64;
            let mut pts = vec![(v[0], 0.0)];
            for (i, &x) in v.iter().enumerate() {
                pts.push((x, i as f64 / n));
                pts.push((x, (i + 1) as f64 / n));
            }
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                .label(route.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

fn loss_plot(r: &Results) -> Option<Drawer> {
    r.loss_curves
        .values()
        .any(|c| !c.is_empty())
        .then_some(draw_loss as Drawer)
}

fn draw_loss(r: &Results, root: &Area, title: &str) -> Drawn {
    root.fill(&WHITE)?;
    let pts = r.loss_curves.values().flatten();
    let max_x = pts.clone().map(|p| p[0]).fold(1.0f64, f64::max);
    let (lo, hi) = pts
        .map(|p| p[1])
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max_x, (lo - pad).max(0.0)..hi + pad)?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .x_desc("step")
        .y_desc("loss")
        .draw()?;
    for (route, curve) in &r.loss_curves {
        let color = route_color(r, route);
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|p| (p[0], p[1])),
                color.stroke_width(2),
            ))?
            .label(route.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn learning_plot(r: &Results) -> Option<Drawer> {
    (!r.learning_curve.is_empty()).then_some(draw_learning as Drawer)
}

fn draw_learning(r: &Results, root: &Area, title: &str) -> Drawn {
    root.fill(&WHITE)?;
    let max_y = r.learning_curve.iter().map(|p| p.f1).fold(0.1f64, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..105f64, 0f64..(max_y * 1.1).min(1.0))?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .x_desc("% of the train split")
        .y_desc("F1 (0–1)")
        .draw()?;
    let mut routes: Vec<&String> = r.learning_curve.iter().map(|p| &p.route).collect();
    routes.sort();
    routes.dedup();
    for route in routes {
        let color = route_color(r, route);
        let mut pts: Vec<(f64, f64)> = r
            .learning_curve
            .iter()
            .filter(|p| &p.route == route)
            .map(|p| (100.0 * p.fraction, p.f1))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(route.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{synthetic, CurvePoint};

    #[test]
    fn plots_are_svg_with_labels_and_only_when_there_is_data() {
        let mut r = synthetic(&[
            ("base", false, vec![0.1, 0.2, 0.3]),
            ("rag", true, vec![0.7, 0.9, 0.8]),
        ]);
        let names = |p: &[Plot]| p.iter().map(|p| p.name).collect::<Vec<_>>();
        let plots = render(&r).unwrap();
        assert_eq!(names(&plots), ["metrics", "latency"]);
        let m = &plots[0].svg;
        assert!(
            m.starts_with("<svg") && m.trim_end().ends_with("</svg>"),
            "{}",
            &m[..80]
        );
        for label in [
            "Metrics per route",
            "\ngold_cited\n",
            "\nrouge_l\n",
            "\nbase\n",
            "\nrag\n",
        ] {
            assert!(m.contains(label), "metrics plot lacks {label}");
        }
        // Two routes' bars on f1 (their values 0.2 and 0.8) plus legend boxes.
        assert!(m.matches("<rect").count() >= 4);
        r.loss_curves
            .insert("ft<x>".into(), vec![[1.0, 2.5], [2.0, 2.0], [3.0, 1.7]]);
        r.learning_curve = vec![
            CurvePoint {
                route: "ft".into(),
                fraction: 0.25,
                f1: 0.2,
                ..Default::default()
            },
            CurvePoint {
                route: "ft".into(),
                fraction: 1.0,
                f1: 0.4,
                ..Default::default()
            },
        ];
        let plots = render(&r).unwrap();
        assert_eq!(
            names(&plots),
            ["metrics", "latency", "loss", "learning_curve"]
        );
        assert!(plots[2].svg.contains("ft&lt;x&gt;") && !plots[2].svg.contains("ft<x>"));
        assert!(plots[1].svg.contains("time to first token (ms)"));
        assert!(plots[3].svg.contains("<circle"));
        let mut empty = r.clone();
        empty.routes.clear();
        empty.questions.clear();
        empty.loss_curves.clear();
        empty.learning_curve.clear();
        assert!(render(&empty).unwrap().is_empty());
    }
}
