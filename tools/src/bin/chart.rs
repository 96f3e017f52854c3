//! A tiny SVG line chart with a log-scale x axis, for `bench/run.sh` (standard library
//! only: no plotting dependency on the benchmark machine).
//!
//! ```text
//! chart --out docs/broadcast-cpu.svg --title "Broadcast: server CPU per delivery" \
//!       --subtitle "1 publisher, 64 B, 16 in flight; 2026-12-02 11:09 UTC" \
//!       --x-label "subscribers (log scale)" --y-label "server CPU per delivery (ns)" \
//!       --unit ns --series "pushloop=100:406,1000:605,10000:801" \
//!       --series "uWebSockets=100:355,1000:492,10000:648"
//! ```
//!
//! Each `--series NAME=X:Y,...` is one labelled line with its points and their values
//! (`--unit` after each value); x must be positive (log scale), y not negative (the y
//! axis starts at 0). `--subtitle` may be given more than once (one line each). Writes
//! the SVG to `--out` (`-`: stdout). Exit status 2 on bad arguments, 1 if the file
//! cannot be written.

use std::fmt::Write as _;
use std::process::ExitCode;

/// The canvas and the plot area inside it, in SVG user units.
const WIDTH: f64 = 760.0;
const PLOT_LEFT: f64 = 90.0;
const PLOT_RIGHT: f64 = 730.0;
/// Line colours, in series order (colour-blind-safe pair first: blue, orange).
const COLOURS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];
/// Point markers' radius.
const DOT: f64 = 4.5;

/// One labelled line.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// What to draw.
#[derive(Debug, Default)]
struct Chart {
    title: String,
    subtitles: Vec<String>,
    x_label: String,
    y_label: String,
    unit: String,
    series: Vec<Series>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (chart, out) = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("chart: {e}");
            eprintln!(
                "usage: chart --out FILE [--title T] [--subtitle S]... [--x-label L] \
                 [--y-label L] [--unit U] --series NAME=X:Y,X:Y... [--series ...]"
            );
            return ExitCode::from(2);
        }
    };
    let svg = render(&chart);
    let written = if out == "-" {
        print!("{svg}");
        Ok(())
    } else {
        std::fs::write(&out, svg)
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chart: writing {out}: {e}");
            ExitCode::from(1)
        }
    }
}

