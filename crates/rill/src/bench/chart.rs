//! `chart.svg`: throughput and p99 latency over time, one line per operation, as a
//! self-contained hand-written SVG that any browser opens.
//!
//! Two stacked panels share the time axis: operations per second (each operation plus a dashed
//! total) and p99 latency in milliseconds (each operation; gaps where an operation had no
//! successful completion in an interval). Axes carry "nice" ticks (1, 2 or 5 times a power of
//! ten), labels and a legend.

use std::fmt::Write as _;

use super::stats::Row;
use super::workload::Op;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 680.0;
const PLOT_LEFT: f64 = 90.0;
const PLOT_RIGHT: f64 = 800.0;
const LEGEND_X: f64 = 815.0;
/// Roughly how many ticks an axis gets.
const TICKS: f64 = 6.0;

/// One colour per operation: the ten of the "tab10" palette, distinct from each other.
fn color(op: Op) -> &'static str {
    match op {
        Op::Get => "#1f77b4",
        Op::Put => "#ff7f0e",
        Op::Update => "#2ca02c",
        Op::Delete => "#d62728",
        Op::Counter => "#9467bd",
        Op::CounterFetch => "#8c564b",
        Op::SetAdd => "#e377c2",
        Op::SetFetch => "#7f7f7f",
        Op::MapUpdate => "#bcbd22",
        Op::MapFetch => "#17becf",
    }
}

/// A tick step for an axis from 0 to `max`: 1, 2 or 5 times a power of ten, giving about
/// `TICKS` ticks.
pub fn nice_step(max: f64) -> f64 {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / TICKS;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// The axis top: `max` rounded up to a whole step (at least one step).
fn nice_max(max: f64, step: f64) -> f64 {
    ((max / step).ceil() * step).max(step)
}

/// A tick label without float noise.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// Escapes text for SVG content and attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of a panel: its label, colour, dashing and points (`None` breaks the line).
struct Line {
    label: String,
    color: &'static str,
    dashed: bool,
    points: Vec<Option<(f64, f64)>>,
}

/// A panel's vertical placement and content.
struct Panel<'a> {
    title: &'a str,
    y_label: &'a str,
    top: f64,
    bottom: f64,
    lines: Vec<Line>,
}

/// Maps data coordinates to the panel's pixels.
struct Scale {
    x_max: f64,
    y_max: f64,
    top: f64,
    bottom: f64,
}

impl Scale {
    fn x(&self, t: f64) -> f64 {
        PLOT_LEFT + (t / self.x_max) * (PLOT_RIGHT - PLOT_LEFT)
    }
    fn y(&self, v: f64) -> f64 {
        self.bottom - (v / self.y_max) * (self.bottom - self.top)
    }
}

/// Shortest interval plotted: the run's final partial interval (operations in flight finishing)
/// is too short for a meaningful rate, so it stays in the CSV but not in the chart.
const MIN_PLOTTED_INTERVAL_S: f64 = 0.5;

/// Renders the chart.
pub fn svg(title: &str, subtitle: &str, ops: &[Op], series: &[Row]) -> String {
    let series: Vec<Row> = series
        .iter()
        .filter(|r| r.interval_s >= MIN_PLOTTED_INTERVAL_S)
        .cloned()
        .collect();
    let series = &series[..];
    let t_max = series.iter().map(|r| r.end_s).fold(0.0, f64::max);
    let x_step = nice_step(t_max);
    let x_max = nice_max(t_max, x_step);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="44" text-anchor="middle" fill="#444">{}</text>"##,
        WIDTH / 2.0,
        escape(subtitle)
    );
    let panels = [
        Panel {
            title: "Throughput",
            y_label: "operations per second",
            top: 85.0,
            bottom: 310.0,
            lines: throughput_lines(ops, series),
        },
        Panel {
            title: "p99 latency",
            y_label: "p99 latency (ms)",
            top: 390.0,
            bottom: 615.0,
            lines: latency_lines(ops, series),
        },
    ];
    for panel in &panels {
        draw_panel(&mut out, panel, x_max, x_step, series.is_empty());
    }
    out.push_str("</svg>\n");
    out
}

