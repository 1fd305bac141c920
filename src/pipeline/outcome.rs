//! [`PipelineOutcome`]: how a pipeline ended.

use crate::frame::{ErrorFrame, MetricsData};

/// How a pipeline ended.
#[derive(Debug, Clone)]
pub struct PipelineOutcome {
    /// Why it ended: the reason of the first `End` or `Cancel`.
    pub end_reason: String,
    /// True when it was cancelled rather than drained.
    pub cancelled: bool,
    /// The fatal error that ended it, if one did.
    pub fatal_error: Option<ErrorFrame>,
    /// Per-processor processing time, then transit time.
    pub metrics: Vec<MetricsData>,
}
