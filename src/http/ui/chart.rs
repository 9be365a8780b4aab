//! The dashboard's charts, drawn on the server: the geometry is worked out here and the
//! templates write it as SVG, styled by CSS classes (the Content-Security-Policy allows no
//! inline styles). Every number a chart shows is also on the page as text.

use chrono::{DateTime, Utc};

use super::thousands;

/// A data series of a stacked chart: its name in the legend and its CSS class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Series {
    pub name: &'static str,
    pub class: &'static str,
}

/// The series of the status charts, bottom up: events by the status they brought, then
/// (on the overview only) events of other types.
pub(crate) const STATUS_SERIES: [Series; 5] = [
    Series {
        name: "Delivered",
        class: "s-delivered",
    },
    Series {
        name: "Read",
        class: "s-read",
    },
    Series {
        name: "Failed",
        class: "s-failed",
    },
    Series {
        name: "Other status",
        class: "s-other",
    },
    Series {
        name: "Other event types",
        class: "s-event",
    },
];

/// One column of a stacked chart: when, and a value per series.
pub(crate) struct Column {
    pub at: DateTime<Utc>,
    pub values: Vec<i64>,
}

/// A chart drawn twice: for wide screens and for phones (an SVG scales its text with
/// it, so one drawing cannot be legible on both). CSS shows the one that fits.
pub(crate) struct Drawn {
    pub wide: StackedBars,
    pub narrow: StackedBars,
}

/// [`stacked`] at both sizes.
pub(crate) fn stacked_both(
    columns: &[Column],
    series: &[Series],
    time_format: &str,
    what: &str,
) -> Drawn {
    Drawn {
        wide: stacked(columns, series, time_format, what, 960, 240),
        narrow: stacked(columns, series, time_format, what, 360, 200),
    }
}

/// A stacked bar chart, ready to be written as SVG.
pub(crate) struct StackedBars {
    pub width: u32,
    pub height: u32,
    pub segments: Vec<Segment>,
    pub ticks: Vec<Tick>,
    /// The horizontal lines at the top and the middle of the scale, with their values.
    pub grid: Vec<Tick>,
    /// A sentence describing the chart, for screen readers.
    pub label: String,
}

pub(crate) struct Segment {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub class: &'static str,
    /// The tooltip: when, which series, how many.
    pub title: String,
}

/// A label on an axis (or a grid line's value) at `x`, `y`.
pub(crate) struct Tick {
    pub x: u32,
    pub y: u32,
    pub text: String,
}

/// Room left of the plot for the scale, and below it for the time labels.
const LEFT: u32 = 44;
const BOTTOM: u32 = 22;
const TOP: u32 = 8;
/// The widest a bar gets (a batch of one hour is one bar, not a wall).
const MAX_BAR: u32 = 40;
/// Room a time label needs.
const LABEL_W: u32 = 84;

/// A stacked bar per column, `series` bottom up, in a `width` × `height` drawing; as many
/// columns get a time label (written with `time_format`, a strftime pattern) as fit.
pub(crate) fn stacked(
    columns: &[Column],
    series: &[Series],
    time_format: &str,
    what: &str,
    width: u32,
    height: u32,
) -> StackedBars {
    let plot_w = width - LEFT;
    let plot_h = height - TOP - BOTTOM;
    let label_every = (columns.len() as u32 * LABEL_W).div_ceil(plot_w).max(1) as usize;
    let max = columns
        .iter()
        .map(|c| c.values.iter().sum::<i64>())
        .max()
        .unwrap_or(0);
    let scale = nice_ceiling(max);
    let slot = plot_w / (columns.len().max(1) as u32);
    let bar_w = (slot * 4 / 5).clamp(1, MAX_BAR);
    let mut segments = Vec::new();
    let mut ticks = Vec::new();
    for (i, column) in columns.iter().enumerate() {
        let x = LEFT + i as u32 * slot + (slot - bar_w) / 2;
        let mut bottom = TOP + plot_h;
        for (value, s) in column.values.iter().zip(series) {
            if *value <= 0 {
                continue;
            }
            let h = ((*value as f64 / scale as f64) * plot_h as f64)
                .round()
                .max(1.0) as u32;
            let h = h.min(bottom - TOP);
            bottom -= h;
            segments.push(Segment {
                x,
                y: bottom,
                w: bar_w,
                h,
                class: s.class,
                title: format!(
                    "{} UTC, {}: {}",
                    column.at.format(time_format),
                    s.name,
                    thousands(*value)
                ),
            });
        }
        if i % label_every == 0 {
            ticks.push(Tick {
                x: x + bar_w / 2,
                y: height - 6,
                text: column.at.format(time_format).to_string(),
            });
        }
    }
    let grid = [scale, scale / 2]
        .into_iter()
        .filter(|v| *v > 0)
        .map(|v| Tick {
            x: LEFT - 6,
            y: TOP + plot_h - (v as f64 / scale as f64 * plot_h as f64).round() as u32,
            text: thousands(v),
        })
        .collect();
    StackedBars {
        width,
        height,
        segments,
        ticks,
        grid,
        label: format!("{what}: a bar per column, at most {}", thousands(max)),
    }
}