/// The chart and the output path from the command line.
fn parse_args(args: &[String]) -> Result<(Chart, String), String> {
    let mut chart = Chart::default();
    let mut out = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--out" => out = Some(value()?),
            "--title" => chart.title = value()?,
            "--subtitle" => chart.subtitles.push(value()?),
            "--x-label" => chart.x_label = value()?,
            "--y-label" => chart.y_label = value()?,
            "--unit" => chart.unit = value()?,
            "--series" => chart.series.push(parse_series(&value()?)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let out = out.ok_or("--out is required")?;
    if chart.series.is_empty() {
        return Err("at least one --series is required".into());
    }
    Ok((chart, out))
}

/// `NAME=X:Y,X:Y,...`, points sorted by x.
fn parse_series(spec: &str) -> Result<Series, String> {
    let (name, list) = spec
        .split_once('=')
        .ok_or_else(|| format!("series {spec:?} is not NAME=X:Y,..."))?;
    let mut points = Vec::new();
    for pair in list.split(',').filter(|p| !p.trim().is_empty()) {
        let point = pair.split_once(':').and_then(|(x, y)| {
            let (x, y) = (x.trim().parse::<f64>().ok()?, y.trim().parse::<f64>().ok()?);
            (x.is_finite() && y.is_finite() && x > 0.0 && y >= 0.0).then_some((x, y))
        });
        points.push(point.ok_or_else(|| {
            format!("bad point {pair:?} in series {name:?} (X > 0 and Y >= 0, numbers)")
        })?);
    }
    if name.trim().is_empty() || points.is_empty() {
        return Err(format!(
            "series {spec:?} needs a name and at least one point"
        ));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(Series {
        name: name.trim().to_owned(),
        points,
    })
}

/// A step of 1, 2 or 5 times a power of ten that cuts `0..max` into about `parts`.
fn nice_step(max: f64, parts: f64) -> f64 {
    let raw = (max / parts).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// `12345` as `12,345` (integers; others with up to 3 significant decimals).
fn label(v: f64) -> String {
    if v.fract() != 0.0 {
        let text = format!("{v:.3}");
        return text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    let digits = format!("{:.0}", v.abs());
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if v < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

/// Text escaped for XML.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG document.
fn render(chart: &Chart) -> String {
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::INFINITY, 0f64, 0f64);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    // Half a decade of room on each side of the points; y from 0 to a round number.
    let (lx_min, lx_max) = (x_min.log10() - 0.25, x_max.log10() + 0.25);
    let y_step = nice_step(y_max.max(1e-9) * 1.1, 5.0);
    let y_top = (y_max * 1.1 / y_step).ceil().max(1.0) * y_step;

    let top = 58.0 + 18.0 * chart.subtitles.len() as f64 + 30.0;
    let bottom = top + 300.0;
    let height = bottom + 62.0;
    let sx =
        |x: f64| PLOT_LEFT + (x.log10() - lx_min) / (lx_max - lx_min) * (PLOT_RIGHT - PLOT_LEFT);
    let sy = |y: f64| bottom - y / y_top * (bottom - top);

    let mut svg = String::new();
    let w = &mut svg;
    let _ = writeln!(
        w,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="13">"#
    );
    let _ = writeln!(w, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        w,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="18" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        xml(&chart.title)
    );
    for (i, line) in chart.subtitles.iter().enumerate() {
        let _ = writeln!(
            w,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">{}</text>"##,
            WIDTH / 2.0,
            50.0 + 18.0 * i as f64,
            xml(line)
        );
    }

    // Legend, one row above the plot.
    let mut lx = PLOT_LEFT;
    let ly = top - 22.0;
    for (i, series) in chart.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            w,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2.5"/><circle cx="{}" cy="{ly}" r="{DOT}" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            lx + 28.0,
            lx + 14.0,
            lx + 36.0,
            ly + 4.5,
            xml(&series.name)
        );
        lx += 60.0 + 7.5 * series.name.chars().count() as f64;
    }

    // Grid, ticks and axes.
    let mut y = 0.0;
    while y <= y_top + y_step / 2.0 {
        let py = sy(y);
        let _ = writeln!(
            w,
            r##"<line x1="{PLOT_LEFT}" y1="{py:.1}" x2="{PLOT_RIGHT}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            PLOT_LEFT - 8.0,
            py + 4.5,
            label((y / y_step).round() * y_step)
        );
        y += y_step;
    }
    let mut decade = lx_min.ceil() as i32;
    while f64::from(decade) <= lx_max {
        let value = 10f64.powi(decade);
        let px = sx(value);
        let _ = writeln!(
            w,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{bottom}" stroke="#ddd"/><text x="{px:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
            bottom + 20.0,
            label(value)
        );
        decade += 1;
    }
    let _ = writeln!(
        w,
        r##"<path d="M{PLOT_LEFT} {top} V{bottom} H{PLOT_RIGHT}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        w,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        bottom + 44.0,
        xml(&chart.x_label)
    );
    let _ = writeln!(
        w,
        r#"<text transform="translate(24 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (top + bottom) / 2.0,
        xml(&chart.y_label)
    );

    // The lines, their points, and each point's value: above it if this series is the
    // highest at that x, below it otherwise, so two lines' labels do not collide.
    for (i, series) in chart.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = series
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            w,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2.5"/>"#,
            path.join(" ")
        );
        for &(x, y) in &series.points {
            let highest = chart
                .series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|p| p.0 == x)
                .all(|p| p.1 <= y);
            let dy = if highest { -10.0 } else { 20.0 };
            let _ = writeln!(
                w,
                r#"<circle cx="{:.1}" cy="{:.1}" r="{DOT}" fill="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{colour}" font-weight="bold">{}{}{}</text>"#,
                sx(x),
                sy(y),
                sx(x),
                sy(y) + dy,
                label((y * 10.0).round() / 10.0),
                if chart.unit.is_empty() { "" } else { " " },
                xml(&chart.unit)
            );
        }
    }
    let _ = writeln!(w, "</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_parse_and_sort() {
        let s = parse_series("uWS=10000:648,100:355.5").unwrap();
        assert_eq!(s.name, "uWS");
        assert_eq!(s.points, vec![(100.0, 355.5), (10000.0, 648.0)]);
        assert!(parse_series("x=0:1").is_err());
        assert!(parse_series("x=1:-1").is_err());
        assert!(parse_series("x=").is_err());
        assert!(parse_series("100:1").is_err());
    }

    #[test]
    fn steps_and_labels() {
        assert_eq!(nice_step(900.0, 5.0), 200.0);
        assert_eq!(nice_step(1.0, 5.0), 0.2);
        assert_eq!(label(10000.0), "10,000");
        assert_eq!(label(100.0), "100");
        assert_eq!(label(0.25), "0.25");
    }

    #[test]
    fn renders_every_point_escaped() {
        let chart = Chart {
            title: "a <b> & c".into(),
            unit: "ns".into(),
            series: vec![
                parse_series("p=100:406,1000:605").unwrap(),
                parse_series("u=100:355,1000:700").unwrap(),
            ],
            ..Chart::default()
        };
        let svg = render(&chart);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        for value in ["406 ns", "605 ns", "355 ns", "700 ns"] {
            assert!(svg.contains(value), "{value}");
        }
        assert_eq!(svg.matches("<polyline").count(), 2);
    }
}
