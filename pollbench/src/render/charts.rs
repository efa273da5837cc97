//! SVG line charts for a run's report (plotters): one series per backend against connections or
//! idle connections, on logarithmic x axes; and latency percentile spectra. Every chart has its
//! title and notes (which run, what its bars are) above the plot and its legend below it, so the
//! legend covers no data; no two series of a chart look alike (colour, then line pattern and
//! marker).

use std::fmt::Debug;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One line: a label and its (x, y) points, x > 0 (or 0 on an axis that draws it), with an
/// interval (x, lo, hi) drawn as an error bar where there is one.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub bars: Vec<(f64, f64, f64)>,
}

/// What a chart says in words: its title, the notes under it (which run, what the bars are), and
/// its axes.
pub struct Labels<'a> {
    pub title: &'a str,
    pub notes: &'a [String],
    pub x: &'a str,
    pub y: &'a str,
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

/// Beyond the palette, a series' line: solid, dashed or dotted (dash and gap in pixels).
const DASHES: [Option<(u32, u32)>; 3] = [None, Some((9, 4)), Some((2, 3))];

/// Beyond the palette, a series' marker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Marker {
    Circle,
    Triangle,
    Square,
}

const MARKERS: [Marker; 3] = [Marker::Circle, Marker::Triangle, Marker::Square];

/// How one series is drawn.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Look {
    color: RGBColor,
    dash: Option<(u32, u32)>,
    marker: Marker,
}

/// The look of a chart's series `i`: the palette's colours in turn, then again dashed with
/// triangles, then dotted with squares, and so on; the first 72 series all look different.
fn look(i: usize) -> Look {
    let k = i / COLORS.len();
    Look {
        color: COLORS[i % COLORS.len()],
        dash: DASHES[k % DASHES.len()],
        marker: MARKERS[(k + k / DASHES.len()) % MARKERS.len()],
    }
}

/// How a chart's y axis shows its values.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum YAxis {
    /// Linear from 0: counts and rates.
    Linear,
    /// Decades of microseconds, so that one backend's collapse to seconds does not flatten the
    /// others' microseconds into the x axis.
    LogMicros,
}

/// The canvas's width and the plot's height in pixels (the canvas adds the title, the notes and
/// the legend to the plot).
const WIDTH: u32 = 800;
const PLOT_HEIGHT: u32 = 400;
/// How far apart the series' points at one x are drawn, so that their error bars do not overlap:
/// 4 pixels, as a fraction of the plot's width (less its margins and y labels, roughly).
const NUDGE: f64 = 4.0 / (WIDTH - 120) as f64;
/// The legend: the longest label that fits one of two columns (else it has one), and the height
/// of its rows in pixels.
const LEGEND: (usize, i32) = (64, 18);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, X, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>;
type DrawError = DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>;

/// A chart's canvas: its whole area (written out by `present`) and the part the plot goes in.
struct Frame<'a> {
    root: Area<'a>,
    plot: Area<'a>,
}

/// A white SVG canvas at `path`, with `labels`' title and notes drawn at its top and a legend of
/// `series` at its bottom; the plot goes in between.
fn frame<'a>(path: &'a Path, labels: &Labels, series: &[Series]) -> Result<Frame<'a>, DrawError> {
    let head = 34 + 18 * labels.notes.len() as u32;
    let names: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
    let rows = names.len().div_ceil(legend_columns(&names)) as u32;
    let legend = 10 + LEGEND.1 as u32 * rows;
    let root = SVGBackend::new(path, (WIDTH, head + PLOT_HEIGHT + legend)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(head);
    let (plot, bottom) = rest.split_vertically(PLOT_HEIGHT);
    let centre = |size| {
        TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, VPos::Top))
    };
    let middle = WIDTH as i32 / 2;
    top.draw(&Text::new(
        labels.title.to_string(),
        (middle, 8),
        centre(20),
    ))?;
    for (i, note) in labels.notes.iter().enumerate() {
        let style = centre(13).color(&RGBColor(70, 70, 70));
        top.draw(&Text::new(
            note.clone(),
            (middle, 34 + 18 * i as i32),
            style,
        ))?;
    }
    draw_legend(&bottom, &names)?;
    Ok(Frame { root, plot })
}

