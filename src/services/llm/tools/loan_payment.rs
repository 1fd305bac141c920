//! `loan_payment`: the monthly payment of an amortised loan.
//!
//! The standard annuity formula: for a principal `P`, a monthly rate
//! `r` (the annual rate / 12) and `n` monthly payments,
//! `payment = P * r / (1 - (1 + r)^-n)`, or `P / n` at a zero rate;
//! computed as `P * r / -expm1(-n * ln_1p(r))`, which stays exact for a
//! tiny rate where `1 + r` rounds to 1. The payment is then rounded to the
//! cent and the loan amortised in whole cents (each month's interest
//! rounded to the cent), so the figures add up: the last payment settles
//! what is left and is stated when it differs, and the total is what is
//! really paid. The model is bad at this arithmetic; the tool is exact.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::tool::{Tool, ToolError, ToolOutcome, ToolSpec};

/// The longest term accepted, in months (50 years).
const MAX_MONTHS: u64 = 600;
/// The largest principal accepted (a billion in the loan's currency):
/// beyond it the figures are not a customer's loan, and cents would lose
/// exactness.
const MAX_PRINCIPAL: f64 = 1_000_000_000.0;

/// What a loan costs, in cents: month by month and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoanPayment {
    /// The monthly payment.
    pub monthly_cents: u64,
    /// How many payments are made (the term; fewer only when the rounded
    /// payment settles the loan early).
    pub payments: u64,
    /// The last payment, which settles what is left (it may differ from
    /// the monthly payment by the rounding to cents).
    pub last_cents: u64,
    /// All payments together.
    pub total_cents: u64,
    /// What the loan costs beyond the principal.
    pub interest_cents: u64,
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
    if principal > MAX_PRINCIPAL {
        return Err(format!(
            "principal must be at most {MAX_PRINCIPAL:.0}; check the amount"
        ));
    }
    if !(annual_rate_percent.is_finite() && (0.0..=100.0).contains(&annual_rate_percent)) {
        return Err("annual_rate_percent must be between 0 and 100".into());
    }
    if !(1..=MAX_MONTHS).contains(&months) {
        return Err(format!("term_months must be between 1 and {MAX_MONTHS}"));
    }
    let principal_cents = (principal * 100.0).round();
    if principal_cents < 1.0 {
        return Err("principal must be at least one cent".into());
    }
    let n = months as f64;
    let r = annual_rate_percent / 100.0 / 12.0;
    let payment = if r == 0.0 {
        principal_cents / n
    } else {
        // r / (1 - (1 + r)^-n), without losing r where 1 + r == 1.
        principal_cents * (r / -(-n * r.ln_1p()).exp_m1())
    };
    if !payment.is_finite() {
        return Err("these figures give no payment; check them".into());
    }
    // The nearest cent, as lenders quote it; but where that is below the
    // exact payment by enough that the balance barely falls (a long term
    // at a high rate, where the payment is close to the interest), the
    // rounding would pile up into the last payment: then the cent above.
    let nearest = payment.round() as u64;
    if nearest == 0 {
        return Err("the principal is too small to be repaid over this many months".into());
    }
    // Whole cents below 2^53: exact as f64 and as u64.
    let principal_cents = principal_cents as u64;
    let mut schedule = amortise(principal_cents, r, months, nearest);
    if schedule.last_cents > nearest + months {
        schedule = amortise(principal_cents, r, months, payment.ceil() as u64);
    }
    let Schedule {
        monthly_cents,
        payments,
        last_cents,
        total_cents,
    } = schedule;
    Ok(LoanPayment {
        monthly_cents,
        payments,
        last_cents,
        total_cents,
        interest_cents: total_cents.saturating_sub(principal_cents),
    })
}

/// A loan paid off month by month: `monthly_cents` each month, the last
/// payment whatever is left.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    monthly_cents: u64,
    payments: u64,
    last_cents: u64,
    total_cents: u64,
}

/// Pays `principal_cents` at monthly rate `r` with `monthly_cents` a month,
/// interest rounded to the cent each month, for at most `months`.
fn amortise(principal_cents: u64, r: f64, months: u64, monthly_cents: u64) -> Schedule {
    let mut balance = principal_cents;
    let mut schedule = Schedule {
        monthly_cents,
        payments: 0,
        last_cents: 0,
        total_cents: 0,
    };
    for month in 1..=months {
        let interest = (balance as f64 * r).round() as u64;
        let due = balance + interest;
        schedule.payments = month;
        if month == months || due <= monthly_cents {
            schedule.last_cents = due;
            schedule.total_cents += due;
            break;
        }
        balance = due - monthly_cents;
        schedule.total_cents += monthly_cents;
    }
    schedule
}

