//! The report: `DIR/results.json`, `DIR/report.md`, `DIR/report.html` and `DIR/plots/*.svg`.
//!
//! The HTML is one self-contained file: inline CSS and JavaScript, the plots inlined as SVG, no
//! external asset and a Content-Security-Policy that forbids loading any. Every text that comes
//! from the Q&A, the documents or a model is escaped ([`escape_html`]); the questions table can
//! be sorted (click a header) and filtered (the text box) without a server.

use crate::plots::{render, Plot};
use crate::results::{Results, METRICS};
use crate::{Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub results: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub plots: Vec<PathBuf>,
}

/// Write `results.json`, the plots, `report.md` and `report.html` under `dir` (each file
/// atomically).
pub fn write_report(dir: &Path, results: &Results) -> Result<Written> {
    let plots = render(results).map_err(|msg| Error::Plot {
        path: dir.join("plots"),
        msg,
    })?;
    let results_path = dir.join("results.json");
    results.write(&results_path)?;
    let mut plot_paths = Vec::new();
    for p in &plots {
        let path = dir.join("plots").join(format!("{}.svg", p.name));
        crate::write_atomic(&path, p.svg.as_bytes())?;
        plot_paths.push(path);
    }
    let md = dir.join("report.md");
    crate::write_atomic(&md, markdown(results, &plots).as_bytes())?;
    let html_path = dir.join("report.html");
    crate::write_atomic(&html_path, html(results, &plots).as_bytes())?;
    Ok(Written {
        results: results_path,
        markdown: md,
        html: html_path,
        plots: plot_paths,
    })
}

/// Escape text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escape text for a Markdown table cell: HTML and Markdown specials, `|`, and newlines.
pub fn escape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

fn lower_is_better(metric: &str) -> bool {
    metric == "false_refusal"
}

/// Metric names present in any route, in [`METRICS`] order.
fn present_metrics(r: &Results) -> Vec<&'static str> {
    METRICS
        .iter()
        .copied()
        .filter(|m| r.routes.values().any(|v| v.metrics.contains_key(*m)))
        .collect()
}

