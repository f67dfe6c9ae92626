//! Tools that run in-process: a calculator and a clock.

use chrono::Utc;
use exmex::{Express, FlatEx};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Calculator,
    GetTime,
}

impl Builtin {
    pub const ALL: [Builtin; 2] = [Builtin::Calculator, Builtin::GetTime];

    pub fn name(self) -> &'static str {
        match self {
            Self::Calculator => "calculator",
            Self::GetTime => "get_time",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Calculator => {
                "Evaluates an arithmetic expression exactly: + - * / ^, parentheses, and functions \
                 such as sqrt, abs, exp, ln, log10, sin, cos, tan, floor, ceil, round; constants PI and E."
            }
            Self::GetTime => {
                "Returns the current date and time, in an IANA timezone such as Europe/Paris (UTC by default)."
            }
        }
    }

    pub fn args_schema(self) -> Value {
        match self {
            Self::Calculator => json!({
                "type": "object",
                "properties": {"expression": {"type": "string", "description": "The expression, e.g. sqrt(144) + 2^3"}},
                "required": ["expression"],
                "additionalProperties": false
            }),
            Self::GetTime => json!({
                "type": "object",
                "properties": {"timezone": {"type": "string", "description": "IANA timezone, e.g. America/New_York"}},
                "additionalProperties": false
            }),
        }
    }

    /// Runs the tool; an `Err` is a message for the model, not a failure of the turn.
    pub fn run(self, arguments: &str) -> Result<String, String> {
        match self {
            Self::Calculator => {
                let args: CalculatorArgs = parse(arguments)?;
                calculate(&args.expression).map(format_number)
            }
            Self::GetTime => {
                let args: TimeArgs = parse(arguments)?;
                current_time(args.timezone.as_deref())
            }
        }
    }
}

#[derive(Deserialize)]
struct CalculatorArgs {
    expression: String,
}

#[derive(Deserialize)]
struct TimeArgs {
    timezone: Option<String>,
}

fn parse<'a, T: Deserialize<'a>>(arguments: &'a str) -> Result<T, String> {
    let arguments = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    serde_json::from_str(arguments).map_err(|e| format!("invalid arguments: {e}"))
}

/// Longest expression accepted, so a hostile prompt cannot make the parser work hard.
const MAX_EXPRESSION_CHARS: usize = 500;

fn calculate(expression: &str) -> Result<f64, String> {
    if expression.len() > MAX_EXPRESSION_CHARS {
        return Err(format!(
            "the expression is longer than {MAX_EXPRESSION_CHARS} characters"
        ));
    }
    let normalised = expression
        .replace("**", "^")
        .replace('×', "*")
        .replace('÷', "/");
    let parsed = FlatEx::<f64>::parse(&normalised).map_err(|e| format!("cannot parse: {e}"))?;
    if parsed.var_names().iter().any(|v| v != "PI" && v != "E") {
        return Err(format!("unknown names: {}", parsed.var_names().join(", ")));
    }
    let values: Vec<f64> = parsed
        .var_names()
        .iter()
        .map(|v| {
            if v == "PI" {
                std::f64::consts::PI
            } else {
                std::f64::consts::E
            }
        })
        .collect();
    let value = parsed
        .eval(&values)
        .map_err(|e| format!("cannot evaluate: {e}"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err("the result is not a finite number (division by zero?)".into())
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

fn current_time(timezone: Option<&str>) -> Result<String, String> {
    let now = Utc::now();
    match timezone.map(str::trim).filter(|t| !t.is_empty()) {
        None | Some("UTC") => Ok(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) + " (UTC)"),
        Some(name) => {
            let zone: chrono_tz::Tz = name
                .parse()
                .map_err(|_| format!("unknown timezone '{name}'"))?;
            Ok(format!(
                "{} ({name})",
                now.with_timezone(&zone)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calc(expression: &str) -> Result<String, String> {
        Builtin::Calculator.run(&json!({ "expression": expression }).to_string())
    }

    #[test]
    fn the_calculator_evaluates_arithmetic_and_functions() {
        assert_eq!(calc("sqrt(144)").unwrap(), "12");
        assert_eq!(calc("2^10 + 3*(4-1)").unwrap(), "1033");
        assert_eq!(calc("2**3").unwrap(), "8");
        assert_eq!(calc("1/4").unwrap(), "0.25");
        assert!(calc("PI").unwrap().starts_with("3.14159"));
    }

    #[test]
    fn the_calculator_refuses_what_is_not_arithmetic() {
        assert!(calc("1/0").unwrap_err().contains("finite"));
        assert!(calc("x + 1").unwrap_err().contains("unknown names"));
        assert!(calc("system('rm')").is_err());
        assert!(calc(&"1+".repeat(400)).is_err());
        assert!(
            Builtin::Calculator
                .run("not json")
                .unwrap_err()
                .contains("invalid arguments")
        );
    }

    #[test]
    fn the_clock_knows_timezones() {
        assert!(Builtin::GetTime.run("{}").unwrap().ends_with("(UTC)"));
        assert!(
            Builtin::GetTime
                .run(r#"{"timezone":"Asia/Tokyo"}"#)
                .unwrap()
                .contains("+09:00")
        );
        assert!(
            Builtin::GetTime
                .run(r#"{"timezone":"Mars/Base"}"#)
                .unwrap_err()
                .contains("unknown timezone")
        );
    }
}