impl StackedBars {
    /// Where the plot's left edge is (the scale's axis).
    pub fn left(&self) -> u32 {
        LEFT
    }

    /// Where the plot's bottom edge is.
    pub fn base(&self) -> u32 {
        self.height - BOTTOM
    }
}

/// The smallest of 1, 2, 5 times a power of ten at or above `n` (at least 1), so that the
/// scale's lines fall on round numbers.
fn nice_ceiling(n: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= n {
                return step.saturating_mul(m).max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// One stage of a funnel: a bar whose length is its share of the first stage.
pub(crate) struct Stage {
    pub name: &'static str,
    pub class: &'static str,
    /// The bar's length, in thousandths of the full one.
    pub w: u32,
    pub text: String,
}

/// A funnel of `(name, class, value)` stages; shares are of the first stage's value. Each
/// stage is a row of the page with a bar drawn to the row's width.
pub(crate) fn funnel(stages: &[(&'static str, &'static str, i64)]) -> Vec<Stage> {
    let total = stages.first().map_or(0, |s| s.2);
    stages
        .iter()
        .enumerate()
        .map(|(i, &(name, class, value))| Stage {
            name,
            class,
            w: if total > 0 {
                (value as f64 / total as f64 * 1000.0).round() as u32
            } else {
                0
            },
            text: if i == 0 {
                thousands(value)
            } else {
                format!("{} ({})", thousands(value), super::percent(value, total))
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_end_on_round_numbers() {
        let got: Vec<i64> = [0, 1, 2, 3, 7, 10, 11, 40, 999, 1001]
            .into_iter()
            .map(nice_ceiling)
            .collect();
        assert_eq!(got, [1, 1, 2, 5, 10, 10, 20, 50, 1000, 2000]);
    }

    #[test]
    fn stacked_bars_fit_the_plot_and_keep_their_order() {
        let series = [
            Series {
                name: "a",
                class: "a",
            },
            Series {
                name: "b",
                class: "b",
            },
        ];
        let columns: Vec<Column> = (0..24)
            .map(|h| Column {
                at: DateTime::from_timestamp(h * 3600, 0).unwrap(),
                values: vec![h, 2 * h],
            })
            .collect();
        let chart = stacked(&columns, &series, "%H:00", "test", 720, 200);
        // Column 0 is empty; each other column has both segments, `a` below `b`.
        assert_eq!(chart.segments.len(), 46);
        for pair in chart.segments.chunks(2) {
            assert_eq!((pair[0].class, pair[1].class), ("a", "b"));
            assert_eq!(pair[1].y + pair[1].h, pair[0].y);
            assert!(pair[0].y + pair[0].h <= chart.base());
            assert!(pair[1].y >= TOP);
        }
        // The tallest column (69) reaches 69/100 of the plot.
        let last = &chart.segments[44..];
        let top = last[1].y;
        assert_eq!(chart.base() - top, (69.0f64 / 100.0 * 170.0).round() as u32);
        // 24 labels of 84 need three plots of 676: every third column has one.
        assert_eq!(
            chart
                .ticks
                .iter()
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>(),
            [
                "00:00", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00"
            ]
        );
        assert_eq!(chart.grid[0].text, "100");
    }

    #[test]
    fn a_funnel_is_shares_of_its_first_stage() {
        let f = funnel(&[("m", "m", 200), ("d", "d", 150), ("r", "r", 50)]);
        let widths: Vec<u32> = f.iter().map(|s| s.w).collect();
        assert_eq!(widths, [1000, 750, 250]);
        assert_eq!(f[1].text, "150 (75.0%)");
        let empty = funnel(&[("m", "m", 0), ("d", "d", 0)]);
        assert!(empty.iter().all(|s| s.w == 0));
    }
}
