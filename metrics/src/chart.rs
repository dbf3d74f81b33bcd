//! Minimal SVG line charts for benchmark results and training curves: self-contained
//! files a README or a report embeds, with no plotting dependency. Each panel is a
//! `<g>` of fixed size; [`side_by_side`] lays panels out under a title. One writer
//! for every chart the project draws (the cost curve of `engram eval answers`, the
//! trainer's LoRA loss, the contextual stage two's loss), so they look alike.

const W: f64 = 420.0;
const H: f64 = 300.0;
const PAD_L: f64 = 56.0;
const PAD_R: f64 = 16.0;
const PAD_T: f64 = 30.0;
const PAD_B: f64 = 44.0;

/// A panel body (an SVG fragment of size `W` x `H`).
pub struct Panel(String);

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&m| m >= v)
        .unwrap_or(10.0 * p)
}

/// A line of `points` (x, y) with axes from zero, and optionally one highlighted
/// reference point `(label, x, y)` drawn as a dot with a dashed level line. Points
/// that are not finite (a diverged loss) are left out: they have no place on the axes.
pub fn line_panel(
    title: &str,
    x_label: &str,
    points: &[(f64, f64)],
    reference: Option<(&str, f64, f64)>,
) -> Panel {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let points = finite.as_slice();
    let xs = points.iter().map(|p| p.0).chain(reference.map(|r| r.1));
    let ys = points.iter().map(|p| p.1).chain(reference.map(|r| r.2));
    let x_max = nice_max(xs.fold(0.0, f64::max));
    let y_max = nice_max(ys.fold(0.0, f64::max));
    let px = |x: f64| PAD_L + x / x_max * (W - PAD_L - PAD_R);
    let py = |y: f64| H - PAD_B - y / y_max * (H - PAD_T - PAD_B);
    let mut s = String::new();
    s.push_str(&format!(
        r#"<text x="{}" y="18" font-size="14" text-anchor="middle" font-weight="bold">{}</text>"#,
        W / 2.0,
        escape(title)
    ));
    // Axes, ticks and grid.
    for i in 0..=4 {
        let (xv, yv) = (x_max * i as f64 / 4.0, y_max * i as f64 / 4.0);
        s.push_str(&format!(
            r##"<line x1="{l}" x2="{r}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{tx}" y="{ty}" font-size="11" text-anchor="end">{yv}</text>"##,
            l = PAD_L,
            r = W - PAD_R,
            y = py(yv),
            tx = PAD_L - 6.0,
            ty = py(yv) + 4.0,
            yv = trim_number(yv)
        ));
        s.push_str(&format!(
            r#"<text x="{x}" y="{y}" font-size="11" text-anchor="middle">{xv}</text>"#,
            x = px(xv),
            y = H - PAD_B + 16.0,
            xv = trim_number(xv)
        ));
    }
    s.push_str(&format!(
        r##"<line x1="{l}" x2="{l}" y1="{t}" y2="{b}" stroke="#333"/><line x1="{l}" x2="{r}" y1="{b}" y2="{b}" stroke="#333"/>"##,
        l = PAD_L,
        r = W - PAD_R,
        t = PAD_T,
        b = H - PAD_B
    ));
    s.push_str(&format!(
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
        (PAD_L + W - PAD_R) / 2.0,
        H - 8.0,
        escape(x_label)
    ));
    let path: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
        .collect();
    s.push_str(&format!(
        r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##,
        path.join(" ")
    ));
    for &(x, y) in points {
        s.push_str(&format!(
            r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#1f6feb"><title>{} {}: {}</title></circle>"##,
            px(x),
            py(y),
            escape(x_label),
            trim_number(x),
            trim_number(y)
        ));
    }
    if let Some((label, x, y)) = reference {
        s.push_str(&format!(
            r##"<line x1="{l}" x2="{r}" y1="{y:.1}" y2="{y:.1}" stroke="#d1242f" stroke-dasharray="5,4"/><circle cx="{cx:.1}" cy="{y:.1}" r="5" fill="#d1242f"/><text x="{tx:.1}" y="{ty:.1}" font-size="11" fill="#d1242f">{label}</text>"##,
            l = PAD_L,
            r = W - PAD_R,
            y = py(y),
            cx = px(x),
            tx = px(x) + 8.0,
            ty = py(y) - 6.0,
            label = escape(label)
        ));
    }
    Panel(s)
}

fn trim_number(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Panels in a row under a title, as a complete SVG document.
pub fn side_by_side(title: &str, panels: &[Panel]) -> String {
    let width = W * panels.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" viewBox="0 0 {width} {h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="{cx}" y="20" font-size="15" text-anchor="middle">{title}</text>"#,
        h = H + 30.0,
        cx = width / 2.0,
        title = escape(title)
    );
    for (i, p) in panels.iter().enumerate() {
        s.push_str(&format!(
            r#"<g transform="translate({},30)">{}</g>"#,
            W * i as f64,
            p.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_nice_and_points_land_inside_the_plot() {
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(1800.0), 2000.0);
        assert_eq!(nice_max(0.0), 1.0);
        let panel = line_panel(
            "t",
            "x",
            &[(0.0, 0.0), (1000.0, 4.0)],
            Some(("rag", 500.0, 1.0)),
        );
        let svg = side_by_side("T & <b>", &[panel]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("T &amp; &lt;b&gt;"));
        assert!(svg.contains(">rag</text>"));
        // The last point (x = 1000 = x_max, y = 4 of 5) sits at the right edge.
        let right = format!("{:.1},", W - PAD_R);
        assert!(svg.contains(&right), "{svg}");
        assert!(svg.contains("<title>x 1000: 4</title>"), "{svg}");
    }

    #[test]
    fn one_point_per_finite_value() {
        let panel = line_panel(
            "loss <1>",
            "step",
            &[
                (1.0, 3.0),
                (2.0, 2.0),
                (3.0, f64::NAN),
                (4.0, f64::INFINITY),
            ],
            None,
        );
        let svg = side_by_side("t", &[panel]);
        assert!(svg.contains("loss &lt;1&gt;"));
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        // The x axis is that of the finite points: up to 2 in steps of 0.5 (with the
        // point at x = 4 it would go to 5 in steps of 1.25).
        assert!(svg.contains(">0.5</text>"), "{svg}");
    }
}
