//! Charts as SVG text, drawn on the server with plotters (its SVG backend, which escapes every
//! label): a line over days, and horizontal bars over names.
//!
//! Owns the drawing only; the figures come from the pages. Never fails a page: a chart that
//! cannot be drawn is replaced by a sentence, and the table beside it still holds the figures.

use chrono::NaiveDate;
use plotters::prelude::*;

const WIDTH: u32 = 760;
const INK: RGBColor = RGBColor(37, 99, 235);
const LIMIT: RGBColor = RGBColor(220, 38, 38);

/// A line with a point per day; `limit` draws a horizontal line (a budget's limit).
pub fn daily(days: &[(NaiveDate, f64)], label: &str, limit: Option<f64>) -> String {
    let points: Vec<(String, f64)> = days
        .iter()
        .map(|d| (d.0.format("%m-%d").to_string(), d.1))
        .collect();
    line(&points, label, limit, true)
}

/// A line through named points, evenly spaced, each drawn as a dot when `dots`; `limit` draws
/// a horizontal line (a budget's limit). About 12 of the names are written under the axis.
pub fn line(points: &[(String, f64)], label: &str, limit: Option<f64>, dots: bool) -> String {
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 260)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = points
            .iter()
            .map(|d| d.1)
            .chain(limit)
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE)
            * 1.1;
        let n = points.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)?;
        let name = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            points
                .get(i as usize)
                .map(|d| d.0.clone())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_labels(n.min(12))
            .x_label_formatter(&name)
            .y_desc(label)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()?;
        let xy = points.iter().enumerate().map(|(i, d)| (i as f64, d.1));
        chart.draw_series(LineSeries::new(xy.clone(), INK.stroke_width(2)))?;
        if dots {
            chart.draw_series(xy.map(|p| Circle::new(p, 4, INK.filled())))?;
        }
        if let Some(limit) = limit {
            chart.draw_series(LineSeries::new(
                [(-0.5, limit), (n as f64 - 0.5, limit)],
                LIMIT.stroke_width(1),
            ))?;
        }
        root.present()?;
        Ok(())
    })();
    finish(svg, drawn)
}

/// A bar per name, longest first as given.
pub fn bars(rows: &[(String, f64)], label: &str) -> String {
    let mut svg = String::new();
    // A segment per row (plotters adds one, empty, at the top), 30 px each.
    let height = 60 + 30 * (rows.len().max(1) as u32 + 1);
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = rows
            .iter()
            .map(|r| r.1)
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE)
            * 1.1;
        let n = rows.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(200)
            .build_cartesian_2d(0f64..top, (0..n).into_segmented())?;
        // One segment per row: its name at the segment's centre.
        let name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => rows.get(*i).map(|r| shorten(&r.0)).unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&name)
            .label_style(("sans-serif", 13))
            .x_desc(label)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (r.1, SegmentValue::Exact(i + 1)),
                ],
                INK.filled(),
            );
            bar.set_margin(5, 5, 0, 0);
            bar
        }))?;
        root.present()?;
        Ok(())
    })();
    finish(svg, drawn)
}

fn finish(svg: String, drawn: Result<(), Box<dyn std::error::Error + '_>>) -> String {
    match drawn {
        Ok(()) => svg,
        Err(e) => format!(
            "<p>The chart could not be drawn ({}).</p>",
            super::layout::escape(&e.to_string())
        ),
    }
}

/// A name cut to what fits beside a bar.
fn shorten(name: &str) -> String {
    const MAX: usize = 28;
    if name.chars().count() <= MAX {
        return name.to_string();
    }
    let mut s: String = name.chars().take(MAX - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_per_day_and_escaped_labels() {
        let d = |n| NaiveDate::from_ymd_opt(2026, 11, n).expect("a date");
        let svg = daily(
            &[(d(1), 1.0), (d(2), 0.0), (d(3), 2.5)],
            "dollars",
            Some(3.0),
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3);
        let svg = bars(&[("<script>x</script>".into(), 1.0)], "dollars");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        // Each bar is named beside it.
        let svg = bars(
            &[("claude-opus".into(), 2.0), ("claude-sonnet".into(), 1.0)],
            "dollars",
        );
        assert!(svg.contains(">\nclaude-opus\n</text>"), "{svg}");
        assert!(svg.contains(">\nclaude-sonnet\n</text>"), "{svg}");
        let one = bars(&[("m".into(), 9.5)], "dollars");
        assert!(one.contains("fill=\"#2563EB\""), "{one}");
    }
}
