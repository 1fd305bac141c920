//! The optimiser's counters, exposed on the server's `/metrics` of the
//! process running the worker (rollbacks are made by `voxpipe prompts`, a
//! process of its own: they are counted in each key's history, where each
//! is a version with the reason "rollback to version N"):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `voxpipe_prompt_candidates_total` | counter | |
//! | `voxpipe_prompt_deployments_total` | counter | |
//! | `voxpipe_prompt_rejections_total` | counter | `decision` (`rejected`, `superseded`, `unevaluated`, `rate_limited`, `skipped`) |
//! | `voxpipe_prompt_llm_calls_total` | counter | |

use crate::metrics::prometheus::{Counter, Registry};
use crate::store::Decision;

const REJECTIONS: (&str, &str) = (
    "voxpipe_prompt_rejections_total",
    "Prompt optimisations that deployed nothing, by decision.",
);

/// The optimiser's counters, in a registry of their own.
#[derive(Debug)]
pub struct OptimiserMetrics {
    registry: Registry,
    candidates: Counter,
    deployments: Counter,
    llm_calls: Counter,
}

impl Default for OptimiserMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        let candidates = registry.counter(
            "voxpipe_prompt_candidates_total",
            "Candidate prompts written by the optimiser.",
            &[],
        );
        let deployments = registry.counter(
            "voxpipe_prompt_deployments_total",
            "Candidate prompts deployed.",
            &[],
        );
        registry.declare_counter(REJECTIONS.0, REJECTIONS.1);
        let llm_calls = registry.counter(
            "voxpipe_prompt_llm_calls_total",
            "Model requests made by the optimiser.",
            &[],
        );
        OptimiserMetrics {
            registry,
            candidates,
            deployments,
            llm_calls,
        }
    }
}

impl OptimiserMetrics {
    /// Counts one optimisation's outcome.
    pub(super) fn optimised(&self, decision: Decision, had_candidate: bool, llm_calls: u64) {
        if had_candidate {
            self.candidates.inc();
        }
        self.llm_calls.inc_by(llm_calls);
        match decision {
            Decision::Deployed => {
                self.deployments.inc();
            }
            other => {
                let (name, help) = REJECTIONS;
                self.registry
                    .counter(name, help, &[("decision", other.as_str())])
                    .inc();
            }
        }
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}
