//! SVG line charts for a run's report (plotters): one series per backend against connections or
//! idle connections, on logarithmic x axes; and latency percentile spectra. Every chart has its
//! title and notes (which run, what its bars are) above the plot and its legend below it, so the
//! legend covers no data; no two series of a chart look alike (colour, then line pattern and
//! marker).

use std::fmt::Debug;
use std::path::Path;

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One line: a label and its (x, y) points, x > 0 (or 0 on an axis that draws it), with an
/// interval (x, lo, hi) drawn as an error bar where there is one.
pub struct Series {
    pub label: String,
    /// Which look it is drawn in (see [`look`]): its column's place among the sweep's columns,
    /// so that a column looks the same in every chart of its sweep.
    pub look: usize,
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
/// The height of a legend row and of a note's line, in pixels; a title's line.
const ROW: i32 = 18;
const TITLE_ROW: i32 = 26;
/// Font sizes in plotters' points (its SVG writes a size s as s / 1.24 pixels).
const TITLE_PT: f64 = 20.0;
const NOTE_PT: f64 = 13.0;
/// A sans-serif character's width in ems, estimated high (most are 0.5 to 0.6 of an em), so that
/// a text fitted with it fits.
const EM_PER_CHAR: f64 = 0.6;
/// The margin kept free at the canvas's left and right edges, in pixels.
const EDGE: i32 = 16;
/// A legend entry: its line sample's width, and where its label starts after the sample.
const SAMPLE: i32 = 30;
const LABEL_AT: i32 = 38;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, X, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>;
type DrawError = DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>;

/// The width in pixels `text` takes at `pt` points, estimated high (see [`EM_PER_CHAR`]).
fn text_width(text: &str, pt: f64) -> f64 {
    text.chars().count() as f64 * pt / 1.24 * EM_PER_CHAR
}

/// `text` in lines no wider than `width` pixels at `pt` points: broken at spaces, and within a
/// word only where the word alone is too wide.
fn wrap(text: &str, pt: f64, width: f64) -> Vec<String> {
    let fits = |s: &str| text_width(s, pt) <= width;
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let joined = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if fits(&joined) {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            if !line.is_empty() && !fits(&format!("{line}{c}")) {
                lines.push(std::mem::take(&mut line));
            }
            line.push(c);
        }
    }
    lines.push(line);
    lines
}

/// `text` wrapped as [`wrap`] does, its lines then made as even as they can be without adding
/// one: a title or a note of two lines reads as two halves, not as a line and a word.
fn wrap_evenly(text: &str, pt: f64, width: f64) -> Vec<String> {
    let lines = wrap(text, pt, width);
    let mut even = lines.clone();
    let mut narrower = width - 8.0;
    while lines.len() > 1 && narrower > 0.0 {
        let tried = wrap(text, pt, narrower);
        if tried.len() > lines.len() {
            break;
        }
        even = tried;
        narrower -= 8.0;
    }
    even
}

/// One legend entry: the label, and how its series is drawn.
struct Entry {
    label: String,
    look: Look,
}

/// Where the legend puts its entries: in two columns where every label fits half the width on
/// one line, else in one, each label's lines wrapped to the width.
struct LegendLayout {
    columns: usize,
    /// Each entry's label, in lines, and its column and first row.
    placed: Vec<(Vec<String>, usize, i32)>,
    rows: i32,
}

impl LegendLayout {
    fn of(entries: &[Entry]) -> LegendLayout {
        let room = |columns: i32| ((WIDTH as i32 - 2 * EDGE) / columns - LABEL_AT - 8) as f64;
        let columns = if entries
            .iter()
            .all(|e| text_width(&e.label, NOTE_PT) <= room(2))
        {
            2
        } else {
            1
        };
        let mut placed = Vec::with_capacity(entries.len());
        let mut rows = 0;
        for chunk in entries.chunks(columns) {
            let mut height = 1;
            for (column, e) in chunk.iter().enumerate() {
                let lines = wrap(&e.label, NOTE_PT, room(columns as i32));
                height = height.max(lines.len() as i32);
                placed.push((lines, column, rows));
            }
            rows += height;
        }
        LegendLayout {
            columns,
            placed,
            rows,
        }
    }
}

/// A chart's canvas: its whole area (written out by `present`) and the part the plot goes in.
struct Frame<'a> {
    root: Area<'a>,
    plot: Area<'a>,
}