/// The legend's columns: two, or one where a label is too long for half the width.
fn legend_columns(labels: &[&str]) -> usize {
    if labels.iter().all(|l| l.chars().count() <= LEGEND.0) {
        2
    } else {
        1
    }
}

/// The legend: each series' line and marker, and its label, in columns.
fn draw_legend(area: &Area<'_>, labels: &[&str]) -> Result<(), DrawError> {
    let columns = legend_columns(labels);
    let column = (WIDTH as usize - 32) / columns;
    for (i, label) in labels.iter().enumerate() {
        let look = look(i);
        let x = 16 + (i % columns * column) as i32;
        let y = 4 + (i / columns) as i32 * LEGEND.1 + LEGEND.1 / 2;
        let line = vec![(x, y), (x + 30, y)];
        let style = look.color.stroke_width(2);
        match look.dash {
            None => area.draw(&PathElement::new(line, style))?,
            Some((dash, gap)) => area.draw(&plotters::element::DashedPathElement::new(
                line, dash, gap, style,
            ))?,
        }
        area.draw(&mark(look, (x + 15, y)))?;
        let text =
            TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(label.to_string(), (x + 38, y), text))?;
    }
    Ok(())
}

/// A series' marker at `at`.
fn mark<'a, DB, C>(look: Look, at: C) -> DynElement<'a, DB, C>
where
    DB: DrawingBackend + 'a,
    C: Clone + 'a,
{
    let style = look.color.filled();
    let at = EmptyElement::at(at);
    match look.marker {
        Marker::Circle => (at + Circle::new((0, 0), 3, style)).into_dyn(),
        Marker::Triangle => (at + TriangleMarker::new((0, 0), 5, style)).into_dyn(),
        Marker::Square => (at + Rectangle::new([(-3, -3), (3, 3)], style)).into_dyn(),
    }
}

/// Where a series' markers go on its line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Marks {
    /// At every point: a line chart's cells.
    Every,
    /// At the last: where a spectrum stops.
    Last,
}

/// A series' line through `points` in its look, with its markers.
fn draw_look<X, Y>(
    chart: &mut Chart<'_, X, Y>,
    points: Vec<(f64, f64)>,
    look: Look,
    marks: Marks,
) -> Result<(), DrawError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let line = look.color.stroke_width(2);
    let at: Vec<(f64, f64)> = match marks {
        Marks::Every => points.clone(),
        Marks::Last => points.last().copied().into_iter().collect(),
    };
    match look.dash {
        None => chart.draw_series(LineSeries::new(points, line))?,
        Some((dash, gap)) => chart.draw_series(DashedLineSeries::new(points, dash, gap, line))?,
    };
    let style = look.color.filled();
    let at = at.into_iter().map(EmptyElement::at);
    match look.marker {
        Marker::Circle => chart.draw_series(at.map(|p| p + Circle::new((0, 0), 3, style)))?,
        Marker::Triangle => {
            chart.draw_series(at.map(|p| p + TriangleMarker::new((0, 0), 5, style)))?
        }
        Marker::Square => {
            chart.draw_series(at.map(|p| p + Rectangle::new([(-3, -3), (3, 3)], style)))?
        }
    };
    Ok(())
}

/// The chart builder every chart shares, on the frame's plot area.
fn builder<'a, 'b>(plot: &'a Area<'b>, right: u32) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(plot);
    b.margin(10)
        .margin_right(right)
        .x_label_area_size(40)
        .y_label_area_size(70);
    b
}

fn chart_error(path: &Path, e: &dyn Debug) -> String {
    format!("chart {}: {e:?}", path.display())
}

/// Where a line chart's x axis draws its values: a log scale from the least x to the largest,
/// with x = 0 (no idle connections) drawn a decade below the least other x where the chart says
/// so, and each series nudged a few pixels apart so that bars at one x do not overlap.
struct XScale {
    lo: f64,
    hi: f64,
    /// Where x = 0 is drawn, when a series has it.
    zero: Option<f64>,
    /// The data's x values, ascending: labelled on the axis, with the decades.
    xs: Vec<f64>,
}

