//! A checker of CloudWatch Embedded Metric Format documents, after the MUSTs of AWS's
//! "Specification: Embedded metric format": the root is a JSON object whose `_aws` metadata
//! holds a millisecond `Timestamp` and `CloudWatchMetrics` directives; each directive names a
//! `Namespace`, `Dimensions` (sets of at most 30 keys, each naming a string member of the
//! root) and at most 100 `Metrics` (each naming a root member that is a number or an array of
//! at most 100 numbers, with an optional `Unit` from CloudWatch's list and an optional
//! `StorageResolution` of 1 or 60); the objects the specification defines have no other
//! members.

use serde_json::{Map, Value};

const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Every way `line` breaks the specification; empty when it is a valid EMF document.
pub fn violations(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let root = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(root)) => root,
        Ok(_) => return vec!["the root is not a JSON object".into()],
        Err(e) => return vec![format!("not a JSON document alone on its line: {e}")],
    };
    let Some(Value::Object(aws)) = root.get("_aws") else {
        return vec!["no `_aws` object".into()];
    };
    only_members(aws, &["Timestamp", "CloudWatchMetrics"], "_aws", &mut found);
    if !aws.get("Timestamp").is_some_and(Value::is_u64) {
        found.push("`_aws.Timestamp` is not a number of milliseconds".into());
    }
    let Some(Value::Array(directives)) = aws.get("CloudWatchMetrics") else {
        found.push("`_aws.CloudWatchMetrics` is not an array".into());
        return found;
    };
    for (i, directive) in directives.iter().enumerate() {
        check_directive(&root, directive, &format!("directive {i}"), &mut found);
    }
    found
}

fn only_members(
    object: &Map<String, Value>,
    allowed: &[&str],
    what: &str,
    found: &mut Vec<String>,
) {
    for key in object.keys().filter(|k| !allowed.contains(&k.as_str())) {
        found.push(format!(
            "{what} has a member the specification does not define: {key}"
        ));
    }
}

fn check_directive(
    root: &Map<String, Value>,
    directive: &Value,
    what: &str,
    found: &mut Vec<String>,
) {
    let Value::Object(directive) = directive else {
        found.push(format!("{what} is not an object"));
        return;
    };
    only_members(
        directive,
        &["Namespace", "Dimensions", "Metrics"],
        what,
        found,
    );
    match directive.get("Namespace").and_then(Value::as_str) {
        Some(ns) if (1..=255).contains(&ns.len()) && ns.is_ascii() => {}
        _ => found.push(format!(
            "{what}: Namespace is not 1 to 255 ASCII characters"
        )),
    }
    let Some(Value::Array(sets)) = directive.get("Dimensions") else {
        found.push(format!("{what}: Dimensions is not an array"));
        return;
    };
    for set in sets {
        let Some(keys) = set.as_array() else {
            found.push(format!("{what}: a dimension set is not an array"));
            continue;
        };
        if keys.len() > 30 {
            found.push(format!("{what}: a dimension set has more than 30 keys"));
        }
        for key in keys {
            let name = key.as_str().unwrap_or_default();
            match root.get(name).and_then(Value::as_str) {
                _ if name.is_empty() || name.len() > 255 || name.starts_with(':') => found.push(
                    format!("{what}: dimension name {key} is not 1 to 255 characters"),
                ),
                Some(value) if (1..=1024).contains(&value.chars().count()) => {}
                _ => found.push(format!(
                    "{what}: dimension {name} is not a string of 1 to 1024 characters at the root"
                )),
            }
        }
    }
    let Some(Value::Array(metrics)) = directive.get("Metrics") else {
        found.push(format!("{what}: Metrics is not an array"));
        return;
    };
    if metrics.len() > 100 {
        found.push(format!("{what}: more than 100 metrics"));
    }
    for metric in metrics {
        check_metric(root, metric, what, found);
    }
}

fn check_metric(root: &Map<String, Value>, metric: &Value, what: &str, found: &mut Vec<String>) {
    let Value::Object(metric) = metric else {
        found.push(format!("{what}: a metric definition is not an object"));
        return;
    };
    only_members(metric, &["Name", "Unit", "StorageResolution"], what, found);
    let name = metric
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() || name.len() > 1024 {
        found.push(format!("{what}: a metric name is not 1 to 1024 characters"));
    }
    match root.get(name) {
        Some(Value::Number(_)) => {}
        Some(Value::Array(values))
            if values.len() <= 100 && values.iter().all(Value::is_number) => {}
        _ => found.push(format!(
            "{what}: metric {name} is not a number (or up to 100 numbers) at the root"
        )),
    }
    if let Some(unit) = metric.get("Unit")
        && !unit.as_str().is_some_and(|u| UNITS.contains(&u))
    {
        found.push(format!("{what}: metric {name} has an unknown unit {unit}"));
    }
    if let Some(resolution) = metric.get("StorageResolution")
        && !matches!(resolution.as_u64(), Some(1 | 60))
    {
        found.push(format!(
            "{what}: metric {name}'s StorageResolution is not 1 or 60"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"App","Dimensions":[["Route"],[]],"Metrics":[{"Name":"Latency","Unit":"Milliseconds"}]}]},"Route":"/chat","Latency":12}"#;

    #[test]
    fn the_specifications_own_shape_passes() {
        assert_eq!(violations(VALID), Vec::<String>::new());
    }

    #[test]
    fn every_broken_rule_is_reported() {
        let broken = [
            VALID.replace("1700000000000", "\"now\""),
            VALID.replace("\"Milliseconds\"", "\"Millis\""),
            VALID.replace("\"Latency\":12", "\"Latency\":\"12\""),
            VALID.replace("\"Route\":\"/chat\"", "\"Route\":7"),
            VALID.replace("\"Namespace\":\"App\",", ""),
            VALID.replace("\"Metrics\"", "\"Unit\":\"Count\",\"Metrics\""),
            format!("START {VALID}"),
        ];
        for line in broken {
            assert!(!violations(&line).is_empty(), "accepted: {line}");
        }
    }
}
