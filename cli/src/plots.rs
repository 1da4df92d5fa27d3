//! `baler evaluate --plots DIR`: histograms taken in the same single pass as the figures,
//! with fixed bins (a column's range from the container header, the bound, decades of the
//! relative response), drawn as PNG with plotters (bitmap backend, text through ab_glyph
//! with a bundled DejaVu Sans, so no system font library is needed).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;

use baler::evaluate::ColumnMetrics;
use baler::{Bound, Element, Header, Layout};

/// Bins of a value distribution and of the residual.
const BINS: usize = 100;
/// The relative response's bins: decades of `|r|` from 1e-12 to 1e4, eight bins a decade.
const RESP_LO: f64 = -12.0;
const RESP_HI: f64 = 4.0;
const RESP_PER_DECADE: f64 = 8.0;
const RESP_BINS: usize = ((RESP_HI - RESP_LO) * RESP_PER_DECADE) as usize;

/// Fixed-range bins; values outside go to `below` / `above`.
#[derive(Debug, Clone)]
struct Bins {
    lo: f64,
    hi: f64,
    /// Bins per unit.
    scale: f64,
    counts: Vec<u64>,
    below: u64,
    above: u64,
}

impl Bins {
    fn new(lo: f64, hi: f64, n: usize) -> Bins {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            // A constant column: one unit-wide window around it.
            (lo - 0.5 * lo.abs().max(1.0), lo + 0.5 * lo.abs().max(1.0))
        };
        Bins {
            lo,
            hi,
            scale: n as f64 / (hi - lo),
            counts: vec![0; n],
            below: 0,
            above: 0,
        }
    }

    #[inline]
    fn add(&mut self, v: f64) {
        let n = self.counts.len();
        let t = (v - self.lo) * self.scale;
        if t < 0.0 {
            self.below += 1;
        } else if v > self.hi {
            self.above += 1;
        } else {
            self.counts[(t as usize).min(n - 1)] += 1;
        }
    }

    fn width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len() as f64
    }

    fn outside(&self) -> u64 {
        self.below + self.above
    }
}

/// The histograms of one column.
#[derive(Debug, Clone)]
struct ColumnHist {
    /// Distributions binned by `log10 x` (a positive column spanning over three decades).
    log_x: bool,
    original: Bins,
    decoded: Bins,
    /// `x' − x` (an absolute bound), or `(x' − x)/x` (a point-wise relative bound), over
    /// ±1.1 × the bound; none for a lossless column.
    residual: Option<Bins>,
    /// Whether `residual` is relative.
    relative: bool,
    /// `log10 |(x' − x)/x|` over finite `x ≠ 0`, `x' ≠ x`.
    response: Bins,
    /// Values reproduced exactly (response 0), not in `response`.
    exact: u64,
}

/// Histograms of every column, fed chunk by chunk beside the [`baler::evaluate::Evaluation`].
pub struct Histograms {
    columns: Vec<ColumnHist>,
    width: usize,
    /// A field's middle slice, sampled (rank ≥ 2).
    slice: Option<Slice>,
    /// Values seen so far.
    seen: u64,
}

/// Most rows and columns of a slice image: larger slices are sampled with a stride.
const SLICE_MAX: u64 = 300;

/// The middle 2-D slice (over the last two axes) of a field, every `step`-th row and column,
/// captured as it streams past.
#[derive(Debug, Clone)]
struct Slice {
    /// Index along the leading axes (flattened) of the slice.
    index: u64,
    /// Flat position of its first value.
    start: u64,
    rows: u64,
    cols: u64,
    step: u64,
    original: Vec<f64>,
    decoded: Vec<f64>,
}

impl Slice {
    fn new(shape: &[u64]) -> Option<Slice> {
        if shape.len() < 2 || shape.contains(&baler::UNKNOWN) {
            return None;
        }
        let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let planes: u64 = shape[..shape.len() - 2].iter().product();
        if rows == 0 || cols == 0 || planes == 0 {
            return None;
        }
        let index = planes / 2;
        let step = rows.max(cols).div_ceil(SLICE_MAX).max(1);
        let n = (rows.div_ceil(step) * cols.div_ceil(step)) as usize;
        Some(Slice {
            index,
            start: index * rows * cols,
            rows,
            cols,
            step,
            original: vec![f64::NAN; n],
            decoded: vec![f64::NAN; n],
        })
    }