/// A white SVG canvas at `path`, with `labels`' title and notes drawn at its top (each wrapped to
/// the width) and a legend of `entries` at its bottom; the plot goes in between, so the legend
/// covers none of it.
fn frame<'a>(path: &'a Path, labels: &Labels, entries: &[Entry]) -> Result<Frame<'a>, DrawError> {
    let width = (WIDTH as i32 - 2 * EDGE) as f64;
    let title = wrap_evenly(labels.title, TITLE_PT, width);
    let notes: Vec<String> = labels
        .notes
        .iter()
        .flat_map(|n| wrap_evenly(n, NOTE_PT, width))
        .collect();
    let notes_at = 8 + TITLE_ROW * title.len() as i32;
    let head = notes_at + ROW * notes.len() as i32;
    let legend = LegendLayout::of(entries);
    let height = head as u32 + PLOT_HEIGHT + 10 + (ROW * legend.rows) as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(head as u32);
    let (plot, bottom) = rest.split_vertically(PLOT_HEIGHT);
    let centre = |size: f64| {
        TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, VPos::Top))
    };
    let middle = WIDTH as i32 / 2;
    for (i, line) in title.into_iter().enumerate() {
        top.draw(&Text::new(
            line,
            (middle, 8 + TITLE_ROW * i as i32),
            centre(TITLE_PT),
        ))?;
    }
    for (i, line) in notes.into_iter().enumerate() {
        let style = centre(NOTE_PT).color(&RGBColor(70, 70, 70));
        top.draw(&Text::new(line, (middle, notes_at + ROW * i as i32), style))?;
    }
    draw_legend(&bottom, entries, &legend)?;
    Ok(Frame { root, plot })
}

