//! An SVG of resident memory and open file descriptors over the run, one line per process,
//! with the fault windows shaded: written by hand (no plotting library on the machine).

use std::fmt::Write as _;

use super::samples::Sample;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// A panel: its label, and the value of a sample it plots.
type Panel = (&'static str, fn(&Sample) -> f64);

/// A shaded interval: seconds from the start, and what it was.
pub struct Window {
    pub from_s: f64,
    pub to_s: f64,
    pub label: String,
}

/// The whole SVG document.
pub fn svg(samples: &[Sample], windows: &[Window], duration_s: f64, title: &str) -> String {
    let mut processes: Vec<&str> = samples.iter().map(|s| s.process.as_str()).collect();
    processes.sort();
    processes.dedup();
    let height = TOP + 2.0 * PANEL + GAP + 50.0;
    let mut out = String::new();
    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    )
    .unwrap();
    writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#).unwrap();
    writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(title)
    )
    .unwrap();
    let panels: [Panel; 2] = [
        ("resident memory (MiB)", |s| s.rss_kib as f64 / 1024.0),
        ("open file descriptors", |s| s.fds as f64),
    ];
    for (index, (label, value)) in panels.into_iter().enumerate() {
        let top = TOP + index as f64 * (PANEL + GAP);
        let plot_w = WIDTH - LEFT - RIGHT;
        let max = samples.iter().map(value).fold(1.0, f64::max) * 1.1;
        let x = |t: f64| LEFT + t / duration_s.max(1.0) * plot_w;
        let y = |v: f64| top + PANEL - v / max * PANEL;
        for window in windows {
            writeln!(
                out,
                r##"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{PANEL}" fill="#f4c7c3" opacity="0.6"><title>{}</title></rect>"##,
                x(window.from_s),
                (x(window.to_s) - x(window.from_s)).max(1.0),
                escape(&window.label)
            )
            .unwrap();
        }
        writeln!(
            out,
            r#"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="black"/>"#
        )
        .unwrap();
        writeln!(
            out,
            r#"<text x="{LEFT}" y="{:.1}">{label}</text>"#,
            top - 6.0
        )
        .unwrap();
        for tick in 0..=4 {
            let v = max * f64::from(tick) / 4.0;
            writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"#,
                LEFT - 6.0,
                y(v) + 4.0
            )
            .unwrap();
            let t = duration_s * f64::from(tick) / 4.0;
            writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0} s</text>"#,
                x(t),
                top + PANEL + 16.0
            )
            .unwrap();
        }
        for (i, process) in processes.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<String> = samples
                .iter()
                .filter(|s| s.process == *process)
                .map(|s| format!("{:.1},{:.1}", x(s.at_s), y(value(s))))
                .collect();
            writeln!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            )
            .unwrap();
            if index == 0 {
                let ly = TOP + 14.0 + i as f64 * 16.0;
                writeln!(
                    out,
                    r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{process}</text>"#,
                    WIDTH - RIGHT + 10.0,
                    WIDTH - RIGHT + 30.0,
                    WIDTH - RIGHT + 36.0,
                    ly + 4.0
                )
                .unwrap();
            }
        }
    }
    writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="20" height="10" fill="#f4c7c3"/><text x="{:.1}" y="{:.1}">fault window</text>"##,
        WIDTH - RIGHT + 10.0,
        TOP + 14.0 + processes.len() as f64 * 16.0,
        WIDTH - RIGHT + 36.0,
        TOP + 23.0 + processes.len() as f64 * 16.0
    )
    .unwrap();
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