impl XScale {
    fn of(series: &[Series], zero_drawn: bool) -> XScale {
        let mut xs: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let least = xs.iter().copied().find(|&x| x > 0.0).unwrap_or(1.0);
        let zero = (zero_drawn && xs.first() == Some(&0.0))
            .then(|| 10f64.powf(least.log10().floor() - 1.0));
        let hi = xs.last().copied().unwrap_or(1.0).max(least) * 1.5;
        XScale {
            lo: zero.unwrap_or(least) / 1.5,
            hi,
            zero,
            xs,
        }
    }

    /// Where `x` of series `i` of `n` is drawn.
    fn at(&self, x: f64, i: usize, n: usize) -> f64 {
        let x = if x <= 0.0 {
            self.zero.unwrap_or(self.lo)
        } else {
            x
        };
        let decades = (self.hi / self.lo).log10();
        let shift = (i as f64 - (n as f64 - 1.0) / 2.0) * NUDGE * decades;
        x * 10f64.powf(shift)
    }

    /// A tick's label: the data's x values and the decades ("0" where x = 0 is drawn); none
    /// between 0 and the least other x, where the axis breaks.
    fn label(&self, v: f64) -> String {
        let near = |a: f64, b: f64| (a / b - 1.0).abs() < 1e-6;
        if self.zero.is_some_and(|z| near(v, z)) {
            return "0".into();
        }
        let least = self.xs.iter().copied().find(|&x| x > 0.0).unwrap_or(v);
        let broken = self.zero.is_some() && v < least && !near(v, least);
        let decade = near(v, 10f64.powf(v.log10().round()));
        if !broken && (decade || self.xs.iter().any(|&x| near(v, x))) {
            format!("{v:.0}")
        } else {
            String::new()
        }
    }

    /// The axis's description: `x`, that it is a log scale, where 0 is, and the nudge.
    fn describe(&self, x: &str, series: usize) -> String {
        let mut d = format!("{x} (log scale");
        if self.zero.is_some() {
            let least = self.xs.iter().copied().find(|&x| x > 0.0).unwrap_or(1.0);
            d += &format!(", broken between 0 and {least:.0}");
        }
        if series > 1 {
            d += "; series nudged apart in x";
        }
        d + ")"
    }
}

/// A linear axis's tick label: `v` with the fewest decimals that give it exactly (to a millionth
/// of the axis's `span`), in thousands (k) from 1000 on, so that no two ticks read alike.
fn linear_tick(v: f64, span: f64) -> String {
    let tol = span * 1e-6;
    if v.abs() <= tol {
        return "0".into();
    }
    let (v, tol, unit) = if v.abs() >= 1e3 {
        (v / 1e3, tol / 1e3, "k")
    } else {
        (v, tol, "")
    };
    let digits = (0..9)
        .find(|&d| {
            let s = format!("{v:.d$}");
            s.parse::<f64>().is_ok_and(|p| (p - v).abs() <= tol)
        })
        .unwrap_or(9);
    format!("{v:.digits$}{unit}")
}

/// The y axis of a line chart, on the scale `log` says (log10 of µs, or linear from 0): the
/// decades the data span, or 0 to a tenth above the largest value.
fn y_range(points: &[(f64, f64)], log: bool) -> (f64, f64) {
    if log {
        let ys = points.iter().map(|p| p.1.max(1.0).log10());
        let lo = ys.clone().fold(f64::INFINITY, f64::min).floor().max(0.0);
        (lo, ys.fold(0.0, f64::max).ceil().max(lo + 1.0))
    } else {
        let max = points.iter().map(|p| p.1).fold(0.0, f64::max);
        (0.0, if max > 0.0 { max * 1.1 } else { 1.0 })
    }
}