    /// Sampled width and height.
    fn dims(&self) -> (u64, u64) {
        (self.cols.div_ceil(self.step), self.rows.div_ceil(self.step))
    }

    fn add<T: Element>(&mut self, first: u64, original: &[T], decoded: &[T]) {
        let end = self.start + self.rows * self.cols;
        let (lo, hi) = (
            first.max(self.start),
            (first + original.len() as u64).min(end),
        );
        let w = self.dims().0;
        for pos in lo..hi {
            let (r, c) = (
                (pos - self.start) / self.cols,
                (pos - self.start) % self.cols,
            );
            if r % self.step == 0 && c % self.step == 0 {
                let k = ((r / self.step) * w + c / self.step) as usize;
                self.original[k] = original[(pos - first) as usize].to_f64();
                self.decoded[k] = decoded[(pos - first) as usize].to_f64();
            }
        }
    }
}

impl Histograms {
    /// Bins from the container header: each column's range (its statistics) and bound.
    pub fn new(h: &Header) -> Histograms {
        let width = match h.spec.layout {
            Layout::Table => h.record_len as usize,
            Layout::Field => 1,
        };
        let columns = h
            .bounds
            .iter()
            .zip(&h.stats)
            .map(|(b, s)| {
                // The stored range, widened by the bound so that reconstructions of the
                // extreme values stay in the edge bins.
                let log_x = s.finite > 0 && s.min > 0.0 && s.max / s.min > 1e3;
                // How far a reconstruction may move the extreme values.
                let reach = match b.bound {
                    Bound::Abs(e) => e,
                    Bound::PwRel(r) => r * s.min.abs().max(s.max.abs()),
                    Bound::Lossless => 0.0,
                };
                let (lo, hi) = if log_x {
                    (s.min.log10() - 0.01, (s.max + reach).log10() + 0.01)
                } else if s.finite > 0 {
                    (s.min - reach, s.max + reach)
                } else {
                    (0.0, 1.0)
                };
                let lim = b.bound.value();
                ColumnHist {
                    log_x,
                    original: Bins::new(lo, hi, BINS),
                    decoded: Bins::new(lo, hi, BINS),
                    residual: (lim > 0.0).then(|| Bins::new(-1.1 * lim, 1.1 * lim, BINS)),
                    relative: matches!(b.bound, Bound::PwRel(_)),
                    response: Bins::new(RESP_LO, RESP_HI, RESP_BINS),
                    exact: 0,
                }
            })
            .collect();
        Histograms {
            columns,
            width,
            slice: match h.spec.layout {
                Layout::Field => Slice::new(&h.spec.shape),
                Layout::Table => None,
            },
            seen: 0,
        }
    }

    /// Adds whole records of the original and their reconstruction.
    pub fn add<T: Element>(&mut self, original: &[T], decoded: &[T]) {
        if let Some(s) = &mut self.slice {
            s.add(self.seen, original, decoded);
        }
        self.seen += original.len() as u64;
        let w = self.width;
        for (row, back) in original.chunks_exact(w).zip(decoded.chunks_exact(w)) {
            for ((&x, &y), c) in row.iter().zip(back).zip(&mut self.columns) {
                if !x.is_finite() || !y.is_finite() {
                    continue;
                }
                let (xf, yf) = (x.to_f64(), y.to_f64());
                if c.log_x {
                    // Values ≤ 0 (a reconstruction just below a tiny original) fall below.
                    let log = |v: f64| {
                        if v > 0.0 {
                            log10_abs(v)
                        } else {
                            f64::NEG_INFINITY
                        }
                    };
                    c.original.add(log(xf));
                    c.decoded.add(log(yf));
                } else {
                    c.original.add(xf);
                    c.decoded.add(yf);
                }
                let d = yf - xf;
                if let Some(r) = &mut c.residual {
                    if !c.relative {
                        r.add(d);
                    } else if xf != 0.0 {
                        r.add(d / xf);
                    }
                }
                if d == 0.0 {
                    c.exact += 1;
                } else if xf != 0.0 {
                    c.response.add(log10_abs(d / xf));
                }
            }
        }
    }
}

