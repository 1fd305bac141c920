//! Measurements: latency histograms and the Prometheus text format.

mod histogram;

pub use histogram::LatencyHistogram;