/// Cents as an amount with two decimals (the nearest `f64`, which JSON
/// shows as written: 11322.74).
fn amount(cents: u64) -> f64 {
    cents as f64 / 100.0
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
                              repaid in equal monthly payments (standard amortisation), \
                              in cents exactly; `last_payment` is given when the last \
                              payment differs from the others by the rounding."
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

    /// A lookup: a preemptive reply that is discarded changed nothing.
    fn safe_to_run_early(&self) -> bool {
        true
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        let principal = arguments["principal"].as_f64().unwrap_or(f64::NAN);
        let rate = arguments["annual_rate_percent"]
            .as_f64()
            .unwrap_or(f64::NAN);
        // JSON Schema counts 360.0 an integer, as the model may write it.
        let months = arguments["term_months"]
            .as_u64()
            .or_else(|| {
                let months = arguments["term_months"].as_f64()?;
                (months.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&months))
                    .then_some(months as u64)
            })
            .unwrap_or(0);
        let payment = loan_payment(principal, rate, months).map_err(ToolError::Failed)?;
        let mut result = json!({
            "monthly_payment": amount(payment.monthly_cents),
            "payments": payment.payments,
            "total_paid": amount(payment.total_cents),
            "total_interest": amount(payment.interest_cents),
            "term_months": months,
        });
        if payment.last_cents != payment.monthly_cents {
            result["last_payment"] = json!(amount(payment.last_cents));
        }
        Ok(ToolOutcome::result(result.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annuity_formula_matches_known_figures() {
        // 200,000 at 6% over 30 years: 1,199.10 a month (a textbook figure);
        // the last payment settles the rounding.
        let p = loan_payment(200_000.0, 6.0, 360).unwrap();
        assert_eq!(p.monthly_cents, 119_910);
        assert_eq!(p.payments, 360);
        assert_eq!(p.last_cents, 120_014);
        assert_eq!(p.total_cents, 359 * 119_910 + 120_014);
        assert_eq!(p.interest_cents, p.total_cents - 20_000_000);
        // No interest: equal parts, the last one settling the remainder.
        let free = loan_payment(1_200.0, 0.0, 12).unwrap();
        assert_eq!((free.monthly_cents, free.last_cents), (10_000, 10_000));
        assert_eq!(free.interest_cents, 0);
        let sevenths = loan_payment(1_000.0, 0.0, 7).unwrap();
        assert_eq!(sevenths.monthly_cents, 14_286);
        assert_eq!(sevenths.total_cents, 100_000);
        assert_eq!(sevenths.last_cents, 100_000 - 6 * 14_286);
    }

    #[test]
    fn the_total_is_the_payments_made() {
        // 10,000 at 5% over 5 years: 59 payments of 188.71 and a last one
        // of 188.85, 11,322.74 in all.
        let p = loan_payment(10_000.0, 5.0, 60).unwrap();
        assert_eq!(p.monthly_cents, 18_871);
        assert_eq!(p.last_cents, 18_885);
        assert_eq!(p.total_cents, 59 * 18_871 + 18_885);
        assert_eq!(p.total_cents, 1_132_274);
    }

    #[test]
    fn a_payment_close_to_the_interest_does_not_pile_up_into_the_last() {
        // 10,000 at 30% over 50 years: the nearest cent, 250.00, is exactly
        // the first month's interest, so the balance would never fall and
        // the last payment would be 10,250.00 (160,000.00 in all, against
        // an annuity's 150,000.06). The cent above pays the loan off.
        for (principal, rate, months) in [(10_000.0, 30.0, 600), (100.0, 24.0, 360)] {
            let p = loan_payment(principal, rate, months).unwrap();
            assert!(
                p.last_cents <= p.monthly_cents + months,
                "{principal} at {rate}% over {months}: {p:?}"
            );
            assert_eq!(
                p.total_cents,
                (p.payments - 1) * p.monthly_cents + p.last_cents
            );
        }
        let p = loan_payment(10_000.0, 30.0, 600).unwrap();
        assert_eq!(p.monthly_cents, 25_001);
        assert!(p.total_cents < 15_001_000, "{p:?}");
    }

    #[test]
    fn a_tiny_rate_is_almost_no_interest_not_an_infinite_payment() {
        for rate in [1e-12, 1e-300, f64::MIN_POSITIVE] {
            let p = loan_payment(1_000.0, rate, 12).unwrap();
            assert_eq!(p.monthly_cents, 8_333, "rate {rate}");
            assert_eq!(p.total_cents, 100_000, "rate {rate}");
            assert_eq!(p.interest_cents, 0);
        }
    }

    #[test]
    fn figures_that_make_no_loan_are_refused() {
        assert!(loan_payment(0.0, 5.0, 12).is_err());
        assert!(loan_payment(-5.0, 5.0, 12).is_err());
        assert!(loan_payment(f64::NAN, 5.0, 12).is_err());
        assert!(loan_payment(f64::INFINITY, 5.0, 12).is_err());
        assert!(loan_payment(1e15, 5.0, 12).unwrap_err().contains("at most"));
        assert!(loan_payment(0.001, 5.0, 12).is_err());
        assert!(
            loan_payment(0.05, 0.0, 600)
                .unwrap_err()
                .contains("too small")
        );
        assert!(loan_payment(1_000.0, -1.0, 12).is_err());
        assert!(loan_payment(1_000.0, 101.0, 12).is_err());
        assert!(loan_payment(1_000.0, 5.0, 0).is_err());
        assert!(loan_payment(1_000.0, 5.0, 601).is_err());
        // The largest loan still adds up to the cent.
        let big = loan_payment(MAX_PRINCIPAL, 100.0, 600).unwrap();
        assert_eq!(
            big.total_cents,
            (big.payments - 1) * big.monthly_cents + big.last_cents
        );
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
        assert_eq!(result["last_payment"], json!(188.85));
        assert_eq!(result["total_paid"], json!(11322.74));
        assert_eq!(result["total_interest"], json!(1322.74));
        assert_eq!(result["payments"], json!(60));
        let even = tool
            .call(json!({"principal": 1200, "annual_rate_percent": 0, "term_months": 12.0}))
            .await
            .unwrap();
        let even: Value = serde_json::from_str(&even.result).unwrap();
        assert!(even.get("last_payment").is_none(), "{even}");
        let refused = tool
            .call(json!({"principal": 10000, "annual_rate_percent": 5, "term_months": 0}))
            .await;
        assert!(matches!(refused, Err(ToolError::Failed(m)) if m.contains("term_months")));
        let refused = tool
            .call(json!({"principal": 1e12, "annual_rate_percent": 5, "term_months": 12}))
            .await;
        assert!(matches!(refused, Err(ToolError::Failed(m)) if m.contains("principal")));
    }
}