/// `log10 |v|` for finite `v ≠ 0`, to about 1e-5 (ample for bins an eighth of a decade wide,
/// and several times faster than `f64::log10`): the exponent, plus `ln m` of the mantissa
/// `m ∈ [1, 2)` by the series in `t = (m − 1)/(m + 1)`.
#[inline]
fn log10_abs(v: f64) -> f64 {
    let bits = v.to_bits() & !(1u64 << 63);
    let exp = ((bits >> 52) as i64 - 1023) as f64;
    let m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let ln_m = 2.0 * t * (1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0))));
    (exp * std::f64::consts::LN_2 + ln_m) * std::f64::consts::LOG10_E
}

/// Registers the bundled font (once).
fn font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
    });
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e}")
}

/// A file name for a column: its index and a tame version of its name.
fn file_name(j: usize, name: &str) -> String {
    let tame: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    format!("{j:03}_{tame}.png")
}

/// Writes one PNG per column (distributions, residual, response; `NNN_name.png`, or
/// `field.png` for a field) and an overview page with a small panel per column
/// (`overview.png`) into `dir`, and each as SVG too with `svg`; returns the files written.
pub fn write(
    dir: &Path,
    h: &Header,
    hist: &Histograms,
    metrics: &[ColumnMetrics],
    names: &[String],
    svg: bool,
) -> Result<Vec<PathBuf>> {
    font();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    // Draws one page as PNG and, with `svg`, again as SVG beside it.
    macro_rules! page {
        ($path:expr, $size:expr, |$root:ident| $draw:expr) => {{
            let path: PathBuf = $path;
            let written = (|| -> Result<()> {
                {
                    let $root = BitMapBackend::new(&path, $size).into_drawing_area();
                    $draw?;
                    $root.present().map_err(plot_err)?;
                }
                if svg {
                    let svg_path = path.with_extension("svg");
                    let $root = SVGBackend::new(&svg_path, $size).into_drawing_area();
                    $draw?;
                    $root.present().map_err(plot_err)?;
                }
                Ok(())
            })();
            written.with_context(|| format!("writing {}", path.display()))?;
            if svg {
                files.push(path.with_extension("svg"));
            }
            files.push(path);
        }};
    }
    for (j, (c, m)) in hist.columns.iter().zip(metrics).enumerate() {
        let path = dir.join(match h.spec.layout {
            Layout::Table => file_name(j, &names[j]),
            Layout::Field => "field.png".into(),
        });
        page!(path, (1800, 560), |root| column_page(
            &root,
            c,
            m,
            &names[j],
            h.bounds[j].bound
        ));
    }
    if let Some(slice) = &hist.slice {
        page!(dir.join("field_slice.png"), (1800, 680), |root| slice_page(
            &root,
            slice,
            &h.spec.shape,
            h.bounds[0].bound
        ));
    }
    let size = overview_layout(hist.columns.len()).2;
    page!(dir.join("overview.png"), size, |root| overview(
        &root, hist, names
    ));
    Ok(files)
}

/// A colour on a viridis-like ramp, `t` in [0, 1]; grey for NaN.
fn ramp(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    if t.is_nan() {
        return RGBColor(160, 160, 160);
    }
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let k = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - k as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + f * (f64::from(b) - f64::from(a))).round() as u8;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Blue (−1) through white (0) to red (+1); grey for NaN.
fn diverging(t: f64) -> RGBColor {
    if t.is_nan() {
        return RGBColor(160, 160, 160);
    }
    let t = t.clamp(-1.0, 1.0);
    let fade = |c: u8, f: f64| (255.0 - f * (255.0 - f64::from(c))).round() as u8;
    if t < 0.0 {
        RGBColor(fade(33, -t), fade(102, -t), fade(172, -t))
    } else {
        RGBColor(fade(178, t), fade(24, t), fade(43, t))
    }
}

/// One image panel: `values` (`w × h`, row-major) coloured by `color`.
fn image<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    (w, h): (u64, u64),
    step: u64,
    values: &[f64],
    color: &dyn Fn(f64) -> RGBColor,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..(w * step) as f64, ((h * step) as f64)..0.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("last axis")
        .y_desc("second-to-last axis")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    let s = step as f64;
    chart
        .draw_series((0..h).flat_map(|r| {
            (0..w).map(move |c| {
                let v = values[(r * w + c) as usize];
                let (x, y) = (c as f64 * s, r as f64 * s);
                Rectangle::new([(x, y), (x + s, y + s)], color(v).filled())
            })
        }))
        .map_err(plot_err)?;
    Ok(())
}

