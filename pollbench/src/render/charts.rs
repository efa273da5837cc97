//! SVG line charts for a run's report (plotters): one series per backend against connections or
//! idle connections, on logarithmic x axes; and latency percentile spectra.

use std::fmt::Debug;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

/// One line: a label and its (x, y) points, x > 0, with an interval (x, lo, hi) drawn as an error
/// bar where there is one.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub bars: Vec<(f64, f64, f64)>,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// How a chart's y axis shows its values.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum YAxis {
    /// Linear from 0: counts and rates.
    Linear,
    /// Decades of microseconds, so that one backend's collapse to seconds does not flatten the
    /// others' microseconds into the x axis.
    LogMicros,
}

/// Draw `series` into an SVG at `path`; x on a log scale, y as `y_axis` says. With `zero_at_one`,
/// x = 0 (no idle connections) is drawn at 1 and labelled 0.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    zero_at_one: bool,
    y_axis: YAxis,
) -> Result<(), String> {
    // A log axis is drawn as log10 of the values on a linear axis, labelled back in µs.
    let log = y_axis == YAxis::LogMicros;
    let y_of = |v: f64| if log { v.max(1.0).log10() } else { v };
    let points = extent(series);
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let (y_min, y_max) = if log {
        let ys = points.iter().map(|p| y_of(p.1));
        let lo = ys
            .clone()
            .fold(f64::INFINITY, f64::min)
            .floor()
            .clamp(0.0, 2.0);
        (lo, ys.fold(0.0, f64::max).ceil().max(lo + 1.0))
    } else {
        (
            0.0,
            points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1,
        )
    };
    let err = |e: &dyn Debug| chart_error(path, e);
    let root = canvas(path)?;
    let mut chart = builder(&root, title)
        .build_cartesian_2d((1f64..x_max * 1.5).log_scale(), y_min..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .x_label_formatter(&|v| {
            if zero_at_one && *v <= 1.0 {
                "0".into()
            } else {
                format!("{v:.0}")
            }
        })
        .y_desc(y_label)
        .y_labels(if log {
            (y_max - y_min) as usize + 1
        } else {
            10
        })
        .y_label_formatter(&|v| {
            if log {
                micros(10f64.powf(*v))
            } else if *v >= 1e3 {
                format!("{:.0}k", v / 1e3)
            } else {
                format!("{v:.0}")
            }
        })
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        draw_with_bars(&mut chart, s, COLORS[i % COLORS.len()], y_of).map_err(|e| err(&e))?;
    }
    // Latency grows to the upper right and throughput falls to the lower right: keep the legend
    // in the corner the lines leave free.
    let legend = if log {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::LowerLeft
    };
    finish(&root, &mut chart, legend).map_err(|e| err(&e))
}

/// Every point the axes must hold: the series' points and their bars' ends.
fn extent(series: &[Series]) -> Vec<(f64, f64)> {
    let ends = series
        .iter()
        .flat_map(|s| s.bars.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]));
    series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .chain(ends)
        .collect()
}

/// One series of a line chart: its line, a dot at each point, and its error bars; `y_of` maps a
/// value onto the y axis.
fn draw_with_bars<X, Y>(
    chart: &mut Chart<'_, X, Y>,
    s: &Series,
    color: RGBColor,
    y_of: impl Fn(f64) -> f64,
) -> Result<(), DrawError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .map(|&(x, y)| (x.max(1.0), y_of(y)))
        .collect();
    draw_line(chart, &s.label, pts.clone(), color)?;
    chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    chart.draw_series(s.bars.iter().map(|&(x, lo, hi)| {
        // Its dot is the median's: the series' point at the same x.
        let median = s.points.iter().find(|p| p.0 == x).map_or(lo, |p| p.1);
        let (x, lo, hi) = (x.max(1.0), y_of(lo), y_of(hi));
        ErrorBar::new_vertical(x, lo, y_of(median), hi, color.stroke_width(1), 8)
    }))?;
    Ok(())
}

/// A white SVG canvas at `path`.
fn canvas(path: &Path) -> Result<DrawingArea<SVGBackend<'_>, Shift>, String> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| chart_error(path, &e))?;
    Ok(root)
}

fn chart_error(path: &Path, e: &dyn Debug) -> String {
    format!("chart {}: {e:?}", path.display())
}

/// The title, margins and label areas every chart shares.
fn builder<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70);
    b
}

type Chart<'a, X, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>;
type DrawError = DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>;

/// One labelled line, with its legend entry.
fn draw_line<X, Y>(
    chart: &mut Chart<'_, X, Y>,
    label: &str,
    points: Vec<(f64, f64)>,
    color: RGBColor,
) -> Result<(), DrawError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    Ok(())
}

/// Draw the legend and write the file.
fn finish<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &mut Chart<'_, X, Y>,
    legend: SeriesLabelPosition,
) -> Result<(), DrawError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend)
        .draw()?;
    root.present()
}

/// A latency axis label: 100µs, 10ms, 2s (whole units: tick labels have no room for decimals).
fn micros(v: f64) -> String {
    pollbench_common::format_us(v, 0, "")
}

/// The percentile spectrum of a latency histogram: (nines, µs) points where nines = -log10(1 - q),
/// so 1 is p90, 2 is p99 and 3 is p99.9. Stops where the histogram has too few values to say more.
pub fn spectrum_points(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    let max_nines = (h.len().max(1) as f64).log10().min(5.0);
    let steps = (max_nines * 20.0).ceil() as usize;
    (0..=steps)
        .map(|i| {
            let nines = (i as f64 / 20.0).min(max_nines);
            let q = 1.0 - 10f64.powf(-nines);
            (nines, (h.value_at_quantile(q) as f64).max(1.0))
        })
        .collect()
}

/// Draw latency percentile spectra (points from [`spectrum_points`]) into an SVG at `path`: x in
/// nines (labelled 0%, 90%, 99%, ...), y in microseconds on a log scale.
pub fn spectrum_chart(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    let points = extent(series);
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max).ceil();
    let y_max = points.iter().map(|p| p.1).fold(10.0, f64::max) * 2.0;
    let err = |e: &dyn Debug| chart_error(path, e);
    let root = canvas(path)?;
    let mut chart = builder(&root, title)
        .build_cartesian_2d(0f64..x_max, (1f64..y_max).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|v| {
            let pct = 100.0 * (1.0 - 10f64.powf(-v.round()));
            let digits = (v.round() as usize).saturating_sub(2);
            format!("{pct:.digits$}%")
        })
        .y_desc("latency (µs)")
        .y_label_formatter(&|v| micros(*v))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        draw_line(&mut chart, &s.label, s.points.clone(), color).map_err(|e| err(&e))?;
    }
    finish(&root, &mut chart, SeriesLabelPosition::UpperLeft).map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spectrum_follows_the_histogram_to_its_resolution() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        // 1,000 values: 1..=1000 µs. The spectrum reaches 3 nines (p99.9) and no further.
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let points = spectrum_points(&h);
        assert_eq!(points.first().unwrap().0, 0.0);
        assert_eq!(points.last().unwrap().0, 3.0);
        let at = |nines: f64| {
            points
                .iter()
                .find(|p| (p.0 - nines).abs() < 1e-9)
                .unwrap()
                .1
        };
        assert!((at(1.0) - 900.0).abs() <= 1.0, "p90 {}", at(1.0));
        assert!((at(2.0) - 990.0).abs() <= 1.0, "p99 {}", at(2.0));
        assert!(points.windows(2).all(|w| w[0].1 <= w[1].1), "monotonic");
    }
}
