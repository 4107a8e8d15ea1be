//! The loss curve as a self-contained SVG: training loss as a polyline, eval loss as a polyline
//! with dots, axes with the step and loss ranges.

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 400.0;
const PAD: f64 = 56.0;

fn points(series: &[(usize, f64)], x0: f64, x1: f64, y0: f64, y1: f64) -> Vec<(f64, f64)> {
    let sx = |x: f64| PAD + (x - x0) / (x1 - x0).max(1e-12) * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD - (y - y0) / (y1 - y0).max(1e-12) * (H - 2.0 * PAD);
    series
        .iter()
        .filter(|(_, y)| y.is_finite())
        .map(|&(x, y)| (sx(x as f64), sy(y)))
        .collect()
}

fn polyline(pts: &[(f64, f64)], color: &str) -> String {
    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    format!(
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
        p.join(" ")
    )
}

/// An SVG of `train` and `eval` losses against the step.
pub fn loss_svg(train: &[(usize, f64)], eval: &[(usize, f64)]) -> String {
    let all = || train.iter().chain(eval).filter(|(_, y)| y.is_finite());
    let x0 = all().map(|p| p.0).min().unwrap_or(0) as f64;
    let x1 = all().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let y0 = all()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(f64::MAX);
    let y1 = all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (y0, y1) = if y0.is_finite() && y1.is_finite() {
        (y0, y1.max(y0 + 1e-6))
    } else {
        (0.0, 1.0)
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let (l, r, t, b) = (PAD, W - PAD, PAD, H - PAD);
    let _ = write!(
        s,
        r#"<path d="M{l},{t} L{l},{b} L{r},{b}" fill="none" stroke="black"/>"#
    );
    let _ = write!(
        s,
        r#"<text x="{l}" y="{}" text-anchor="middle">{x0}</text>"#,
        b + 18.0
    );
    let _ = write!(
        s,
        r#"<text x="{r}" y="{}" text-anchor="middle">{x1}</text>"#,
        b + 18.0
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">step</text>"#,
        (l + r) / 2.0,
        b + 36.0
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{y1:.3}</text>"#,
        l - 6.0,
        t + 4.0
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{y0:.3}</text>"#,
        l - 6.0,
        b + 4.0
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">loss</text>"#,
        l - 30.0,
        (t + b) / 2.0
    );
    s.push_str(&polyline(&points(train, x0, x1, y0, y1), "#1f77b4"));
    let ev = points(eval, x0, x1, y0, y1);
    s.push_str(&polyline(&ev, "#d62728"));
    for (x, y) in &ev {
        let _ = write!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#d62728"/>"##
        );
    }
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" fill="#1f77b4">train loss</text><text x="{}" y="{}" fill="#d62728">eval loss</text>"##,
        r - 150.0,
        t - 20.0,
        r - 70.0,
        t - 20.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn svg_has_both_curves_scaled_into_the_canvas() {
        let train: Vec<(usize, f64)> = (1..=10).map(|s| (s, 3.0 - s as f64 * 0.1)).collect();
        let eval = [(0, 3.2), (5, 2.6), (10, 2.2)];
        let svg = super::loss_svg(&train, &eval);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
        // every coordinate lies inside the canvas
        for part in svg.split("points=\"").skip(1) {
            for xy in part.split('"').next().unwrap().split(' ') {
                let (x, y) = xy.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (0.0..=720.0).contains(&x) && (0.0..=400.0).contains(&y),
                    "{xy}"
                );
            }
        }
        assert!(svg.contains(">3.200<") && svg.contains(">2.000<"), "{svg}");
    }
}