/// Draw `series` into an SVG at `path`; x on a log scale, y as `y_axis` says. With `zero_drawn`,
/// x = 0 (no idle connections) is drawn a decade below the least other x and labelled 0.
pub fn line_chart(
    path: &Path,
    labels: &Labels,
    series: &[Series],
    zero_drawn: bool,
    y_axis: YAxis,
) -> Result<(), String> {
    let err = |e: &dyn Debug| chart_error(path, e);
    let log = y_axis == YAxis::LogMicros;
    let y_of = |v: f64| if log { v.max(1.0).log10() } else { v };
    let scale = XScale::of(series, zero_drawn);
    let (y_min, y_max) = y_range(&extent(series), log);
    let frame = frame(path, labels, series).map_err(|e| err(&e))?;
    let last_x = std::cell::Cell::new(f64::NAN);
    let mut chart = builder(&frame.plot, 24)
        .build_cartesian_2d((scale.lo..scale.hi).log_scale(), y_min..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(scale.describe(labels.x, series.len()))
        .x_labels(30)
        .x_max_light_lines(0)
        .x_label_formatter(&|v| once(&last_x, *v, || scale.label(*v)))
        .y_desc(labels.y)
        .y_labels(if log {
            (y_max - y_min) as usize + 1
        } else {
            10
        })
        .y_label_formatter(&|v| {
            if log {
                micros(10f64.powf(*v))
            } else {
                linear_tick(*v, y_max - y_min)
            }
        })
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let at = |x| scale.at(x, i, series.len());
        draw_with_bars(&mut chart, s, look(i), at, y_of).map_err(|e| err(&e))?;
    }
    frame.root.present().map_err(|e| err(&e))
}

/// A log axis's tick label, from `label`; none where the tick is the one before again (plotters'
/// log axis gives each decade twice, as the last multiple of the decade below and as itself),
/// `last` being the tick before.
fn once(last: &std::cell::Cell<f64>, v: f64, label: impl FnOnce() -> String) -> String {
    if last.replace(v) == v {
        String::new()
    } else {
        label()
    }
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

/// One series of a line chart: its line, a marker at each point, and its error bars; `at` maps
/// an x onto the x axis and `y_of` a value onto the y axis.
fn draw_with_bars<X, Y>(
    chart: &mut Chart<'_, X, Y>,
    s: &Series,
    look: Look,
    at: impl Fn(f64) -> f64,
    y_of: impl Fn(f64) -> f64,
) -> Result<(), DrawError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (at(x), y_of(y))).collect();
    chart.draw_series(s.bars.iter().map(|&(x, lo, hi)| {
        // Its marker is the median's: the series' point at the same x.
        let median = s.points.iter().find(|p| p.0 == x).map_or(lo, |p| p.1);
        let style = look.color.stroke_width(1);
        ErrorBar::new_vertical(at(x), y_of(lo), y_of(median), y_of(hi), style, 6)
    }))?;
    draw_look(chart, pts, look, Marks::Every)
}

/// A latency axis label: 100µs, 10ms, 2s (whole units: tick labels have no room for decimals).
fn micros(v: f64) -> String {
    pollbench_common::format_us(v, 0, "")
}

/// A log latency axis's tick label where the tick is 1, 2 or 5 times a power of ten (plotters
/// ticks every multiple; all labelled, they would crowd the top of each decade).
fn one_two_five(v: f64) -> String {
    let leading = (v / 10f64.powf(v.log10().floor())).round();
    if [1.0, 2.0, 5.0].contains(&leading) {
        micros(v)
    } else {
        String::new()
    }
}

/// How many samples must lie beyond a percentile for the spectrum to draw it: past that, a line
/// would follow a handful of values.
pub const SPECTRUM_TAIL: u64 = 10;

