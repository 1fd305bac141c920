//! Measurements: latency histograms for percentiles, the Prometheus text
//! format the server exports, and each turn's latency breakdown.

mod histogram;
pub mod prometheus;
mod turn_latency;

pub use histogram::LatencyHistogram;
pub use turn_latency::{TurnLatency, TurnLatencyTracker};