/// The middle slice of a field: original, reconstruction (one colour scale) and error map.
fn slice_page<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    s: &Slice,
    shape: &[u64],
    bound: Bound,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let lead = &shape[..shape.len() - 2];
    let mut idx = Vec::new();
    let mut rest = s.index;
    for &d in lead.iter().rev() {
        idx.push((rest % d.max(1)).to_string());
        rest /= d.max(1);
    }
    idx.reverse();
    idx.extend(["·".to_string(), "·".to_string()]);
    let relative = matches!(bound, Bound::PwRel(_));
    let (title, body) = root.split_vertically(44);
    let finite = s.original.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    title
        .draw_text(
            &format!(
                "slice [{}] of {}{}: values {} .. {} (viridis), error {} over ±{} (blue - white - red)",
                idx.join(", "),
                baler::array::shape_string(shape),
                if s.step > 1 {
                    format!(", every {}th row and column", s.step)
                } else {
                    String::new()
                },
                sci(&lo),
                sci(&hi),
                if relative { "(x' - x)/x" } else { "x' - x" },
                sci(&bound.value())
            ),
            &("sans-serif", 20).into_font().color(&BLACK),
            (16, 12),
        )
        .map_err(plot_err)?;
    let panels = body.split_evenly((1, 3));
    let dims = s.dims();
    let scaled = |v: f64| ramp((v - lo) / span);
    image(&panels[0], "original", dims, s.step, &s.original, &scaled)?;
    image(
        &panels[1],
        "reconstructed",
        dims,
        s.step,
        &s.decoded,
        &scaled,
    )?;
    let err: Vec<f64> = s
        .original
        .iter()
        .zip(&s.decoded)
        .map(|(x, y)| match (relative, y - x) {
            (true, d) if d != 0.0 => d / x,
            (_, d) => d,
        })
        .collect();
    let e = if bound.value() > 0.0 {
        bound.value()
    } else {
        1.0
    };
    let label = if relative {
        "error (x' - x)/x"
    } else {
        "error x' - x"
    };
    image(&panels[2], label, dims, s.step, &err, &|v| diverging(v / e))?;
    Ok(())
}

/// Upper end of a log count axis.
fn top(counts: &[u64]) -> f64 {
    (counts.iter().copied().max().unwrap_or(1).max(1) as f64) * 2.0
}

/// A step outline of a histogram, counts floored at the axis bottom for the log scale.
fn steps(b: &Bins) -> Vec<(f64, f64)> {
    let w = b.width();
    let mut pts = Vec::with_capacity(2 * b.counts.len() + 2);
    pts.push((b.lo, 0.5));
    for (k, &n) in b.counts.iter().enumerate() {
        let y = (n as f64).max(0.5);
        pts.push((b.lo + k as f64 * w, y));
        pts.push((b.lo + (k + 1) as f64 * w, y));
    }
    pts.push((b.hi, 0.5));
    pts
}

fn sci(v: &f64) -> String {
    if *v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e-2 && v.abs() < 1e4 {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// Distributions of the original and the reconstruction, overlaid.
fn distributions<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    c: &ColumnHist,
    name: &str,
    label_size: u32,
    legend: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let ymax = top(&c.original.counts).max(top(&c.decoded.counts));
    let caption = if c.original.outside() > 0 {
        format!(
            "{name} ({} values outside the stored range)",
            c.original.outside()
        )
    } else {
        name.to_string()
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", label_size + 4))
        .margin(8)
        .x_label_area_size(label_size * 3)
        .y_label_area_size(label_size * 4)
        .build_cartesian_2d(c.original.lo..c.original.hi, (0.5f64..ymax).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(if c.log_x {
            format!("{name} (log scale)")
        } else {
            name.to_string()
        })
        .y_desc("values per bin")
        .x_label_formatter(&|v| {
            if c.log_x {
                sci(&10f64.powf(*v))
            } else {
                sci(v)
            }
        })
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .x_labels(5)
        .label_style(("sans-serif", label_size))
        .draw()
        .map_err(plot_err)?;
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    chart
        .draw_series(LineSeries::new(steps(&c.original), blue.stroke_width(3)))
        .map_err(plot_err)?
        .label("original")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(steps(&c.decoded), orange.stroke_width(1)))
        .map_err(plot_err)?
        .label("reconstructed")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], orange));
    if legend {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", label_size))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(plot_err)?;
    }
    Ok(())
}