fn throughput_lines(ops: &[Op], series: &[Row]) -> Vec<Line> {
    let rate = |r: &Row, n: u64| {
        if r.interval_s > 0.0 {
            n as f64 / r.interval_s
        } else {
            0.0
        }
    };
    let mut lines: Vec<Line> = ops
        .iter()
        .map(|&op| Line {
            label: op.name().to_owned(),
            color: color(op),
            dashed: false,
            points: series
                .iter()
                .map(|r| {
                    let n = r
                        .points
                        .iter()
                        .find(|(o, _)| *o == op)
                        .map_or(0, |(_, p)| p.ops);
                    Some((r.end_s, rate(r, n)))
                })
                .collect(),
        })
        .collect();
    if ops.len() > 1 {
        lines.push(Line {
            label: "total".into(),
            color: "#333333",
            dashed: true,
            points: series
                .iter()
                .map(|r| Some((r.end_s, rate(r, r.points.iter().map(|(_, p)| p.ops).sum()))))
                .collect(),
        });
    }
    lines
}

fn latency_lines(ops: &[Op], series: &[Row]) -> Vec<Line> {
    ops.iter()
        .map(|&op| Line {
            label: op.name().to_owned(),
            color: color(op),
            dashed: false,
            points: series
                .iter()
                .map(|r| {
                    r.points
                        .iter()
                        .find(|(o, p)| *o == op && p.ops > 0)
                        .map(|(_, p)| (r.end_s, p.p99_us as f64 / 1000.0))
                })
                .collect(),
        })
        .collect()
}

fn draw_panel(out: &mut String, panel: &Panel<'_>, x_max: f64, x_step: f64, empty: bool) {
    let v_max = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().flatten().map(|(_, v)| *v))
        .fold(0.0, f64::max);
    let y_step = nice_step(v_max);
    let scale = Scale {
        x_max,
        y_max: nice_max(v_max, y_step),
        top: panel.top,
        bottom: panel.bottom,
    };
    let _ = writeln!(
        out,
        r#"<text x="{PLOT_LEFT}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
        panel.top - 12.0,
        escape(panel.title)
    );
    draw_grid(out, &scale, x_step, y_step);
    let mid_y = (panel.top + panel.bottom) / 2.0;
    let _ = writeln!(
        out,
        r#"<text x="22" y="{mid_y}" text-anchor="middle" transform="rotate(-90 22 {mid_y})">{}</text>"#,
        escape(panel.y_label)
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"#,
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        panel.bottom + 36.0
    );
    if empty {
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{mid_y}" text-anchor="middle" fill="#888">no data</text>"##,
            (PLOT_LEFT + PLOT_RIGHT) / 2.0
        );
    }
    for line in &panel.lines {
        draw_line(out, &scale, line);
    }
    draw_legend(out, panel);
}

