//! `loan_payment`: the monthly payment of an amortised loan.
//!
//! The standard annuity formula: for a principal `P`, a monthly rate
//! `r` (the annual rate / 12) and `n` monthly payments,
//! `payment = P * r / (1 - (1 + r)^-n)`, or `P / n` at a zero rate. The
//! model is bad at this arithmetic; the tool is exact.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::tool::{Tool, ToolError, ToolOutcome, ToolSpec};

/// The longest term accepted, in months (50 years).
const MAX_MONTHS: u64 = 600;

/// What a loan costs, month by month and in all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoanPayment {
    /// The monthly payment.
    pub monthly: f64,
    /// All payments together.
    pub total: f64,
    /// What the loan costs beyond the principal.
    pub interest: f64,
}

/// The payment of `principal` borrowed at `annual_rate_percent` over
/// `months`, or why the figures make no loan.
pub fn loan_payment(
    principal: f64,
    annual_rate_percent: f64,
    months: u64,
) -> Result<LoanPayment, String> {
    if !(principal.is_finite() && principal > 0.0) {
        return Err("principal must be a positive amount".into());
    }
    if !(annual_rate_percent.is_finite() && (0.0..=100.0).contains(&annual_rate_percent)) {
        return Err("annual_rate_percent must be between 0 and 100".into());
    }
    if !(1..=MAX_MONTHS).contains(&months) {
        return Err(format!("term_months must be between 1 and {MAX_MONTHS}"));
    }
    let n = months as f64;
    let r = annual_rate_percent / 100.0 / 12.0;
    let monthly = if r == 0.0 {
        principal / n
    } else {
        principal * r / (1.0 - (1.0 + r).powf(-n))
    };
    let total = monthly * n;
    Ok(LoanPayment {
        monthly,
        total,
        interest: total - principal,
    })
}

fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// The `loan_payment` tool. See the module docs.
#[derive(Debug, Clone)]
pub struct LoanPaymentTool {
    spec: ToolSpec,
}

impl LoanPaymentTool {
    /// The tool, as the model sees it.
    pub fn new() -> Self {
        LoanPaymentTool {
            spec: ToolSpec {
                name: "loan_payment".to_owned(),
                description: "The monthly payment, total paid and total interest of a loan \
                              repaid in equal monthly payments (standard amortisation)."
                    .to_owned(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "principal": {"type": "number", "description": "The amount borrowed."},
                        "annual_rate_percent": {"type": "number", "description": "The yearly interest rate in percent, e.g. 6.5."},
                        "term_months": {"type": "integer", "description": "The number of monthly payments, e.g. 60 for five years."}
                    },
                    "required": ["principal", "annual_rate_percent", "term_months"]
                }),
            },
        }
    }
}

impl Default for LoanPaymentTool {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for LoanPaymentTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        let principal = arguments["principal"].as_f64().unwrap_or(f64::NAN);
        let rate = arguments["annual_rate_percent"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let months = arguments["term_months"].as_u64().unwrap_or(0);
        let payment = loan_payment(principal, rate, months).map_err(ToolError::Failed)?;
        Ok(ToolOutcome::result(
            json!({
                "monthly_payment": cents(payment.monthly),
                "total_paid": cents(payment.total),
                "total_interest": cents(payment.interest),
                "term_months": months,
            })
            .to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annuity_formula_matches_known_figures() {
        // 200,000 at 6% over 30 years: 1,199.10 a month (a textbook figure).
        let p = loan_payment(200_000.0, 6.0, 360).unwrap();
        assert_eq!(cents(p.monthly), 1199.10);
        assert_eq!(cents(p.interest), 231_676.38);
        // 10,000 at 5% over 5 years: 188.71.
        assert_eq!(
            cents(loan_payment(10_000.0, 5.0, 60).unwrap().monthly),
            188.71
        );
        // No interest: equal parts.
        let free = loan_payment(1_200.0, 0.0, 12).unwrap();
        assert_eq!(free.monthly, 100.0);
        assert_eq!(free.interest, 0.0);
    }

    #[test]
    fn figures_that_make_no_loan_are_refused() {
        assert!(loan_payment(0.0, 5.0, 12).is_err());
        assert!(loan_payment(-5.0, 5.0, 12).is_err());
        assert!(loan_payment(f64::NAN, 5.0, 12).is_err());
        assert!(loan_payment(1_000.0, -1.0, 12).is_err());
        assert!(loan_payment(1_000.0, 101.0, 12).is_err());
        assert!(loan_payment(1_000.0, 5.0, 0).is_err());
        assert!(loan_payment(1_000.0, 5.0, 601).is_err());
    }

    #[tokio::test]
    async fn the_tool_answers_in_cents_and_explains_bad_figures() {
        let tool = LoanPaymentTool::new();
        let outcome = tool
            .call(json!({"principal": 10000, "annual_rate_percent": 5, "term_months": 60}))
            .await
            .unwrap();
        let result: Value = serde_json::from_str(&outcome.result).unwrap();
        assert_eq!(result["monthly_payment"], json!(188.71));
        assert_eq!(result["total_paid"], json!(11322.74));
        let refused = tool
            .call(json!({"principal": 10000, "annual_rate_percent": 5, "term_months": 0}))
            .await;
        assert!(matches!(refused, Err(ToolError::Failed(m)) if m.contains("term_months")));
    }
}