/// Bars of a histogram.
fn bars(b: &Bins, color: RGBColor) -> Vec<Rectangle<(f64, f64)>> {
    let w = b.width();
    b.counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(k, &n)| {
            let x0 = b.lo + k as f64 * w;
            Rectangle::new([(x0, 0.5), (x0 + w, n as f64)], color.filled())
        })
        .collect()
}

fn column_page<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    c: &ColumnHist,
    m: &ColumnMetrics,
    name: &str,
    bound: Bound,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(plot_err)?;
    let (title, body) = root.split_vertically(50);
    let (max_err, what) = match bound {
        Bound::PwRel(_) => (m.max_rel_error, "max |x'-x|/|x|"),
        _ => (m.max_abs_error, "max |x'-x|"),
    };
    title
        .draw_text(
            &format!(
                "{name}: {what} = {max_err:.3e} ({:.4} of the bound {}), RMSE {:.3e}, PSNR {}",
                m.error_over_bound(),
                match bound {
                    Bound::Abs(e) => format!("{e:.3e}"),
                    Bound::PwRel(r) => format!("{r:.3e}·|x|"),
                    Bound::Lossless => "0: lossless".into(),
                },
                m.rmse(),
                match m.psnr_db() {
                    Some(p) if p.is_finite() => format!("{p:.1} dB"),
                    Some(_) => "inf".into(),
                    None => "-".into(),
                }
            ),
            &("sans-serif", 24).into_font().color(&BLACK),
            (20, 14),
        )
        .map_err(plot_err)?;
    let panels = body.split_evenly((1, 3));
    distributions(&panels[0], c, name, 16, true)?;

    // The residual (relative under a point-wise relative bound), with the bound marked.
    let lim = bound.value();
    let (caption, x_desc, mark) = if c.relative {
        (
            "relative error (x' - x)/x",
            format!("(x' - x)/x ({name})"),
            format!("bound ±{lim:.2e}·|x|"),
        )
    } else {
        (
            "residual x' - x",
            format!("x' - x ({name})"),
            format!("bound ±{lim:.2e}"),
        )
    };
    match &c.residual {
        Some(r) => {
            let ymax = top(&r.counts);
            let mut chart = ChartBuilder::on(&panels[1])
                .caption(caption, ("sans-serif", 20))
                .margin(8)
                .x_label_area_size(48)
                .y_label_area_size(64)
                .build_cartesian_2d(r.lo..r.hi, (0.5f64..ymax).log_scale())
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc("values per bin")
                .x_label_formatter(&sci)
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .x_labels(5)
                .label_style(("sans-serif", 16))
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series(bars(r, RGBColor(44, 160, 44)))
                .map_err(plot_err)?;
            mark_bound(
                &mut chart,
                &[-lim, lim],
                ymax,
                (mark, r.lo + 0.02 * (r.hi - r.lo)),
            )?;
        }
        None => {
            panels[1]
                .draw_text(
                    "lossless column: every value bit-exact",
                    &("sans-serif", 20).into_font().color(&BLACK),
                    (40, 200),
                )
                .map_err(plot_err)?;
        }
    }

    // The relative response, by decades: the decades it occupies, and one more each side.
    let b = &c.response;
    let ymax = top(&b.counts);
    let used: Vec<usize> = (0..b.counts.len()).filter(|&k| b.counts[k] > 0).collect();
    let (mut x0, mut x1) = match (used.first(), used.last()) {
        (Some(&f), Some(&l)) => (
            (b.lo + f as f64 * b.width()).floor() - 1.0,
            (b.lo + (l + 1) as f64 * b.width()).ceil() + 1.0,
        ),
        _ => (b.lo, b.hi),
    };
    // A point-wise relative bound is a decade on this axis: keep it in view, marked.
    let rel_mark = match bound {
        Bound::PwRel(r) => Some(r.log10()),
        _ => None,
    };
    if let Some(m) = rel_mark {
        x0 = x0.min(m.floor() - 1.0);
        x1 = x1.max(m.ceil() + 1.0);
    }
    let mut chart = ChartBuilder::on(&panels[2])
        .caption(
            format!(
                "relative response, {} values exact, x = 0 left out",
                c.exact
            ),
            ("sans-serif", 20),
        )
        .margin(8)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x0.max(b.lo)..x1.min(b.hi), (0.5f64..ymax).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("log10 |(x' - x) / x|")
        .y_desc("values per bin")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(bars(b, RGBColor(148, 103, 189)))
        .map_err(plot_err)?;
    if let Some(m) = rel_mark.filter(|m| (b.lo..b.hi).contains(m)) {
        let label = (format!("bound {lim:.2e}"), m - 0.22 * (x1 - x0));
        mark_bound(&mut chart, &[m], ymax, label)?;
    }
    Ok(())
}

