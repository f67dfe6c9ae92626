//! Responses a browser saves as a file.

/// A `Content-Disposition` value that saves the body as `name`, kept to ASCII letters, digits
/// and `._-` (the rest `_`): nothing in a user's title or file name can break out of the
/// header's quotes or name a path.
pub fn attachment(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("attachment; filename=\"{name}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(
            attachment("résumé \"x\".md"),
            "attachment; filename=\"r_sum___x_.md\""
        );
    }
}
