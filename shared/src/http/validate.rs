//! Collects every rule a request breaks, so a client learns all of them from one 422.

use crate::error::{FieldError, LocPart, ServiceError};

#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failure at `loc` unless `ok` holds.
    pub fn check(&mut self, ok: bool, loc: &[&str], msg: impl Into<String>, kind: &str) {
        if !ok {
            self.0.push(FieldError::new(
                loc.iter().map(|part| LocPart::from(*part)),
                msg,
                kind,
            ));
        }
    }

    /// Checks that a number lies within `min..=max`.
    pub fn range<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        value: Option<T>,
        min: T,
        max: T,
        loc: &[&str],
    ) {
        if let Some(v) = value {
            self.check(
                v >= min,
                loc,
                format!("must be greater than or equal to {min}"),
                "greater_than_equal",
            );
            self.check(
                v <= max,
                loc,
                format!("must be less than or equal to {max}"),
                "less_than_equal",
            );
        }
    }

    /// Checks a sampling temperature: within `0..=2`, and storable, since DynamoDB cannot hold
    /// a nonzero number closer to zero than 1e-130.
    pub fn temperature(&mut self, value: Option<f64>, loc: &[&str]) {
        self.range(value, 0.0, 2.0, loc);
        self.check(
            value.is_none_or(|t| t <= 0.0 || t >= DYNAMODB_MIN_NUMBER),
            loc,
            format!("must be 0 or at least {DYNAMODB_MIN_NUMBER:e}"),
            "greater_than_equal",
        );
    }

    /// Checks a text's length in characters, when it is present.
    pub fn length(&mut self, value: Option<&str>, min: usize, max: usize, loc: &[&str]) {
        if let Some(v) = value {
            let chars = v.chars().count();
            self.check(
                chars >= min,
                loc,
                format!("must have at least {min} characters"),
                "string_too_short",
            );
            self.check(
                chars <= max,
                loc,
                format!("must have at most {max} characters"),
                "string_too_long",
            );
        }
    }

    /// Checks a text, when it is present: not blank, and at most `max` characters as sent
    /// (the stored text may be trimmed, but the bound is the one the document declares).
    pub fn text(&mut self, value: Option<&str>, max: usize, loc: &[&str]) {
        if let Some(v) = value {
            self.check(
                !v.trim().is_empty(),
                loc,
                "must not be blank",
                "string_too_short",
            );
        }
        self.length(value, 0, max, loc);
    }

    /// Records the failures of one element of a list, checked on its own with locations
    /// relative to it, under `prefix` and the element's index (`body.messages.3.content`).
    pub fn nest(&mut self, prefix: &[&str], index: usize, inner: Violations) {
        let at = prefix
            .iter()
            .map(|part| LocPart::from(*part))
            .chain([LocPart::Index(index)]);
        self.0.extend(inner.0.into_iter().map(|mut error| {
            error.loc.splice(0..0, at.clone());
            error
        }));
    }

    pub fn finish(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Validation(self.0))
        }
    }
}

/// DynamoDB stores numbers of magnitude up to 9.99...e125 and down to 1e-130.
const DYNAMODB_MAX_NUMBER: f64 = 9.999_999_999_999_998e125;
const DYNAMODB_MIN_NUMBER: f64 = 1e-130;
/// DynamoDB nests documents at most 32 levels deep.
const MAX_JSON_DEPTH: usize = 32;

/// Why DynamoDB would refuse this client-supplied JSON value, if it would.
fn storable(value: &serde_json::Value, depth: usize) -> Result<(), &'static str> {
    use serde_json::Value;
    if depth > MAX_JSON_DEPTH {
        return Err("is nested more than 32 levels deep");
    }
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f)
                if f == 0.0 || (DYNAMODB_MIN_NUMBER..=DYNAMODB_MAX_NUMBER).contains(&f.abs()) =>
            {
                Ok(())
            }
            _ => Err("holds a number outside ±1e-130..9.99e125"),
        },
        Value::Array(items) => items.iter().try_for_each(|v| storable(v, depth + 1)),
        Value::Object(map) => {
            if map.keys().any(String::is_empty) {
                return Err("has an empty key");
            }
            map.values().try_for_each(|v| storable(v, depth + 1))
        }
        _ => Ok(()),
    }
}

impl Violations {
    /// Checks that a free-form JSON object can be stored as it is.
    pub fn storable_json(&mut self, value: Option<&crate::domain::JsonObject>, loc: &[&str]) {
        let problem = value.and_then(|object| {
            if object.keys().any(String::is_empty) {
                return Some("has an empty key");
            }
            object.values().try_for_each(|v| storable(v, 2)).err()
        });
        if let Some(problem) = problem {
            self.check(false, loc, format!("the object {problem}"), "value_error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: serde_json::Value) -> Result<(), ServiceError> {
        let mut v = Violations::new();
        v.storable_json(value.as_object(), &["body", "extra_metadata"]);
        v.finish()
    }

    #[test]
    fn ordinary_objects_are_storable() {
        assert!(check(json!({"a": [1, 2.5, -3e100, 0, null, "x"], "b": {"c": true}})).is_ok());
    }

    fn check_temperature(t: f64) -> Result<(), ServiceError> {
        let mut v = Violations::new();
        v.temperature(Some(t), &["body", "temperature"]);
        v.finish()
    }

    #[test]
    fn a_temperature_too_small_to_store_is_a_validation_error() {
        assert!(check_temperature(0.0).is_ok());
        assert!(check_temperature(1e-130).is_ok());
        assert!(check_temperature(2.0).is_ok());
        assert!(check_temperature(2.225_073_858_507e-311).is_err());
        assert!(check_temperature(1e-131).is_err());
        assert!(check_temperature(2.1).is_err());
        assert!(check_temperature(-0.5).is_err());
    }

    fn check_text(text: &str) -> Result<(), ServiceError> {
        let mut v = Violations::new();
        v.text(Some(text), 5, &["body", "name"]);
        v.finish()
    }

    #[test]
    fn a_text_must_not_be_blank_and_its_bound_counts_what_was_sent() {
        assert!(check_text(" Jack").is_ok());
        assert!(check_text(" \t\u{85}").is_err());
        // Trimmed it would fit; as sent it is longer than the document allows.
        assert!(check_text("\u{85}Jacky").is_err());
    }

    #[test]
    fn what_dynamodb_refuses_is_a_validation_error() {
        assert!(check(json!({"n": 6.3e237})).is_err());
        assert!(check(json!({"n": 1e-200})).is_err());
        assert!(check(json!({"": 1})).is_err());
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "k": deep });
        }
        assert!(check(deep).is_err());
    }
}