/// The percentile spectrum of a latency histogram: (nines, µs) points where nines = -log10(1 - q),
/// so 1 is p90, 2 is p99 and 3 is p99.9. Stops where fewer than [`SPECTRUM_TAIL`] values lie
/// beyond the percentile.
pub fn spectrum_points(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    let tail = (h.len() as f64 / SPECTRUM_TAIL as f64).max(1.0);
    let max_nines = tail.log10().min(5.0);
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
/// nines (labelled 0%, 90%, 99%, ...), y in microseconds on a log scale from the decade of the
/// least value; a marker where each line stops.
pub fn spectrum_chart(path: &Path, labels: &Labels, series: &[Series]) -> Result<(), String> {
    let points = extent(series);
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max).ceil();
    let least = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_lo = 10f64.powf(least.max(1.0).log10().floor());
    let y_hi = points.iter().map(|p| p.1).fold(y_lo * 2.0, f64::max) * 1.5;
    let err = |e: &dyn Debug| chart_error(path, e);
    let frame = frame(path, labels, series).map_err(|e| err(&e))?;
    let last_y = std::cell::Cell::new(f64::NAN);
    let mut chart = builder(&frame.plot, 44)
        .build_cartesian_2d(0f64..x_max, (y_lo..y_hi).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|v| {
            let pct = 100.0 * (1.0 - 10f64.powf(-v.round()));
            let digits = (v.round() as usize).saturating_sub(2);
            format!("{pct:.digits$}%")
        })
        .y_desc(labels.y)
        .y_labels(30)
        .y_max_light_lines(0)
        .y_label_formatter(&|v| once(&last_y, *v, || one_two_five(*v)))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        draw_look(&mut chart, s.points.clone(), look(i), Marks::Last).map_err(|e| err(&e))?;
    }
    frame.root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spectrum_stops_where_ten_samples_remain_beyond() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        // 1,000 values: 1..=1000 µs. Ten lie beyond p99: the spectrum reaches 2 nines and stops.
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let points = spectrum_points(&h);
        assert_eq!(points.first().unwrap().0, 0.0);
        assert_eq!(points.last().unwrap().0, 2.0);
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

    #[test]
    fn no_two_of_72_series_look_alike() {
        let looks: Vec<Look> = (0..72).map(look).collect();
        for (i, a) in looks.iter().enumerate() {
            assert!(
                !looks[..i].contains(a),
                "series {i} looks like an earlier one"
            );
        }
        assert_eq!(look(0).dash, None, "the first series are solid");
    }

    #[test]
    fn a_spectrum_labels_one_two_five() {
        let labels: Vec<String> = [1e3, 2e3, 3e3, 5e3, 9e3, 1e4, 2e4].map(one_two_five).into();
        assert_eq!(labels, ["1ms", "2ms", "", "5ms", "", "10ms", "20ms"]);
    }

    #[test]
    fn a_long_label_gets_the_legend_one_column() {
        assert_eq!(legend_columns(&["epoll", "io_uring"]), 2);
        let long = "x".repeat(LEGEND.0 + 1);
        assert_eq!(legend_columns(&["epoll", &long]), 1);
    }

    #[test]
    fn ticks_below_one_read_apart() {
        let ticks: Vec<String> = (0..=10).map(|i| linear_tick(i as f64 * 0.1, 1.1)).collect();
        assert_eq!(ticks[..4], ["0", "0.1", "0.2", "0.3"]);
        assert_eq!(ticks[10], "1");
        assert_eq!(linear_tick(0.30000000000000004, 1.1), "0.3");
        assert_eq!(linear_tick(150_000.0, 2e5), "150k");
        assert_eq!(linear_tick(12_500.0, 2e4), "12.5k");
        assert_eq!(linear_tick(0.25, 0.5), "0.25");
    }

    #[test]
    fn zero_idle_is_drawn_a_decade_below_and_labelled() {
        let s = Series {
            label: "a".into(),
            points: vec![(0.0, 1.0), (100.0, 1.0), (1000.0, 1.0)],
            bars: Vec::new(),
        };
        let scale = XScale::of(&[s], true);
        assert_eq!(scale.zero, Some(10.0));
        assert_eq!(scale.label(10.0), "0");
        assert_eq!(scale.label(50.0), "", "the axis breaks between 0 and 100");
        assert_eq!(scale.label(100.0), "100");
        assert_eq!(scale.label(200.0), "", "neither data nor a decade");
        assert!(scale.lo > 1.0, "the axis starts at the data");
    }
}