/// Marks a bound on a histogram: a red vertical line at each of `xs`, and `label` at its x.
fn mark_bound<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, LogCoord<f64>>,
    >,
    xs: &[f64],
    ymax: f64,
    (label, at): (String, f64),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let red = RGBColor(214, 39, 40);
    for &x in xs {
        chart
            .draw_series(LineSeries::new(
                vec![(x, 0.5), (x, ymax)],
                red.stroke_width(2),
            ))
            .map_err(plot_err)?;
    }
    chart
        .draw_series(std::iter::once(Text::new(
            label,
            (at, ymax / 2.0),
            ("sans-serif", 16).into_font().color(&red),
        )))
        .map_err(plot_err)?;
    Ok(())
}

/// One small distribution panel per column.
/// Panels across and down of the overview, and its size in pixels.
fn overview_layout(n: usize) -> (usize, usize, (u32, u32)) {
    let cols = n.clamp(1, 4);
    let rows = n.div_ceil(cols);
    (cols, rows, (cols as u32 * 450, rows as u32 * 320 + 40))
}

fn overview<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    hist: &Histograms,
    names: &[String],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (cols, rows, _) = overview_layout(hist.columns.len());
    root.fill(&WHITE).map_err(plot_err)?;
    let (title, body) = root.split_vertically(40);
    title
        .draw_text(
            "original (blue) and reconstructed (orange) distributions",
            &("sans-serif", 22).into_font().color(&BLACK),
            (12, 10),
        )
        .map_err(plot_err)?;
    let panels = body.split_evenly((rows, cols));
    for (j, c) in hist.columns.iter().enumerate() {
        distributions(&panels[j], c, &names[j], 12, false)?;
    }
    Ok(())
}

/// The loss curve of `baler train`: training and held-out loss per epoch, log scale.
pub fn loss_curve(path: &Path, train: &[f32], held_out: &[f32]) -> Result<()> {
    font();
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let all = train.iter().chain(held_out).map(|&v| f64::from(v));
    let finite: Vec<f64> = all.filter(|v| v.is_finite() && *v > 0.0).collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(0.0f64, f64::max);
    // The losses' log10 on a linear axis labelled with the losses themselves: a log scale
    // that has labels even when the curve spans less than a decade.
    let (lo, hi) = if lo <= hi {
        let pad = ((hi / lo).log10() * 0.1).max(0.02);
        (lo.log10() - pad, hi.log10() + pad)
    } else {
        (-3.0, 0.0)
    };
    let n = train.len().max(held_out.len()).max(1);
    let epochs = n as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "baler train: loss per epoch (MSE, normalized units)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(100)
        .build_cartesian_2d(0.5..epochs + 0.5, lo..hi)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss (log scale)")
        .x_labels(n.min(20) + 1)
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{:.3e}", 10f64.powf(*v)))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(plot_err)?;
    let series = [
        ("training", train, RGBColor(31, 119, 180)),
        ("held-out", held_out, RGBColor(255, 127, 14)),
    ];
    for (label, values, color) in series {
        let pts: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite() && **v > 0.0)
            .map(|(e, &v)| ((e + 1) as f64, f64::from(v).log10()))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_log10_is_close() {
        for v in [
            1e-300, 3.7e-12, 0.001, 0.5, 1.0, 1.999, 7.0, 123.456, 9.9e3, 1e300, -2.5e-3,
        ] {
            let (a, b) = (super::log10_abs(v), f64::abs(v).log10());
            assert!((a - b).abs() < 2e-5, "{v}: {a} vs {b}");
        }
    }
}
