//! Hand-rendered SVG plots of a report: a line chart (ready CDF, Hub bytes over time) and a bar
//! chart (bytes served per host). No dependencies; the output is plain, deterministic SVG.

use super::report::Report;

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

/// One line of a chart.
pub struct Series {
    /// Legend.
    pub name: String,
    /// Stroke colour.
    pub color: &'static str,
    /// Points, x ascending.
    pub points: Vec<(f64, f64)>,
    /// Dashed.
    pub dashed: bool,
}

fn header(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        W / 2.0,
        escape(title)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound for an axis.
fn nice(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&v| v >= max)
        .unwrap_or(10.0 * mag)
}

fn axes(x_max: f64, y_max: f64, x_label: &str, y_label: &str) -> String {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let mut s = format!(
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\n"
    );
    for i in 0..=5 {
        let f = f64::from(i) / 5.0;
        let (x, y) = (LEFT + f * pw, TOP + ph - f * ph);
        s += &format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            TOP + ph + 16.0,
            fmt(f * x_max)
        );
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 6.0,
            y + 4.0,
            fmt(f * y_max)
        );
        s += &format!(
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\n",
            LEFT + pw
        );
    }
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
        LEFT + pw / 2.0,
        H - 10.0,
        escape(x_label)
    );
    s += &format!(
        "<text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        TOP + ph / 2.0,
        escape(y_label)
    );
    s
}

fn fmt(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A line chart of `series`, with vertical markers `(x, label)`.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    markers: &[(f64, String)],
) -> String {
    let x_max = nice(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(markers.iter().map(|m| m.0))
            .fold(0.0, f64::max),
    );
    let y_max = nice(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + x / x_max * pw;
    let py = |y: f64| TOP + ph - y / y_max * ph;
    let mut s = header(title) + &axes(x_max, y_max, x_label, y_label);
    for (x, label) in markers {
        s += &format!(
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#999\" stroke-dasharray=\"2 3\"/><text x=\"{2:.1}\" y=\"{3:.1}\" fill=\"#666\">{4}</text>\n",
            px(*x), TOP + ph, px(*x) + 3.0, TOP + 12.0, escape(label)
        );
    }
    for (i, line) in series.iter().enumerate() {
        let pts: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let dash = if line.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n",
            line.color,
            pts.join(" ")
        );
        let ly = TOP + 16.0 + 16.0 * i as f64;
        s += &format!(
            "<line x1=\"{0:.1}\" y1=\"{ly:.1}\" x2=\"{1:.1}\" y2=\"{ly:.1}\" stroke=\"{2}\" stroke-width=\"2\"{dash}/><text x=\"{3:.1}\" y=\"{4:.1}\">{5}</text>\n",
            LEFT + pw - 150.0, LEFT + pw - 126.0, line.color, LEFT + pw - 120.0, ly + 4.0, escape(&line.name)
        );
    }
    s + "</svg>\n"
}

/// A bar chart of `values` labelled `labels`.
pub fn bars(title: &str, y_label: &str, labels: &[String], values: &[f64]) -> String {
    let y_max = nice(values.iter().copied().fold(0.0, f64::max));
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let mut s = header(title) + &axes(0.0, y_max, "", y_label);
    // The x ticks of `axes` are meaningless here: cover them.
    s += &format!(
        "<rect x=\"0\" y=\"{:.1}\" width=\"{W}\" height=\"20\" fill=\"white\"/>\n",
        TOP + ph + 2.0
    );
    let slot = pw / values.len().max(1) as f64;
    for (i, (label, v)) in labels.iter().zip(values).enumerate() {
        let h = v / y_max * ph;
        let x = LEFT + slot * i as f64 + slot * 0.15;
        s += &format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4c78a8\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>\n",
            TOP + ph - h, slot * 0.7, x + slot * 0.35, TOP + ph + 14.0, escape(label)
        );
    }
    s + "</svg>\n"
}

/// Step points of a CDF of `times` over `n` hosts: (t, fraction ready).
pub fn cdf(times: &[f64], n: usize) -> Vec<(f64, f64)> {
    let mut t: Vec<f64> = times.to_vec();
    t.sort_by(f64::total_cmp);
    let mut pts = vec![(0.0, 0.0)];
    for (i, &x) in t.iter().enumerate() {
        pts.push((x, i as f64 / n.max(1) as f64));
        pts.push((x, (i + 1) as f64 / n.max(1) as f64));
    }
    pts
}

/// The three plots of a report: `(file name, svg)`.
pub fn plots(r: &Report) -> Vec<(&'static str, String)> {
    let phases: Vec<_> = std::iter::once(&r.mesh)
        .chain(r.baseline.as_ref())
        .collect();
    let color = |mode: &str| if mode == "mesh" { "#4c78a8" } else { "#e45756" };
    let ready: Vec<Series> = phases
        .iter()
        .map(|p| Series {
            name: p.mode.clone(),
            color: color(&p.mode),
            points: cdf(
                &p.hosts
                    .iter()
                    .filter_map(|h| h.ready_at)
                    .collect::<Vec<_>>(),
                p.expected,
            ),
            dashed: false,
        })
        .collect();
    let single = vec![(r.single_host_secs, "one host alone".to_string())];
    let hub: Vec<Series> = phases
        .iter()
        .map(|p| Series {
            name: p.mode.clone(),
            color: color(&p.mode),
            points: p
                .samples
                .iter()
                .map(|s| (s.t, s.hub_bytes as f64 / 1e6))
                .collect(),
            dashed: false,
        })
        .chain(std::iter::once(Series {
            name: "model size".into(),
            color: "#54a24b",
            points: vec![
                (0.0, r.model_bytes as f64 / 1e6),
                (
                    phases.iter().map(|p| p.wall_secs).fold(0.0, f64::max),
                    r.model_bytes as f64 / 1e6,
                ),
            ],
            dashed: true,
        }))
        .collect();
    let labels: Vec<String> = r.mesh.hosts.iter().map(|h| h.name.clone()).collect();
    let served: Vec<f64> = r
        .mesh
        .hosts
        .iter()
        .map(|h| h.bytes_served as f64 / 1e6)
        .collect();
    vec![
        (
            "ready-cdf.svg",
            lines(
                "Hosts ready over time",
                "seconds",
                "fraction of hosts ready",
                &ready,
                &single,
            ),
        ),
        (
            "hub-bytes.svg",
            lines(
                "Bytes from the Hub",
                "seconds",
                "MB from the Hub",
                &hub,
                &single,
            ),
        ),
        (
            "served.svg",
            bars(
                "Bytes served to peers per host (mesh)",
                "MB served",
                &labels,
                &served,
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_steps_reach_one() {
        let pts = cdf(&[3.0, 1.0], 2);
        assert_eq!(
            pts,
            vec![(0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (3.0, 0.5), (3.0, 1.0)]
        );
    }

    #[test]
    fn nice_bounds() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(130.0), 200.0);
        assert_eq!(nice(1.0), 1.0);
    }

    #[test]
    fn charts_are_svg_with_escaped_text() {
        let s = lines(
            "a < b",
            "x",
            "y",
            &[Series {
                name: "m".into(),
                color: "red",
                points: vec![(0.0, 0.0), (1.0, 2.0)],
                dashed: false,
            }],
            &[],
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n") && s.contains("a &lt; b"));
        let b = bars("t", "y", &["h0".into()], &[5.0]);
        assert!(b.contains("<rect x=") && b.contains(">h0</text>"));
    }
}
