//! Whether a scored candidate goes live: it must reach the threshold and
//! score strictly better than the current prompt on the same cases (a tie
//! keeps the current prompt: no change without evidence it helps).

/// The verdict on a scored candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Deploy it.
    Deploy(String),
    /// Keep the current prompt.
    Reject(String),
}

/// Decides on a candidate with mean `candidate` against the current
/// prompt's `current`, given `threshold`.
pub fn decide(candidate: f64, current: f64, threshold: f64) -> Verdict {
    if candidate < threshold {
        Verdict::Reject(format!(
            "the candidate's mean {candidate:.3} is below the threshold {threshold:.3}"
        ))
    } else if candidate <= current {
        Verdict::Reject(format!(
            "the candidate's mean {candidate:.3} is not above the current prompt's {current:.3}"
        ))
    } else {
        Verdict::Deploy(format!(
            "the candidate's mean {candidate:.3} reaches the threshold {threshold:.3} and beats the current prompt's {current:.3}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploys_only_at_the_threshold_and_above_the_current_prompt() {
        assert!(matches!(decide(0.8, 0.6, 0.5), Verdict::Deploy(_)));
        assert!(matches!(decide(0.6, 0.6, 0.5), Verdict::Reject(r) if r.contains("current")));
        assert!(matches!(decide(0.5, 0.2, 0.5), Verdict::Deploy(_)));
        assert!(matches!(decide(0.4, 0.1, 0.5), Verdict::Reject(r) if r.contains("threshold")));
        assert!(matches!(decide(0.7, 0.9, 0.5), Verdict::Reject(r) if r.contains("current")));
    }
}
