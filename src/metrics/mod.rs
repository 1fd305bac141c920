//! Measurements: latency histograms for percentiles, and the Prometheus
//! text format the server exports.

mod histogram;
pub mod prometheus;

pub use histogram::LatencyHistogram;
