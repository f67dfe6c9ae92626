//! Collects every rule a request breaks, so a client learns all of them from one 422.

use crate::error::{ApiError, FieldError, LocPart};

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

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}