fn draw_grid(out: &mut String, s: &Scale, x_step: f64, y_step: f64) {
    let _ = writeln!(out, r##"<g stroke="#ddd" stroke-width="1">"##);
    let y_ticks = (s.y_max / y_step).round() as usize;
    for i in 0..=y_ticks {
        let y = s.y(i as f64 * y_step);
        let _ = writeln!(
            out,
            r#"<line x1="{PLOT_LEFT}" y1="{y:.1}" x2="{PLOT_RIGHT}" y2="{y:.1}"/>"#
        );
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(
        out,
        r##"<g stroke="#000" stroke-width="1"><line x1="{PLOT_LEFT}" y1="{b}" x2="{PLOT_RIGHT}" y2="{b}"/><line x1="{PLOT_LEFT}" y1="{t}" x2="{PLOT_LEFT}" y2="{b}"/></g>"##,
        b = s.bottom,
        t = s.top
    );
    for i in 0..=y_ticks {
        let v = i as f64 * y_step;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            PLOT_LEFT - 6.0,
            s.y(v) + 4.0,
            tick_label(v, y_step)
        );
    }
    let x_ticks = (s.x_max / x_step).round() as usize;
    for i in 0..=x_ticks {
        let t = i as f64 * x_step;
        let x = s.x(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{b}" x2="{x:.1}" y2="{}" stroke="#000"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            s.bottom + 5.0,
            s.bottom + 18.0,
            tick_label(t, x_step),
            b = s.bottom
        );
    }
}

fn draw_line(out: &mut String, s: &Scale, line: &Line) {
    let mut d = String::new();
    let mut pen_down = false;
    for p in &line.points {
        match p {
            Some((t, v)) => {
                let cmd = if pen_down { 'L' } else { 'M' };
                let _ = write!(d, "{cmd}{:.1},{:.1} ", s.x(*t), s.y(*v));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if d.is_empty() {
        return;
    }
    let dash = if line.dashed {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    };
    let _ = writeln!(
        out,
        r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.8"{dash}/>"#,
        d.trim_end(),
        line.color
    );
}

fn draw_legend(out: &mut String, panel: &Panel<'_>) {
    for (i, line) in panel.lines.iter().enumerate() {
        let y = panel.top + 10.0 + i as f64 * 20.0;
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<line x1="{LEGEND_X}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2.5"{dash}/><text x="{}" y="{}">{}</text>"#,
            LEGEND_X + 24.0,
            line.color,
            LEGEND_X + 30.0,
            y + 4.0,
            escape(&line.label)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Point;

    fn row(end_s: f64, points: Vec<(Op, u64, u64)>) -> Row {
        Row {
            end_s,
            interval_s: 1.0,
            points: points
                .into_iter()
                .map(|(op, ops, p99_us)| {
                    (
                        op,
                        Point {
                            ops,
                            errors: 0,
                            p50_us: p99_us / 2,
                            p99_us,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn nice_steps_are_1_2_5_times_a_power_of_ten() {
        assert_eq!(nice_step(60.0), 10.0);
        assert_eq!(nice_step(20.0), 5.0);
        assert_eq!(nice_step(9.0), 2.0);
        assert_eq!(nice_step(18_000.0), 5000.0);
        assert_eq!(nice_step(1.3), 0.5);
        assert_eq!(nice_step(0.0), 0.2, "empty axes still get ticks");
        assert_eq!(nice_max(18_000.0, 5000.0), 20_000.0);
        assert_eq!(nice_max(0.0, 0.2), 0.2);
    }

    #[test]
    fn tick_labels_have_no_float_noise() {
        assert_eq!(tick_label(0.30000000000000004, 0.1), "0.3");
        assert_eq!(tick_label(15000.0, 5000.0), "15000");
        assert_eq!(tick_label(0.05, 0.05), "0.05");
    }

    /// Every opened element is closed, in order (the SVG is well-formed XML).
    fn assert_balanced(svg: &str) {
        let mut stack = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unterminated tag") + start;
            let tag = &rest[start + 1..end];
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            if tag.starts_with('/') {
                assert_eq!(stack.pop(), Some(name), "mismatched close");
            } else if !tag.ends_with('/') {
                stack.push(name);
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn chart_has_axes_lines_and_legend() {
        let series = vec![
            row(1.0, vec![(Op::Get, 900, 2000), (Op::Put, 100, 5000)]),
            row(2.0, vec![(Op::Get, 1100, 2500)]),
            row(3.0, vec![(Op::Get, 1000, 2200), (Op::Put, 90, 4000)]),
        ];
        let svg = svg("pb <test> & more", "sub", &[Op::Get, Op::Put], &series);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_balanced(&svg);
        for text in [
            "Throughput",
            "p99 latency (ms)",
            "operations per second",
            "time (s)",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        assert!(svg.contains("pb &lt;test&gt; &amp; more"), "title escaped");
        assert!(svg.contains(">get</text>") && svg.contains(">put</text>"));
        assert!(svg.contains(">total</text>"), "total line in the legend");
        // get: 3 throughput points + 3 latency points; put latency has a gap at t=2.
        let paths: Vec<&str> = svg.lines().filter(|l| l.starts_with("<path")).collect();
        assert_eq!(
            paths.len(),
            5,
            "get, put, total throughput; get, put latency"
        );
        let put_latency = paths[4];
        assert_eq!(put_latency.matches('M').count(), 2, "gap breaks the line");
    }

    #[test]
    fn short_tail_intervals_are_not_plotted() {
        let mut tail = row(20.004, vec![(Op::Get, 3, 900)]);
        tail.interval_s = 0.004;
        let series = vec![
            row(19.0, vec![(Op::Get, 10, 500)]),
            row(20.0, vec![(Op::Get, 10, 500)]),
            tail,
        ];
        let svg = svg("t", "s", &[Op::Get], &series);
        assert!(svg.contains(">20</text>"), "axis ends at 20 s");
        assert!(
            !svg.contains(">25</text>"),
            "the 4 ms tail does not stretch the axis"
        );
    }

    #[test]
    fn empty_series_still_renders() {
        let svg = svg("nothing", "", &[Op::Get], &[]);
        assert_balanced(&svg);
        assert!(svg.contains("no data"));
        assert!(!svg.contains("<path"));
    }
}