/// The legend: each entry's line and marker, and its label, where `layout` puts them.
fn draw_legend(area: &Area<'_>, entries: &[Entry], layout: &LegendLayout) -> Result<(), DrawError> {
    let column = (WIDTH as i32 - 2 * EDGE) / layout.columns as i32;
    let text = TextStyle::from(("sans-serif", NOTE_PT).into_font())
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (e, (lines, at, row)) in entries.iter().zip(&layout.placed) {
        let x = EDGE + *at as i32 * column;
        let y = 4 + row * ROW + ROW / 2;
        let line = vec![(x, y), (x + SAMPLE, y)];
        let style = e.look.color.stroke_width(2);
        match e.look.dash {
            None => area.draw(&PathElement::new(line, style))?,
            Some((dash, gap)) => area.draw(&plotters::element::DashedPathElement::new(
                line, dash, gap, style,
            ))?,
        }
        area.draw(&mark(e.look, (x + SAMPLE / 2, y)))?;
        for (k, l) in lines.iter().enumerate() {
            area.draw(&Text::new(
                l.clone(),
                (x + LABEL_AT, y + k as i32 * ROW),
                text.clone(),
            ))?;
        }
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
/// so, and each series nudged a few pixels apart so that bars at one x do not overlap (the axis
/// widened by the nudges, so that the outermost series stay on it).
struct XScale {
    lo: f64,
    hi: f64,
    /// How far apart the series are drawn, as a fraction of the axis: [`NUDGE`], or less where
    /// there are so many series that their nudges would take more than 30% of it.
    nudge: f64,
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
        let lo = zero.unwrap_or(least) / 1.5;
        let gaps = series.len().saturating_sub(1).max(1) as f64;
        let nudge = NUDGE.min(0.3 / gaps);
        // The nudges spread the series over `spread` of the axis: widened by half of that on
        // either side, in decades.
        let spread = nudge * gaps;
        let pad = 10f64.powf((hi / lo).log10() * spread / (1.0 - spread) / 2.0);
        XScale {
            lo: lo / pad,
            hi: hi * pad,
            nudge,
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
        let shift = (i as f64 - (n as f64 - 1.0) / 2.0) * self.nudge * decades;
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
    let frame = frame(path, labels, &entries(series)).map_err(|e| err(&e))?;
    let mut chart = builder(&frame.plot, 24)
        .build_cartesian_2d((scale.lo..scale.hi).log_scale(), y_min..y_max)
        .map_err(|e| err(&e))?;
    let y_labels = if log {
        (y_max - y_min) as usize + 1
    } else {
        10
    };
    let y_label = |v: f64| {
        if log {
            micros(10f64.powf(v))
        } else {
            linear_tick(v, y_max - y_min)
        }
    };
    draw_log_x_mesh(&mut chart, &scale, series, labels, Some(y_labels), y_label)
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let at = |x| scale.at(x, i, series.len());
        draw_with_bars(&mut chart, s, look(s.look), at, y_of).map_err(|e| err(&e))?;
    }
    frame.root.present().map_err(|e| err(&e))
}

/// The mesh of a chart of `series` on the log x axis `scale`, as [`line_chart`] and
/// [`ratio_chart`] draw it: x described by `scale`, labelled at the data's x values and the
/// decades (each once), with no light grid lines; y described by `labels.y` and labelled by
/// `y_label`, at `y_labels` ticks (None: at the y axis's own key points).
fn draw_log_x_mesh<Y>(
    chart: &mut Chart<'_, LogCoord<f64>, Y>,
    scale: &XScale,
    series: &[Series],
    labels: &Labels,
    y_labels: Option<usize>,
    y_label: impl Fn(f64) -> String,
) -> Result<(), DrawError>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let last_x = std::cell::Cell::new(f64::NAN);
    let x_label = |v: &f64| once(&last_x, *v, || scale.label(*v));
    let y_label = |v: &f64| y_label(*v);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(scale.describe(labels.x, series.len()))
        .x_labels(30)
        .x_max_light_lines(0)
        .x_label_formatter(&x_label)
        .y_desc(labels.y)
        .y_label_formatter(&y_label);
    if let Some(n) = y_labels {
        mesh.y_labels(n);
    }
    mesh.draw()
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

/// The legend of a chart of `series`: each one's label in its look.
fn entries(series: &[Series]) -> Vec<Entry> {
    series
        .iter()
        .map(|s| Entry {
            label: s.label.clone(),
            look: look(s.look),
        })
        .collect()
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

/// `v` rounded to 12 significant digits: a tick computed as a multiple lands on the value it
/// names (0.3, not 0.30000000000000004).
fn tidy(v: f64) -> f64 {
    format!("{v:.11e}").parse().unwrap_or(v)
}

/// `v` with the fewest decimals that give it to a billionth of itself: 0.01, 0.15, 1, 20.
fn shortest(v: f64) -> String {
    let digits = (0..12)
        .find(|&d| {
            let s = format!("{v:.d$}");
            s.parse::<f64>()
                .is_ok_and(|p| (p - v).abs() <= v.abs() * 1e-9)
        })
        .unwrap_or(12);
    format!("{v:.digits$}")
}

/// A ratio axis's tick label: the ratio with the decimals its magnitude needs (0.01, 0.1, 1.5).
fn ratio_tick(v: f64) -> String {
    shortest(v)
}

/// A log latency axis's tick label: in µs, ms or s by its magnitude, with the decimals it needs
/// (50µs, 1.5ms, 2s).
fn latency_tick(us: f64) -> String {
    let (v, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    format!("{}{unit}", shortest(tidy(v)))
}

/// The ticks of a log axis from `lo` to `hi` (0 < lo < hi), as (labelled, light grid lines): the
/// densest that fits of the powers of ten (4 to 12 in the range), 1, 2 and 5 times them (4 to 12),
/// 1, 2, 3, 5 and 7 times them (4 to 8) and those and 1.5 times them (4 to 8), with the other
/// multiples of the powers of ten as the light grid; over more decades, every power of ten (every other one, or fewer, past 12); within
/// a narrower range, 4 to 10 ticks evenly spaced, 1, 2 or 5 times a power of ten apart.
/// (Plotters' own log axis ticks only from the first power of ten in the range: an axis from 0.8
/// to 1.5 would have no tick below 1.)
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    if !(lo > 0.0 && hi > lo) {
        return (vec![lo], Vec::new());
    }
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let multiples = |ms: &[f64]| -> Vec<f64> {
        (first..=last)
            .flat_map(|e| ms.iter().map(move |m| tidy(m * 10f64.powi(e))))
            .filter(within)
            .collect()
    };
    let light_but = |bold: &[f64]| -> Vec<f64> {
        multiples(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
            .into_iter()
            .filter(|v| !bold.contains(v))
            .collect()
    };
    let sets: [(&[f64], usize); 4] = [
        (&[1.0], 12),
        (&[1.0, 2.0, 5.0], 12),
        (&[1.0, 2.0, 3.0, 5.0, 7.0], 8),
        (&[1.0, 1.5, 2.0, 3.0, 5.0, 7.0], 8),
    ];
    let fitting = sets
        .iter()
        .map(|(ms, most)| (multiples(ms), *most))
        .rfind(|(t, most)| (4..=*most).contains(&t.len()))
        .map(|(t, _)| t);
    if let Some(bold) = fitting {
        let light = if last - first <= 6 {
            light_but(&bold)
        } else {
            Vec::new()
        };
        return (bold, light);
    }
    let decades = multiples(&[1.0]);
    if decades.len() > 12 {
        let bold = decades.iter().copied().step_by(decades.len().div_ceil(12));
        return (bold.collect(), Vec::new());
    }
    let mut e = (hi - lo).log10().floor() as i32;
    loop {
        for m in [5.0, 2.0, 1.0] {
            let step = m * 10f64.powi(e);
            let (from, to) = ((lo / step - 1e-9).ceil(), (hi / step + 1e-9).floor());
            let ticks: Vec<f64> = (from as i64..=to as i64)
                .map(|k| tidy(k as f64 * step))
                .filter(within)
                .collect();
            if ticks.len() >= 4 {
                return (ticks, Vec::new());
            }
        }
        e -= 1;
    }
}

/// A log axis's range around `values` (those > 0): from a little below the least to a little
/// above the largest, by a twentieth of the span they cover (at least 3%) on either side.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return (0.5, 2.0);
    }
    let pad = (hi / lo).powf(0.05).max(1.03);
    (lo / pad, hi * pad)
}

/// A log axis from `lo` to `hi` ticked by [`log_ticks`]: its labelled ticks and light grid lines.
fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let (bold, light) = log_ticks(lo, hi);
    (lo..hi)
        .log_scale()
        .with_key_points(bold)
        .with_light_points(light)
}

/// Draw ratios against a baseline into an SVG at `path`: one series per column with its
/// intervals as error bars, x as [`line_chart`] draws it, y on a log scale fitted to the points,
/// the bars and 1 (where a column equals the baseline, drawn as a dashed line).
pub fn ratio_chart(
    path: &Path,
    labels: &Labels,
    series: &[Series],
    zero_drawn: bool,
) -> Result<(), String> {
    let err = |e: &dyn Debug| chart_error(path, e);
    let scale = XScale::of(series, zero_drawn);
    let points = extent(series);
    let (y_lo, y_hi) = log_range(points.iter().map(|p| p.1).chain([1.0]));
    let frame = frame(path, labels, &entries(series)).map_err(|e| err(&e))?;
    let mut chart = builder(&frame.plot, 24)
        .build_cartesian_2d((scale.lo..scale.hi).log_scale(), log_axis(y_lo, y_hi))
        .map_err(|e| err(&e))?;
    draw_log_x_mesh(&mut chart, &scale, series, labels, None, ratio_tick).map_err(|e| err(&e))?;
    let one = vec![(scale.lo, 1.0), (scale.hi, 1.0)];
    let grey = RGBColor(90, 90, 90).stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new(one, 6, 4, grey))
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let at = |x| scale.at(x, i, series.len());
        // A ratio of 0 (a round with nothing) has no place on a log axis: drawn at its bottom.
        let y_of = |y: f64| if y > 0.0 { y } else { y_lo };
        draw_with_bars(&mut chart, s, look(s.look), at, y_of).map_err(|e| err(&e))?;
    }
    frame.root.present().map_err(|e| err(&e))
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

