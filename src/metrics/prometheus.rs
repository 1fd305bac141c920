//! Metrics in the Prometheus text exposition format (version 0.0.4),
//! through `prometheus-client`, the official Rust client.
//!
//! The crate does the counting and the exposition: the metric types, label
//! escaping, bucket and float formatting, `_total` suffixes. This module is
//! the thin layer voxpipe's server needs on top: families looked up by
//! name, with label values known only at run time (a transport, an end
//! reason, a processor), created on first use. The crate's registry wants
//! every family registered up front through `&mut`; [`Registry`] keeps it
//! behind a lock with a map from name to family, so callers can ask for
//! `counter(name, help, labels)` from anywhere. The crate also leaves a
//! family out of the text until it has a series; voxpipe lists every
//! family from the first scrape, so families are registered wrapped in
//! `Listed`, which always encodes its `# HELP` and `# TYPE` lines.
//!
//! Names and help texts are written as they are exposed: a counter's name
//! ends in `_total` and a help text in a full stop. The crate adds both
//! itself, so they are taken off before registering; the exposed text is
//! what the caller wrote.
//!
//! The exposition is the Prometheus text format, not OpenMetrics, so the
//! `/metrics` content type ([`CONTENT_TYPE`]) and every series name stay as
//! they were (no `# EOF`, no `_created` samples).
//!
//! Handles are cheap clones: a [`Counter`] or [`Gauge`] is an atomic, a
//! [`Histogram`] a short lock per observation; looking a series up and
//! rendering take the registry's lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::family::{Family, MetricConstructor};

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;

/// The `Content-Type` of [`Registry::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Latency buckets in seconds, from 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Label pairs, e.g. `&[("reason", "hangup")]`.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// A series' labels as the crate encodes them, sorted by name.
type LabelSet = Vec<(String, String)>;

/// Makes a family's histograms, all with the same bucket bounds.
#[derive(Debug, Clone)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// A family exposed from its registration on, with `# HELP` and `# TYPE`
/// and no samples until its first series: the crate leaves out empty
/// families, and a scraper (and `voxpipe_*` dashboards) should see every
/// family from the first scrape.
#[derive(Debug)]
struct Listed<M>(M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// A registered family; a clone shares its series.
#[derive(Debug, Clone)]
enum Handle {
    Counter(Family<LabelSet, Counter>),
    Gauge(Family<LabelSet, Gauge>),
    Histogram(Family<LabelSet, Histogram, Buckets>),
}

#[derive(Debug, Default)]
struct Families {
    exposition: prometheus_client::registry::Registry,
    by_name: HashMap<String, Handle>,
}

/// A set of metric families, rendered together.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<Families>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The family `name`, registered with `make` if new.
    fn family(&self, name: &str, help: &str, make: impl FnOnce() -> Handle) -> Handle {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let Families {
            exposition,
            by_name,
        } = &mut *families;
        by_name
            .entry(name.to_owned())
            .or_insert_with(|| {
                let handle = make();
                let help = help.strip_suffix('.').unwrap_or(help);
                match &handle {
                    Handle::Counter(family) => {
                        let bare = name.strip_suffix("_total").unwrap_or(name);
                        exposition.register(bare, help, Listed(family.clone()));
                    }
                    Handle::Gauge(family) => {
                        exposition.register(name, help, Listed(family.clone()));
                    }
                    Handle::Histogram(family) => {
                        exposition.register(name, help, Listed(family.clone()));
                    }
                }
                handle
            })
            .clone()
    }

    fn counter_family(&self, name: &str, help: &str) -> Handle {
        self.family(name, help, || Handle::Counter(Family::default()))
    }

    fn histogram_family(&self, name: &str, help: &str, bounds: &[f64]) -> Handle {
        self.family(name, help, || {
            Handle::Histogram(Family::new_with_constructor(Buckets(bounds.into())))
        })
    }

    /// Declares the counter family `name` before any of its series exists,
    /// so that it is listed (with no samples) from the first scrape.
    pub fn declare_counter(&self, name: &str, help: &str) {
        self.counter_family(name, help);
    }

    /// Declares the histogram family `name`, with bucket upper bounds
    /// `bounds`, before any of its series exists; see
    /// [`Registry::declare_counter`].
    pub fn declare_histogram(&self, name: &str, help: &str, bounds: &[f64]) {
        self.histogram_family(name, help, bounds);
    }

    /// The counter `name{labels}`, created at zero if new. A name already
    /// used by another type gives a counter that is not exported.
    pub fn counter(&self, name: &str, help: &str, labels: Labels<'_>) -> Counter {
        match self.counter_family(name, help) {
            Handle::Counter(family) => family.get_or_create_owned(&label_set(labels)),
            _ => Counter::default(),
        }
    }

    /// The gauge `name{labels}`, created at zero if new.
    pub fn gauge(&self, name: &str, help: &str, labels: Labels<'_>) -> Gauge {
        match self.family(name, help, || Handle::Gauge(Family::default())) {
            Handle::Gauge(family) => family.get_or_create_owned(&label_set(labels)),
            _ => Gauge::default(),
        }
    }

    /// The histogram `name{labels}`, created empty if new. `bounds` (bucket
    /// upper bounds, ascending) count when the family is first made.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: Labels<'_>,
        bounds: &[f64],
    ) -> Histogram {
        match self.histogram_family(name, help, bounds) {
            Handle::Histogram(family) => family.get_or_create_owned(&label_set(labels)),
            _ => Histogram::new(bounds.iter().copied()),
        }
    }

    /// Every family in the text exposition format, in registration order.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        if prometheus_text::encode(&mut out, &families.exposition).is_err() {
            // Writing to a String cannot fail; an encoder error would leave
            // a partial text, which a scraper must not take for the truth.
            tracing::warn!("metrics exposition failed");
            out.clear();
        }
        out
    }
}