/// The best route's value on `metric` (highest, or lowest for refusals of answerable ones).
fn best_value(r: &Results, metric: &str) -> Option<f64> {
    let vals = r
        .routes
        .values()
        .filter_map(|v| v.metrics.get(metric))
        .map(|e| e.value);
    if lower_is_better(metric) {
        vals.reduce(f64::min)
    } else {
        vals.reduce(f64::max)
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn split_line(r: &Results) -> String {
    let s = &r.split;
    format!(
        "{} training and {} test questions (test share {}, seed {}); {} test question{} moved to train because a near-duplicate was there",
        s.train,
        s.test,
        s.test_fraction,
        s.seed,
        s.leaks_removed,
        if s.leaks_removed == 1 { "" } else { "s" }
    )
}

/// The Markdown report (plots referenced as `plots/NAME.svg`).
pub fn markdown(r: &Results, plots: &[Plot]) -> String {
    let routes: Vec<&String> = r.routes.keys().collect();
    let mut s = String::new();
    let _ = writeln!(s, "# lorag eval report\n");
    let _ = writeln!(s, "- Model: {}", escape_md(&r.model));
    if let Some(kb) = &r.kb {
        let _ = writeln!(s, "- Knowledge base: {}", escape_md(kb));
    }
    let _ = writeln!(s, "- Split: {}", escape_md(&split_line(r)));
    for l in &r.split.leak_examples {
        let _ = writeln!(
            s,
            "  - test {} “{}” ~ train {} “{}” ({})",
            escape_md(&l.test_id),
            escape_md(&l.test),
            escape_md(&l.train_id),
            escape_md(&l.train),
            escape_md(&l.reason)
        );
    }
    let _ = writeln!(s, "\n## Recommendation\n");
    let rec = &r.recommendation;
    if rec.route.is_empty() {
        let _ = writeln!(s, "{}\n", escape_md(&rec.text));
    } else {
        let _ = writeln!(
            s,
            "**{}.** {}\n",
            escape_md(&rec.route),
            escape_md(&rec.text)
        );
    }

    let _ = writeln!(
        s,
        "## Metrics\n\nMean in percent, with its 95% bootstrap interval.\n"
    );
    let header: Vec<String> = routes.iter().map(|x| escape_md(x)).collect();
    let _ = writeln!(s, "| metric | {} |", header.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(routes.len()));
    for m in present_metrics(r) {
        let best = best_value(r, m);
        let cells: Vec<String> = routes
            .iter()
            .map(|route| match r.routes[*route].metrics.get(m) {
                Some(e) => {
                    let v = format!("{} ({}–{})", pct(e.value), pct(e.low), pct(e.high));
                    if Some(e.value) == best && routes.len() > 1 {
                        format!("**{v}**")
                    } else {
                        v
                    }
                }
                None => "–".into(),
            })
            .collect();
        let _ = writeln!(s, "| {} | {} |", escape_md(m), cells.join(" | "));
    }
    if !r.pairs.is_empty() {
        let _ = writeln!(s, "\n## Differences in F1 (paired bootstrap)\n");
        let _ = writeln!(s, "| a − b | questions | difference | 95% CI | p | significant |\n|---|---|---|---|---|---|");
        for p in &r.pairs {
            let _ = writeln!(
                s,
                "| {} − {} | {} | {:+.1} | {:+.1} to {:+.1} | {:.3} | {} |",
                escape_md(&p.a),
                escape_md(&p.b),
                p.n,
                100.0 * p.diff,
                100.0 * p.low,
                100.0 * p.high,
                p.p_value,
                if p.significant { "yes" } else { "no" }
            );
        }
    }
    let _ = writeln!(s, "\n## Latency and cost\n");
    let _ = writeln!(
        s,
        "| route | TTFT p50 | TTFT p95 | total p50 | total p95 | training | adapter | update |\n|---|---|---|---|---|---|---|---|"
    );
    for (name, rr) in &r.routes {
        let l = &rr.latency;
        let c = &rr.cost;
        let _ = writeln!(
            s,
            "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} | {} | {} |",
            escape_md(name),
            l.ttft_ms.p50,
            l.ttft_ms.p95,
            l.total_ms.p50,
            l.total_ms.p95,
            c.train_minutes
                .map_or("–".into(), |m| format!("{m:.1} min")),
            c.adapter_bytes.map_or("–".into(), bytes),
            c.update_seconds
                .map_or("–".into(), crate::recommend::duration),
        );
    }
    if !plots.is_empty() {
        let _ = writeln!(s, "\n## Plots\n");
        for p in plots {
            let _ = writeln!(s, "![{}](plots/{}.svg)\n", p.title, p.name);
        }
    }
    let _ = writeln!(s, "\n## Questions\n");
    let _ = writeln!(
        s,
        "| id | question | reference | sources | {} |",
        header.join(" | ")
    );
    let _ = writeln!(s, "|---|---|---|---|{}", "---|".repeat(routes.len()));
    for q in &r.questions {
        let cells: Vec<String> = routes
            .iter()
            .map(|route| match q.answers.get(*route) {
                Some(a) => {
                    let mut c = format!("{} (F1 {})", escape_md(&a.text), pct(a.f1));
                    if a.refused {
                        c.push_str(" *refused*");
                    }
                    if !a.cited.is_empty() {
                        c.push_str(&format!(" cites {}", escape_md(&a.cited.join(", "))));
                    }
                    c
                }
                None => "–".into(),
            })
            .collect();
        let id = if q.held_out {
            format!("{} (held out)", q.id)
        } else {
            q.id.clone()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            escape_md(&id),
            escape_md(&q.question),
            escape_md(&q.reference),
            escape_md(&q.sources.join(", ")),
            cells.join(" | ")
        );
    }
    s
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.rec{background:#f3f7fb;border-left:4px solid #4e79a7;padding:.8em 1em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .5em;vertical-align:top;text-align:left}
th{background:#f5f5f5}
#questions th{cursor:pointer;user-select:none}
#questions th[data-dir=asc]::after{content:' ▲'}#questions th[data-dir=desc]::after{content:' ▼'}
.meta{color:#666;font-size:.85em;margin-top:.2em}.refused{color:#b00}
.best{font-weight:bold}figure{margin:1em 0}svg{max-width:100%;height:auto}
#filter{padding:.4em;width:24em;max-width:100%}.ans{white-space:pre-wrap}";

const JS: &str = "(function(){
var t=document.getElementById('questions');if(!t)return;var tb=t.tBodies[0];
var f=document.getElementById('filter');var n=document.getElementById('shown');
function count(){var k=0;for(var i=0;i<tb.rows.length;i++)if(!tb.rows[i].hidden)k++;n.textContent=k+' of '+tb.rows.length+' shown';}
f.addEventListener('input',function(){var q=f.value.toLowerCase();
for(var i=0;i<tb.rows.length;i++){var r=tb.rows[i];r.hidden=q!==''&&r.textContent.toLowerCase().indexOf(q)<0;}count();});
var ths=t.tHead.rows[0].cells;
for(var i=0;i<ths.length;i++)(function(i,th){th.addEventListener('click',function(){
var asc=th.getAttribute('data-dir')!=='asc';for(var j=0;j<ths.length;j++)ths[j].removeAttribute('data-dir');
th.setAttribute('data-dir',asc?'asc':'desc');
function key(r){var c=r.cells[i];var s=c.getAttribute('data-sort');return s!==null?parseFloat(s):c.textContent.trim().toLowerCase();}
var rows=Array.prototype.slice.call(tb.rows);
rows.sort(function(a,b){var x=key(a),y=key(b);var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y),undefined,{numeric:true});return asc?c:-c;});
rows.forEach(function(r){tb.appendChild(r);});});})(i,ths[i]);
count();})();";

/// An SVG from [`render`] prepared for inlining in HTML: no XML declaration, no namespace URL.
fn inline_svg(svg: &str) -> String {
    let body = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    };
    body.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

/// The self-contained HTML report.
pub fn html(r: &Results, plots: &[Plot]) -> String {
    let e = escape_html;
    let routes: Vec<&String> = r.routes.keys().collect();
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n<title>lorag eval: {}</title>\n<style>{CSS}</style></head><body>\n",
        e(&r.model)
    );
    let _ = writeln!(s, "<h1>Which route? lorag eval report</h1>");
    let _ = writeln!(s, "<ul><li>Model: {}</li>", e(&r.model));
    if let Some(kb) = &r.kb {
        let _ = writeln!(s, "<li>Knowledge base: {}</li>", e(kb));
    }
    let _ = write!(s, "<li>Split: {}", e(&split_line(r)));
    if !r.split.leak_examples.is_empty() {
        let _ = write!(s, "<ul>");
        for l in &r.split.leak_examples {
            let _ = write!(
                s,
                "<li>test {} “{}” ~ train {} “{}” ({})</li>",
                e(&l.test_id),
                e(&l.test),
                e(&l.train_id),
                e(&l.train),
                e(&l.reason)
            );
        }
        let _ = write!(s, "</ul>");
    }
    let _ = writeln!(s, "</li></ul>");
    let rec = &r.recommendation;
    let lead = if rec.route.is_empty() {
        String::new()
    } else {
        format!("<strong>{}.</strong> ", e(&rec.route))
    };
    let _ = writeln!(
        s,
        "<h2>Recommendation</h2>\n<p class=\"rec\">{lead}{}</p>",
        e(&rec.text)
    );

    let _ = writeln!(s, "<h2>Metrics</h2>\n<p>Mean in percent, with its 95% bootstrap interval.</p>\n<table><thead><tr><th>metric</th>");
    for route in &routes {
        let _ = write!(s, "<th>{}</th>", e(route));
    }
    let _ = writeln!(s, "</tr></thead><tbody>");
    for m in present_metrics(r) {
        let best = best_value(r, m);
        let _ = write!(s, "<tr><td>{}</td>", e(m));
        for route in &routes {
            match r.routes[*route].metrics.get(m) {
                Some(v) => {
                    let class = if Some(v.value) == best && routes.len() > 1 {
                        " class=\"best\""
                    } else {
                        ""
                    };
                    let _ = write!(
                        s,
                        "<td{class}>{} <span class=\"meta\">({}–{})</span></td>",
                        pct(v.value),
                        pct(v.low),
                        pct(v.high)
                    );
                }
                None => s.push_str("<td>–</td>"),
            }
        }
        let _ = writeln!(s, "</tr>");
    }
    let _ = writeln!(s, "</tbody></table>");
    if !r.pairs.is_empty() {
        let _ = writeln!(s, "<h2>Differences in F1 (paired bootstrap)</h2>\n<table><thead><tr><th>a − b</th><th>questions</th><th>difference</th><th>95% CI</th><th>p</th><th>significant</th></tr></thead><tbody>");
        for p in &r.pairs {
            let _ = writeln!(
                s,
                "<tr><td>{} − {}</td><td>{}</td><td>{:+.1}</td><td>{:+.1} to {:+.1}</td><td>{:.3}</td><td>{}</td></tr>",
                e(&p.a),
                e(&p.b),
                p.n,
                100.0 * p.diff,
                100.0 * p.low,
                100.0 * p.high,
                p.p_value,
                if p.significant { "yes" } else { "no" }
            );
        }
        let _ = writeln!(s, "</tbody></table>");
    }
    let _ = writeln!(s, "<h2>Latency and cost</h2>\n<table><thead><tr><th>route</th><th>TTFT p50</th><th>TTFT p95</th><th>total p50</th><th>total p95</th><th>training</th><th>adapter</th><th>update</th></tr></thead><tbody>");
    for (name, rr) in &r.routes {
        let (l, c) = (&rr.latency, &rr.cost);
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{:.0} ms</td><td>{:.0} ms</td><td>{:.0} ms</td><td>{:.0} ms</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(name),
            l.ttft_ms.p50,
            l.ttft_ms.p95,
            l.total_ms.p50,
            l.total_ms.p95,
            c.train_minutes.map_or("–".into(), |m| format!("{m:.1} min")),
            c.adapter_bytes.map_or("–".into(), bytes),
            c.update_seconds.map_or("–".into(), crate::recommend::duration),
        );
    }
    let _ = writeln!(s, "</tbody></table>");
    if !plots.is_empty() {
        let _ = writeln!(s, "<h2>Plots</h2>");
        for p in plots {
            let _ = writeln!(
                s,
                "<figure aria-label=\"{}\">{}</figure>",
                e(p.title),
                inline_svg(&p.svg)
            );
        }
    }

    let _ = writeln!(
        s,
        "<h2>Questions</h2>\n<p><input id=\"filter\" type=\"search\" placeholder=\"Filter: any text in a row\" aria-label=\"Filter questions\"> <span id=\"shown\" class=\"meta\"></span></p>\n<table id=\"questions\"><thead><tr><th>id</th><th>question</th><th>reference</th><th>sources</th>"
    );
    for route in &routes {
        let _ = write!(s, "<th>{}</th>", e(route));
    }
    let _ = writeln!(s, "</tr></thead><tbody>");
    for q in &r.questions {
        let slice = if q.held_out {
            " <span class=\"meta\">(held out)</span>"
        } else {
            ""
        };
        let _ = write!(
            s,
            "<tr><td>{}{slice}</td><td>{}</td><td>{}</td><td>{}</td>",
            e(&q.id),
            e(&q.question),
            e(&q.reference),
            e(&q.sources.join(", "))
        );
        for route in &routes {
            match q.answers.get(*route) {
                Some(a) => {
                    let _ = write!(
                        s,
                        "<td data-sort=\"{}\"><div class=\"ans\">{}</div><div class=\"meta\">F1 {}",
                        a.f1,
                        e(&a.text),
                        pct(a.f1)
                    );
                    if a.refused {
                        s.push_str(" · <span class=\"refused\">refused</span>");
                    }
                    if !a.cited.is_empty() {
                        let _ = write!(s, " · cites {}", e(&a.cited.join(", ")));
                    }
                    let _ = write!(s, " · {:.0} ms</div></td>", a.total_ms);
                }
                None => s.push_str("<td data-sort=\"-1\">–</td>"),
            }
        }
        let _ = writeln!(s, "</tr>");
    }
    let _ = writeln!(s, "</tbody></table>\n<script>{JS}</script>\n</body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{synthetic, CurvePoint};

    #[test]
    fn report_files_exist_parse_and_escape_everything() {
        let mut r = synthetic(&[
            ("base", false, vec![0.1, 0.2, 0.3, 0.0]),
            ("ft", false, vec![0.3, 0.2, 0.4, 0.1]),
            ("rag", true, vec![0.7, 0.9, 0.8, 1.0]),
        ]);
        let evil =
            "<script>alert('x')</script> & <img src=https://evil.example/x.png onerror=alert(1)>";
        r.questions[0].answers.get_mut("rag").unwrap().text = evil.to_string();
        r.questions[1].question = "What does \"a | b\" mean?\nSecond line".into();
        r.loss_curves
            .insert("ft".into(), vec![[1.0, 2.0], [2.0, 1.5]]);
        r.learning_curve = vec![
            CurvePoint {
                route: "ft".into(),
                fraction: 0.25,
                f1: 0.1,
                ..Default::default()
            },
            CurvePoint {
                route: "ft".into(),
                fraction: 1.0,
                f1: 0.25,
                ..Default::default()
            },
        ];
        let d = tempfile::tempdir().unwrap();
        let w = write_report(d.path(), &r).unwrap();
        for p in [&w.results, &w.markdown, &w.html] {
            assert!(p.is_file(), "{}", p.display());
        }
        let names: Vec<String> = w
            .plots
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "metrics.svg",
                "latency.svg",
                "loss.svg",
                "learning_curve.svg"
            ]
        );
        assert!(w
            .plots
            .iter()
            .all(|p| p.starts_with(d.path().join("plots")) && p.is_file()));
        let back = Results::read(&w.results).unwrap();
        assert_eq!(
            (&back.recommendation, &back.questions.len()),
            (&r.recommendation, &4)
        );
        same_json(
            &serde_json::to_value(&back).unwrap(),
            &serde_json::to_value(&r).unwrap(),
            "",
        );

        let html = std::fs::read_to_string(&w.html).unwrap();
        let without_evil = html.replace(&escape_html(evil), "");
        assert!(
            !without_evil.contains("http://") && !without_evil.contains("https://"),
            "an external reference"
        );
        assert!(
            !html.contains("<link") && !without_evil.contains(" src="),
            "an external asset"
        );
        assert_eq!(html.matches("<script").count(), 1, "only our own script");
        assert!(html.contains(
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;img src=https://evil"
        ));
        assert!(html.contains("What does &quot;a | b&quot; mean?\nSecond line"));
        assert!(html.contains("Content-Security-Policy"));
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(html.contains(&format!("<strong>{}.</strong>", r.recommendation.route)));
        assert!(html.contains("<input id=\"filter\""));
        // Every test question is a row, with every route's answer.
        let body = &html[html.find("<table id=\"questions\"").unwrap()..];
        assert_eq!(body.matches("<tr>").count(), 1 + r.questions.len());
        assert!(body.contains("<td data-sort=\"0.9\"><div class=\"ans\">rag says 1</div>"));

        let md = std::fs::read_to_string(&w.markdown).unwrap();
        assert!(
            md.contains("## Recommendation")
                && md.contains("![Metrics per route (95% intervals)](plots/metrics.svg)")
        );
        assert!(md.contains("&lt;script&gt;") && !md.contains("<script"));
        assert!(md.contains("What does \"a \\| b\" mean?<br>Second line"));
        assert!(md.contains("| f1 | 15.0 ("), "{md}");
        // Each question line has as many cells as the header.
        let header = md.lines().find(|l| l.starts_with("| id |")).unwrap();
        let cells = |l: &str| l.replace("\\|", "").matches('|').count();
        for l in md
            .lines()
            .skip_while(|l| !l.starts_with("| id |"))
            .filter(|l| l.starts_with('|'))
        {
            assert_eq!(cells(l), cells(header), "{l}");
        }
    }

    /// Equal JSON, floats within 1e-12 (serde_json's default float parsing may differ by an ulp).
    fn same_json(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value::*;
        match (a, b) {
            (Number(x), Number(y)) => {
                assert!(
                    (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-12,
                    "{at}: {x} vs {y}"
                )
            }
            (Array(x), Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}");
                for (i, (x, y)) in x.iter().zip(y).enumerate() {
                    same_json(x, y, &format!("{at}[{i}]"));
                }
            }
            (Object(x), Object(y)) => {
                assert_eq!(
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>(),
                    "{at}"
                );
                for (k, v) in x {
                    same_json(v, &y[k], &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }

    #[test]
    fn an_empty_run_still_reports() {
        let r = Results::new("m", None, serde_json::json!({}));
        let mut r2 = r.clone();
        r2.compute(&[], &crate::StatsOptions::default());
        let d = tempfile::tempdir().unwrap();
        let w = write_report(d.path(), &r2).unwrap();
        assert!(w.plots.is_empty());
        let html = std::fs::read_to_string(&w.html).unwrap();
        assert!(
            html.contains("<p class=\"rec\">No route was measured"),
            "{html}"
        );
        assert!(!html.contains("<strong>.</strong>"));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            escape_md("a|b *c* [1]\n<x>"),
            "a\\|b \\*c\\* \\[1\\]<br>&lt;x&gt;"
        );
    }
}