/// One cell's latency spectra (points from [`spectrum_points`]): its corrected latency and, in
/// open loop where its logs have it, its uncorrected latency (from the actual send).
pub struct Spectrum {
    pub label: String,
    /// Which look its lines are drawn in, as [`Series::look`].
    pub look: usize,
    pub corrected: Vec<(f64, f64)>,
    pub uncorrected: Option<Vec<(f64, f64)>>,
}

/// The look of cell `i`'s line in a spectrum that pairs corrected and uncorrected latency: the
/// cell's colour (then marker) for both, the corrected line solid and the uncorrected dashed. The
/// first 24 cells look different.
fn pair_look(i: usize, uncorrected: bool) -> Look {
    Look {
        color: COLORS[i % COLORS.len()],
        dash: uncorrected.then_some((6, 4)),
        marker: MARKERS[i / COLORS.len() % MARKERS.len()],
    }
}

/// Draw latency percentile spectra into an SVG at `path`: x in nines (labelled 0%, 90%, 99%, ...),
/// y in microseconds on a log scale fitted to the lines; a marker where each line stops. Where a
/// cell has its uncorrected spectrum, it is drawn dashed in the corrected line's colour, and the
/// legend names each line corrected or uncorrected.
pub fn spectrum_chart(path: &Path, labels: &Labels, spectra: &[Spectrum]) -> Result<(), String> {
    let paired = spectra.iter().any(|s| s.uncorrected.is_some());
    let mut lines: Vec<&[(f64, f64)]> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    for s in spectra {
        if !paired {
            lines.push(&s.corrected);
            let (label, look) = (s.label.clone(), look(s.look));
            entries.push(Entry { label, look });
            continue;
        }
        lines.push(&s.corrected);
        let (label, look) = (format!("{}: corrected", s.label), pair_look(s.look, false));
        entries.push(Entry { label, look });
        if let Some(u) = &s.uncorrected {
            lines.push(u);
            let (label, look) = (format!("{}: uncorrected", s.label), pair_look(s.look, true));
            entries.push(Entry { label, look });
        }
    }
    let points: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.iter().copied()).collect();
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max).ceil();
    let (y_lo, y_hi) = log_range(points.iter().map(|p| p.1));
    let err = |e: &dyn Debug| chart_error(path, e);
    let frame = frame(path, labels, &entries).map_err(|e| err(&e))?;
    let mut chart = builder(&frame.plot, 44)
        .build_cartesian_2d(0f64..x_max, log_axis(y_lo, y_hi))
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
        .y_label_formatter(&|v| latency_tick(*v))
        .draw()
        .map_err(|e| err(&e))?;
    for (points, entry) in lines.iter().zip(&entries) {
        draw_look(&mut chart, points.to_vec(), entry.look, Marks::Last).map_err(|e| err(&e))?;
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
    fn a_log_axis_ticks_to_its_range() {
        let (bold, light) = log_ticks(0.008, 1.2);
        assert_eq!(bold, [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]);
        assert!(light.contains(&0.03) && !light.contains(&0.05), "{light:?}");
        let (bold, _) = log_ticks(4_300.0, 45_000.0);
        assert_eq!(bold, [5e3, 7e3, 1e4, 1.5e4, 2e4, 3e4], "1, 1.5, 2, 3, 5, 7");
        let (bold, _) = log_ticks(0.45, 2.2);
        assert_eq!(bold, [0.5, 0.7, 1.0, 1.5, 2.0]);
        let (bold, _) = log_ticks(0.8, 1.5);
        assert_eq!(bold, [0.8, 1.0, 1.2, 1.4], "ticks below 1 too");
        let (bold, _) = log_ticks(0.97, 1.04);
        assert!(bold.len() >= 4 && bold.contains(&1.0), "{bold:?}");
        let (bold, light) = log_ticks(1e-9, 1e9);
        assert_eq!(bold.len(), 10, "every other decade: {bold:?}");
        assert!(light.is_empty());
    }

    #[test]
    fn tick_labels_take_the_decimals_their_magnitude_needs() {
        let ratios: Vec<String> = [0.01, 0.02, 0.1, 0.15, 1.0, 1.1, 20.0]
            .map(ratio_tick)
            .into();
        assert_eq!(ratios, ["0.01", "0.02", "0.1", "0.15", "1", "1.1", "20"]);
        let latencies: Vec<String> = [20.0, 1_000.0, 1_500.0, 70_000.0, 2e6]
            .map(latency_tick)
            .into();
        assert_eq!(latencies, ["20µs", "1ms", "1.5ms", "70ms", "2s"]);
    }

    #[test]
    fn a_long_label_gets_the_legend_one_column_and_wraps() {
        let entry = |label: &str| Entry {
            label: label.into(),
            look: look(0),
        };
        let short = LegendLayout::of(&[entry("epoll"), entry("io_uring"), entry("poll")]);
        assert_eq!((short.columns, short.rows), (2, 2));
        let long = "x".repeat(60);
        assert_eq!(LegendLayout::of(&[entry("epoll"), entry(&long)]).columns, 1);
        let words = "a label of many words ".repeat(12);
        let wrapped = LegendLayout::of(&[entry(&words), entry("epoll")]);
        assert!(wrapped.rows >= 3, "{} rows", wrapped.rows);
        assert_eq!(
            wrapped.placed[1].2,
            wrapped.rows - 1,
            "the next entry below"
        );
    }

    #[test]
    fn a_text_wraps_at_spaces_and_within_a_word_only_when_it_must() {
        let lines = wrap("aaaa bbbb cccc", NOTE_PT, text_width("aaaa bbbb", NOTE_PT));
        assert_eq!(lines, ["aaaa bbbb", "cccc"]);
        let lines = wrap("abcdefgh", NOTE_PT, text_width("abc", NOTE_PT));
        assert_eq!(lines, ["abc", "def", "gh"]);
        let width = text_width("aaaa bbbb cccc", NOTE_PT);
        assert_eq!(wrap("aaaa bbbb cccc dd", NOTE_PT, width).len(), 2);
        let even = wrap_evenly("aaaa bbbb cccc dd", NOTE_PT, width);
        assert_eq!(even, ["aaaa bbbb", "cccc dd"]);
    }

    #[test]
    fn a_spectrum_pairs_its_lines_by_colour_and_no_two_cells_look_alike() {
        let looks: Vec<Look> = (0..24)
            .flat_map(|i| [pair_look(i, false), pair_look(i, true)])
            .collect();
        for (i, a) in looks.iter().enumerate() {
            assert!(
                !looks[..i].contains(a),
                "line {i} looks like an earlier one"
            );
        }
        for i in 0..24 {
            let (c, u) = (pair_look(i, false), pair_look(i, true));
            assert_eq!((c.color, c.marker), (u.color, u.marker));
            assert!(
                c.dash.is_none() && u.dash.is_some(),
                "corrected solid, uncorrected dashed"
            );
        }
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
            look: 0,
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

    /// What the layout tests read of a chart's SVG: its size, its texts and the points its series
    /// draw.
    mod svg {
        /// One element: its tag, its attributes, and its text (for `<text>`).
        pub struct Element {
            pub tag: String,
            attrs: Vec<(String, String)>,
            pub text: String,
        }

        impl Element {
            pub fn attr(&self, name: &str) -> Option<&str> {
                self.attrs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            }

            pub fn num(&self, name: &str) -> f64 {
                self.attr(name)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("<{}> without a number {name}", self.tag))
            }
        }

        /// Every element of `svg`, in order (plotters writes no nesting but the root).
        pub fn elements(svg: &str) -> Vec<Element> {
            let mut out = Vec::new();
            let mut rest = svg;
            while let Some(open) = rest.find('<') {
                rest = &rest[open + 1..];
                let close = rest.find('>').expect("a closed tag");
                let tag_text = &rest[..close];
                rest = &rest[close + 1..];
                if tag_text.starts_with('/') || tag_text.starts_with('?') {
                    continue;
                }
                let name_end = tag_text
                    .find(|c: char| c.is_whitespace() || c == '/')
                    .unwrap_or(tag_text.len());
                let tag = tag_text[..name_end].to_string();
                let mut attrs = Vec::new();
                let mut a = &tag_text[name_end..];
                while let Some(eq) = a.find("=\"") {
                    let name = a[..eq].trim().to_string();
                    let after = &a[eq + 2..];
                    let end = after.find('"').expect("a closed attribute");
                    attrs.push((name, after[..end].to_string()));
                    a = &after[end + 1..];
                }
                let text = if tag == "text" {
                    let end = rest.find("</text>").expect("a closed text");
                    unescape(rest[..end].trim())
                } else {
                    String::new()
                };
                out.push(Element { tag, attrs, text });
            }
            out
        }

        fn unescape(s: &str) -> String {
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        }
    }

    /// A box on the canvas: (left, top, right, bottom).
    type Bounds = (f64, f64, f64, f64);

    fn overlap(a: Bounds, b: Bounds) -> bool {
        a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
    }

    fn inside(p: (f64, f64), b: Bounds) -> bool {
        p.0 >= b.0 && p.0 <= b.2 && p.1 >= b.1 && p.1 <= b.3
    }

    /// Where a `<text>` lies, estimated high: 0.62 of its font size per character (above most
    /// sans-serif fonts' average), its font size and a tenth in height, placed by its anchor,
    /// its baseline shift and its rotation.
    fn text_bounds(e: &svg::Element) -> Bounds {
        let (x, y, size) = (e.num("x"), e.num("y"), e.num("font-size"));
        let w = e.text.chars().count() as f64 * size * 0.62;
        let (left, right) = match e.attr("text-anchor") {
            Some("middle") => (-w / 2.0, w / 2.0),
            Some("end") => (-w, 0.0),
            _ => (0.0, w),
        };
        let (top, bottom) = match e.attr("dy") {
            Some("0.76em") => (-0.05 * size, 1.05 * size),
            Some("-0.5ex") => (-1.1 * size, 0.1 * size),
            _ => (-0.6 * size, 0.6 * size),
        };
        match e.attr("transform") {
            // rotate(270) turns (a, b) from the anchor into (b, -a).
            Some(t) if t.starts_with("rotate(270") => (x + top, y - right, x + bottom, y - left),
            Some(t) if t.starts_with("rotate(90") => (x - bottom, y + left, x - top, y + right),
            None => (x + left, y + top, x + right, y + bottom),
            Some(t) => panic!("a text turned by {t}"),
        }
    }

    /// The points an element draws at: a line's or polyline's vertices, a marker's centre (a
    /// circle, a triangle, a square).
    fn drawn_at(e: &svg::Element) -> Vec<(f64, f64)> {
        let vertices = || -> Vec<(f64, f64)> {
            e.attr("points")
                .unwrap_or("")
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("x,y");
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        };
        match e.tag.as_str() {
            "circle" => vec![(e.num("cx"), e.num("cy"))],
            "line" => vec![(e.num("x1"), e.num("y1")), (e.num("x2"), e.num("y2"))],
            "rect" => vec![(
                e.num("x") + e.num("width") / 2.0,
                e.num("y") + e.num("height") / 2.0,
            )],
            "polyline" => vertices(),
            "polygon" => {
                let v = vertices();
                let n = v.len() as f64;
                let sum = v.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
                vec![(sum.0 / n, sum.1 / n)]
            }
            _ => Vec::new(),
        }
    }

    /// Check the layout of the chart at `path`, drawn with `legend` (its legend's labels): every
    /// text inside the canvas and over no other; the legend (its labels, and the line samples
    /// before them) clear of the plot area (the box of its grid lines); every point a series
    /// draws, other than the legend's, inside the plot area.
    fn check_layout(path: &Path, legend: &[String]) {
        let text = std::fs::read_to_string(path).unwrap();
        let elements = svg::elements(&text);
        let root = elements.iter().find(|e| e.tag == "svg").unwrap();
        let canvas = (0.0, 0.0, root.num("width"), root.num("height"));
        let texts: Vec<(&svg::Element, Bounds)> = elements
            .iter()
            .filter(|e| e.tag == "text" && !e.text.is_empty())
            .map(|e| (e, text_bounds(e)))
            .collect();
        for (i, (e, b)) in texts.iter().enumerate() {
            let within = b.0 >= canvas.0 && b.1 >= canvas.1 && b.2 <= canvas.2 && b.3 <= canvas.3;
            assert!(within, "{:?} leaves the canvas {canvas:?}: {b:?}", e.text);
            for (f, c) in &texts[..i] {
                assert!(!overlap(*b, *c), "{:?} overlaps {:?}", e.text, f.text);
            }
        }
        let grid: Vec<(f64, f64)> = elements
            .iter()
            .filter(|e| e.tag == "line" && e.attr("opacity").is_some_and(|o| o != "1"))
            .flat_map(drawn_at)
            .collect();
        assert!(!grid.is_empty(), "a grid");
        let plot = grid
            .iter()
            .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, p| {
                (b.0.min(p.0), b.1.min(p.1), b.2.max(p.0), b.3.max(p.1))
            });
        // The legend: its labels' lines (each label's first line starts with its first word).
        let legend_texts: Vec<Bounds> = texts
            .iter()
            .filter(|(e, _)| {
                e.attr("text-anchor") == Some("start")
                    && legend.iter().any(|l| l.contains(e.text.as_str()))
            })
            .map(|(_, b)| (b.0 - LABEL_AT as f64, b.1, b.2, b.3))
            .collect();
        let first_lines = legend
            .iter()
            .filter(|l| {
                texts
                    .iter()
                    .any(|(e, _)| e.attr("text-anchor") == Some("start") && l.starts_with(&e.text))
            })
            .count();
        assert_eq!(first_lines, legend.len(), "every legend label is drawn");
        let box_of = legend_texts
            .iter()
            .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |a, b| {
                (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3))
            });
        assert!(
            !overlap(box_of, plot),
            "the legend {box_of:?} covers the plot area {plot:?}"
        );
        let colours: Vec<String> = COLORS
            .iter()
            .map(|c| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2))
            .collect();
        let series_points: Vec<(f64, f64)> = elements
            .iter()
            .filter(|e| {
                let of = |a| e.attr(a).is_some_and(|c| colours.iter().any(|k| k == c));
                of("stroke") || of("fill")
            })
            .flat_map(drawn_at)
            .filter(|p| !inside(*p, box_of))
            .collect();
        assert!(series_points.len() > legend.len(), "the series are drawn");
        let near = (plot.0 - 1.0, plot.1 - 1.0, plot.2 + 1.0, plot.3 + 1.0);
        for p in series_points {
            assert!(
                inside(p, near),
                "a point at {p:?} outside the plot area {plot:?}"
            );
        }
    }

    /// 20 labels, long and alike but for their numbers, one of them too long for one line.
    fn long_labels() -> Vec<String> {
        (0..20)
            .map(|i| {
                let mut l = format!(
                    "io_uring_completion --batch 32 --batch-wait 100us --accept shared, {i} of 20"
                );
                if i == 7 {
                    l += &" and a note that goes on and on".repeat(5);
                }
                l
            })
            .collect()
    }

    fn long_words() -> (String, Vec<String>) {
        let title = "a title as long as a sweep of many columns makes it: ".repeat(3);
        let notes = vec![
            "run 20261202T065307Z-vm-completion-batch".to_string(),
            "points: the median of the per-round ratio column / io_uring_completion --batch 32 \
             --batch-wait 100us (p99 latency, paired by round); bars: its 96.9% interval"
                .to_string(),
        ];
        (title, notes)
    }

    #[test]
    fn twenty_long_labelled_series_keep_their_texts_on_the_canvas_and_the_legend_off_the_plot() {
        let dir = pollbench_test_support::Temp::new("charts-layout");
        let labels = long_labels();
        let (title, notes) = long_words();
        let words = Labels {
            title: &title,
            notes: &notes,
            x: "idle connections",
            y: "p99 latency",
        };
        let rows = [0.0, 100.0, 1_000.0, 5_000.0, 10_000.0];
        let series: Vec<Series> = labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let k = 1.0 + i as f64 / 10.0;
                let points: Vec<(f64, f64)> =
                    rows.iter().map(|&x| (x, k * (30.0 + x / 10.0))).collect();
                let bars = points.iter().map(|&(x, y)| (x, y / 1.5, y * 1.5)).collect();
                Series {
                    label: label.clone(),
                    look: i,
                    points,
                    bars,
                }
            })
            .collect();
        for axis in [YAxis::Linear, YAxis::LogMicros] {
            let path = dir.path().join("line.svg");
            line_chart(&path, &words, &series, true, axis).unwrap();
            check_layout(&path, &labels);
        }
        let ratios: Vec<Series> = series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let r = 0.02 + i as f64 * 0.1;
                Series {
                    label: s.label.clone(),
                    look: i,
                    points: rows.iter().map(|&x| (x, r)).collect(),
                    bars: rows.iter().map(|&x| (x, r / 2.0, r * 2.0)).collect(),
                }
            })
            .collect();
        let path = dir.path().join("ratio.svg");
        ratio_chart(&path, &words, &ratios, true).unwrap();
        check_layout(&path, &labels);
        let spectra: Vec<Spectrum> = labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let line = |k: f64| -> Vec<(f64, f64)> {
                    (0..=80)
                        .map(|j| (j as f64 / 20.0, k * 10f64.powf(j as f64 / 20.0)))
                        .collect()
                };
                Spectrum {
                    label: label.clone(),
                    look: i,
                    corrected: line(20.0 + i as f64),
                    uncorrected: (i % 3 != 0).then(|| line(15.0 + i as f64)),
                }
            })
            .collect();
        let legend: Vec<String> = spectra
            .iter()
            .flat_map(|s| {
                let u = s
                    .uncorrected
                    .as_ref()
                    .map(|_| format!("{}: uncorrected", s.label));
                std::iter::once(format!("{}: corrected", s.label)).chain(u)
            })
            .collect();
        let path = dir.path().join("spectrum.svg");
        spectrum_chart(&path, &words, &spectra).unwrap();
        check_layout(&path, &legend);
    }

    #[test]
    fn a_ratio_axis_labels_its_ticks_apart_and_to_their_magnitude() {
        let dir = pollbench_test_support::Temp::new("charts-ratio-ticks");
        let path = dir.path().join("ratio.svg");
        let series = [Series {
            label: "epoll".into(),
            look: 0,
            points: vec![(10.0, 0.012), (100.0, 0.3), (1000.0, 1.1)],
            bars: vec![(10.0, 0.011, 0.015), (100.0, 0.2, 0.4), (1000.0, 0.9, 1.2)],
        }];
        let words = Labels {
            title: "ratio",
            notes: &[],
            x: "connections",
            y: "msgs/s / the baseline's",
        };
        ratio_chart(&path, &words, &series, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // The y axis's tick labels: right-aligned left of the plot.
        let ticks: Vec<String> = svg::elements(&text)
            .into_iter()
            .filter(|e| e.tag == "text" && e.attr("text-anchor") == Some("end"))
            .map(|e| e.text)
            .filter(|t| !t.is_empty())
            .collect();
        for want in ["0.01", "0.1", "1"] {
            assert!(ticks.iter().any(|t| t == want), "{want} in {ticks:?}");
        }
        for (i, t) in ticks.iter().enumerate() {
            assert!(!ticks[..i].contains(t), "{t} twice in {ticks:?}");
            let v: f64 = t.parse().unwrap();
            let decimals = t.split_once('.').map_or(0, |(_, d)| d.len());
            let magnitude = (-v.log10().floor()).max(0.0) as usize;
            assert_eq!(decimals, magnitude, "{t}: the decimals of its magnitude");
        }
    }
}
