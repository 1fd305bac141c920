//! Metrics in the Prometheus text exposition format (version 0.0.4).
//!
//! A [`Registry`] holds metric families by name; each family holds one
//! series per label set. Handles ([`Counter`], [`Gauge`], [`Histogram`]) are
//! cheap clones over atomics, so hot paths update them without locks; only
//! looking a series up and rendering take the registry's lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Latency buckets in seconds, from 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A value that only goes up.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct HistogramCore {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// Observations counted in fixed buckets (cumulative on export).
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramCore>);

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram(Arc::new(HistogramCore {
            bounds: bounds.to_vec(),
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }))
    }

    /// Records one observation, in the family's unit (seconds for latency).
    pub fn observe(&self, value: f64) {
        let core = &self.0;
        if let Some(i) = core.bounds.iter().position(|b| value <= *b) {
            core.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        let micros = (value.max(0.0) * 1e6).round() as u64;
        core.sum_micros.fetch_add(micros, Ordering::Relaxed);
        core.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: &'static str,
    series: BTreeMap<String, Series>,
}

/// A set of metric families, rendered together.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

/// Label pairs, e.g. `&[("reason", "hangup")]`.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn series(
        &self,
        name: &str,
        help: &str,
        kind: &'static str,
        labels: Labels<'_>,
        make: impl FnOnce() -> Series,
    ) -> Series {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind,
            series: BTreeMap::new(),
        });
        family
            .series
            .entry(label_text(labels))
            .or_insert_with(make)
            .clone()
    }

    fn declare(&self, name: &str, help: &str, kind: &'static str) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        families.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind,
            series: BTreeMap::new(),
        });
    }

    /// Declares the counter family `name` before any of its series exists,
    /// so that it is listed (with no samples) from the first scrape.
    pub fn declare_counter(&self, name: &str, help: &str) {
        self.declare(name, help, "counter");
    }

    /// Declares the histogram family `name` before any of its series
    /// exists; see [`Registry::declare_counter`].
    pub fn declare_histogram(&self, name: &str, help: &str) {
        self.declare(name, help, "histogram");
    }

    /// The counter `name{labels}`, created at zero if new.
    pub fn counter(&self, name: &str, help: &str, labels: Labels<'_>) -> Counter {
        match self.series(name, help, "counter", labels, || {
            Series::Counter(Counter::default())
        }) {
            Series::Counter(c) => c,
            _ => Counter::default(),
        }
    }

    /// The gauge `name{labels}`, created at zero if new.
    pub fn gauge(&self, name: &str, help: &str, labels: Labels<'_>) -> Gauge {
        match self.series(name, help, "gauge", labels, || {
            Series::Gauge(Gauge::default())
        }) {
            Series::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// The histogram `name{labels}` with bucket upper bounds `bounds`
    /// (ascending), created empty if new.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: Labels<'_>,
        bounds: &[f64],
    ) -> Histogram {
        match self.series(name, help, "histogram", labels, || {
            Series::Histogram(Histogram::new(bounds))
        }) {
            Series::Histogram(h) => h,
            _ => Histogram::new(bounds),
        }
    }

    /// Every family in the text exposition format.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (labels, series) in &family.series {
                render_series(&mut out, name, labels, series);
            }
        }
        out
    }
}

fn render_series(out: &mut String, name: &str, labels: &str, series: &Series) {
    let braces = |labels: &str| {
        if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        }
    };
    match series {
        Series::Counter(c) => {
            let _ = writeln!(out, "{name}{} {}", braces(labels), c.get());
        }
        Series::Gauge(g) => {
            let _ = writeln!(out, "{name}{} {}", braces(labels), g.get());
        }
        Series::Histogram(h) => {
            let core = &h.0;
            let mut cumulative = 0;
            let sep = if labels.is_empty() { "" } else { "," };
            for (bound, count) in core.bounds.iter().zip(&core.counts) {
                cumulative += count.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
                );
            }
            let total = core.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
            let sum = core.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
            let _ = writeln!(out, "{name}_count{} {total}", braces(labels));
        }
    }
}

fn label_text(labels: Labels<'_>) -> String {
    let mut sorted: Vec<_> = labels.to_vec();
    sorted.sort_unstable();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let registry = Registry::new();
        registry
            .counter(
                "voxpipe_sessions_total",
                "Sessions ended.",
                &[("reason", "hangup")],
            )
            .add(3);
        registry
            .counter(
                "voxpipe_sessions_total",
                "Sessions ended.",
                &[("reason", "end_call")],
            )
            .inc();
        registry
            .gauge("voxpipe_active_sessions", "Live sessions.", &[])
            .set(2);
        let h = registry.histogram(
            "voxpipe_ttfb_seconds",
            "TTFB.",
            &[("service", "tts")],
            &[0.1, 1.0],
        );
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let text = registry.render();
        assert!(text.contains("# TYPE voxpipe_sessions_total counter\n"));
        assert!(text.contains("voxpipe_sessions_total{reason=\"end_call\"} 1\n"));
        assert!(text.contains("voxpipe_sessions_total{reason=\"hangup\"} 3\n"));
        assert!(text.contains("voxpipe_active_sessions 2\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_bucket{service=\"tts\",le=\"0.1\"} 1\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_bucket{service=\"tts\",le=\"1\"} 2\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_bucket{service=\"tts\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_sum{service=\"tts\"} 5.55\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_count{service=\"tts\"} 3\n"));
    }

    #[test]
    fn declared_families_are_listed_before_their_first_series() {
        let registry = Registry::new();
        registry.declare_counter("c_total", "Things.");
        let text = registry.render();
        assert_eq!(text, "# HELP c_total Things.\n# TYPE c_total counter\n");
        registry.counter("c_total", "Things.", &[("k", "v")]).inc();
        assert!(registry.render().ends_with("c_total{k=\"v\"} 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let registry = Registry::new();
        registry.counter("c", "h", &[("k", "a\"b\\c\nd")]).inc();
        assert!(registry.render().contains("c{k=\"a\\\"b\\\\c\\nd\"} 1"));
    }
}