fn label_set(labels: Labels<'_>) -> LabelSet {
    let mut set: LabelSet = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    set.sort_unstable();
    set
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
            .inc_by(3);
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
        assert!(text.contains("# HELP voxpipe_sessions_total Sessions ended.\n"));
        assert!(text.contains("# TYPE voxpipe_sessions_total counter\n"));
        assert!(text.contains("voxpipe_sessions_total{reason=\"end_call\"} 1\n"));
        assert!(text.contains("voxpipe_sessions_total{reason=\"hangup\"} 3\n"));
        assert!(text.contains("# TYPE voxpipe_active_sessions gauge\n"));
        assert!(text.contains("voxpipe_active_sessions 2\n"));
        assert!(text.contains("# TYPE voxpipe_ttfb_seconds histogram\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_bucket{service=\"tts\",le=\"0.1\"} 1\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_bucket{service=\"tts\",le=\"1\"} 2\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_bucket{service=\"tts\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_sum{service=\"tts\"} 5.55\n"));
        assert!(text.contains("voxpipe_ttfb_seconds_count{service=\"tts\"} 3\n"));
        assert!(
            !text.contains("_created") && !text.contains("# EOF"),
            "{text}"
        );
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
    fn labels_are_sorted_and_values_escaped() {
        let registry = Registry::new();
        registry
            .counter("c_total", "h", &[("z", "1"), ("k", "a\"b\\c\nd")])
            .inc();
        let text = registry.render();
        assert!(
            text.contains("c_total{k=\"a\\\"b\\\\c\\nd\",z=\"1\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_name_taken_by_another_type_is_not_exported_twice() {
        let registry = Registry::new();
        registry.gauge("g", "h", &[]).set(1);
        registry.counter("g", "h", &[]).inc();
        let text = registry.render();
        assert_eq!(text.matches("# TYPE").count(), 1, "{text}");
        assert!(text.contains("g 1\n"), "{text}");
    }
}
