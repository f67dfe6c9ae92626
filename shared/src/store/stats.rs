//! Per-user workflow execution statistics, kept as atomic counters so that every Lambda
//! instance adds to the same figures.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::feedback::{self, FeedbackCounts};
use super::{Store, StoreError, classify, keys};
use crate::tools::UNKNOWN_TOOL;

/// One finished workflow execution.
#[derive(Debug, Clone, Default)]
pub struct Execution {
    pub workflow: String,
    pub duration_ms: u64,
    /// `None` when it succeeded.
    pub error_class: Option<String>,
    /// (tool, duration, failed); a tool that is not offered is named
    /// [`crate::tools::UNKNOWN_TOOL`] by the tools layer.
    pub tool_runs: Vec<(String, u64, bool)>,
    pub cache_hits: u32,
    pub cache_misses: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFigures {
    pub calls: u64,
    pub errors: u64,
    pub total_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    pub executions: u64,
    pub total_ms: u64,
    pub min_ms: u64,
    pub max_ms: u64,
    pub workflows: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub tools: BTreeMap<String, ToolFigures>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// The ratings standing on the user's answers (see `feedback`).
    pub feedback: FeedbackCounts,
}

const WORKFLOW: &str = "workflow:";
const ERROR: &str = "error:";
const TOOL_CALLS: &str = "tool_calls:";
const TOOL_ERRORS: &str = "tool_errors:";
const TOOL_MS: &str = "tool_ms:";

/// The counter bucket of a tool: its name when it can be a tool's name, else the unknown
/// bucket. Tool names are `[A-Za-z0-9_-]{1,64}`; anything else came from somewhere other than
/// an offered tool and must not add an attribute to the (single, size-limited) stats item.
fn tool_bucket(name: &str) -> &str {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid { name } else { UNKNOWN_TOOL }
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

impl Store {
    pub(super) fn stats_key(user_id: &str) -> [(String, AttributeValue); 2] {
        [
            (keys::PK.into(), AttributeValue::S(keys::user_pk(user_id))),
            (
                keys::SK.into(),
                AttributeValue::S(keys::EXECUTION_STATS_SK.into()),
            ),
        ]
    }

    /// Adds one execution to the user's counters: one update, and a second only when this
    /// execution is a new minimum or maximum.
    pub async fn record_execution(
        &self,
        user_id: &str,
        execution: &Execution,
    ) -> Result<(), StoreError> {
        let mut adds: Vec<(String, u64)> = vec![
            ("executions".into(), 1),
            ("total_ms".into(), execution.duration_ms),
            (format!("{WORKFLOW}{}", execution.workflow), 1),
            ("cache_hits".into(), execution.cache_hits.into()),
            ("cache_misses".into(), execution.cache_misses.into()),
        ];
        if let Some(class) = &execution.error_class {
            adds.push((format!("{ERROR}{class}"), 1));
        }
        for (tool, ms, failed) in &execution.tool_runs {
            let tool = tool_bucket(tool);
            adds.push((format!("{TOOL_CALLS}{tool}"), 1));
            adds.push((format!("{TOOL_MS}{tool}"), *ms));
            adds.push((format!("{TOOL_ERRORS}{tool}"), u64::from(*failed)));
        }
        // The same tool called twice in one execution must be added up, not named twice.
        let mut merged: BTreeMap<String, u64> = BTreeMap::new();
        for (name, value) in adds {
            *merged.entry(name).or_default() += value;
        }
        let mut request = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(Self::stats_key(user_id).into_iter().collect()))
            .return_values(ReturnValue::AllNew);
        let mut clauses = Vec::new();
        for (i, (name, value)) in merged.into_iter().enumerate() {
            clauses.push(format!("#a{i} :a{i}"));
            request = request
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":a{i}"), n(value));
        }
        let output = request
            .update_expression(format!("ADD {}", clauses.join(", ")))
            .send()
            .await
            .map_err(classify)?;
        let item = output.attributes.unwrap_or_default();
        let d = execution.duration_ms;
        let extremes = [
            (
                "min_ms",
                number(&item, "min_ms").is_none_or(|m| d < m),
                "min_ms > :d",
            ),
            (
                "max_ms",
                number(&item, "max_ms").is_none_or(|m| d > m),
                "max_ms < :d",
            ),
        ];
        for (name, _, condition) in extremes.into_iter().filter(|(_, record, _)| *record) {
            let result = self
                .client()
                .update_item()
                .table_name(self.table())
                .set_key(Some(Self::stats_key(user_id).into_iter().collect()))
                .update_expression(format!("SET {name} = :d"))
                .condition_expression(format!("attribute_not_exists({name}) OR {condition}"))
                .expression_attribute_values(":d", n(d))
                .send()
                .await;
            // Losing the race to a more extreme value is the expected outcome, not a failure.
            if let Err(e) = result
                && !e
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
            {
                return Err(classify(e));
            }
        }
        Ok(())
    }

    pub async fn execution_stats(&self, user_id: &str) -> Result<ExecutionStats, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(Self::stats_key(user_id).into_iter().collect()))
            .send()
            .await
            .map_err(classify)?;
        let item = output.item.unwrap_or_default();
        let mut stats = ExecutionStats {
            executions: number(&item, "executions").unwrap_or(0),
            total_ms: number(&item, "total_ms").unwrap_or(0),
            min_ms: number(&item, "min_ms").unwrap_or(0),
            max_ms: number(&item, "max_ms").unwrap_or(0),
            cache_hits: number(&item, "cache_hits").unwrap_or(0),
            cache_misses: number(&item, "cache_misses").unwrap_or(0),
            feedback: FeedbackCounts {
                up: number(&item, feedback::UP).unwrap_or(0),
                down: number(&item, feedback::DOWN).unwrap_or(0),
            },
            ..Default::default()
        };
        for name in item.keys() {
            let value = number(&item, name).unwrap_or(0);
            if let Some(workflow) = name.strip_prefix(WORKFLOW) {
                stats.workflows.insert(workflow.into(), value);
            } else if let Some(class) = name.strip_prefix(ERROR) {
                stats.errors.insert(class.into(), value);
            } else if let Some(tool) = name.strip_prefix(TOOL_CALLS) {
                stats.tools.entry(tool.into()).or_default().calls = value;
            } else if let Some(tool) = name.strip_prefix(TOOL_ERRORS) {
                stats.tools.entry(tool.into()).or_default().errors = value;
            } else if let Some(tool) = name.strip_prefix(TOOL_MS) {
                stats.tools.entry(tool.into()).or_default().total_ms = value;
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_possible_tool_names_get_their_own_counters() {
        assert_eq!(tool_bucket("calculator"), "calculator");
        assert_eq!(tool_bucket("shop__lookup-order"), "shop__lookup-order");
        assert_eq!(tool_bucket(UNKNOWN_TOOL), UNKNOWN_TOOL);
        for made_up in ["", "rm -rf /", "a.b", &"x".repeat(65), "éclair"] {
            assert_eq!(tool_bucket(made_up), UNKNOWN_TOOL, "{made_up:?}");
        }
    }
}
