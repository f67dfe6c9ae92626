//! CloudWatch metrics of chat turns as Embedded Metric Format (EMF) log lines: CloudWatch Logs
//! extracts the metrics from the function's own log, so a turn costs no API call and no extra
//! latency. Each turn writes one line when it ends (one flush per turn), to stdout, where
//! Lambda's log and the local run's log both go; a log filter above `info` silences it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::domain::Workflow;

/// Which API the turn was asked through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Chatter,
    FreeChat,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chatter => "chatter",
            Self::FreeChat => "freechat",
        }
    }
}

/// Where a failed turn failed: before the model was called (storage, retrieval, the
/// deadline), or while generating (the model, a tool round's storage, an empty answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Preparation,
    Generation,
}

/// Why a turn failed, as counted in `Errors` by `ErrorClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub class: &'static str,
    pub stage: Stage,
}

/// What one turn reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnMetrics {
    pub dialect: Dialect,
    pub workflow: Workflow,
    pub duration_ms: u64,
    /// From the start of the turn to the first token streamed; none without streaming or
    /// without a token.
    pub time_to_first_token_ms: Option<u64>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cost: f64,
    pub failure: Option<Failure>,
}

impl TurnMetrics {
    /// A turn that failed before the model was called.
    pub fn failed_early(
        dialect: Dialect,
        workflow: Workflow,
        duration_ms: u64,
        class: &'static str,
    ) -> Self {
        Self {
            dialect,
            workflow,
            duration_ms,
            time_to_first_token_ms: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: 0.0,
            failure: Some(Failure {
                class,
                stage: Stage::Preparation,
            }),
        }
    }

    /// Writes the turn's line, when the log shows `info`.
    pub fn emit(&self, namespace: &str) {
        if tracing::enabled!(target: "metrics", tracing::Level::INFO) {
            println!("{}", self.line(namespace, now_ms()));
        }
    }

    /// The EMF document: one directive with the turn's metrics by dialect and workflow (and
    /// with no dimension, for the stack-wide alarms), and for a failure a second one counting
    /// the error by class.
    pub fn line(&self, namespace: &str, timestamp_ms: u64) -> String {
        let mut metrics = vec![
            metric("Turns", "Count"),
            metric("TurnDuration", "Milliseconds"),
            metric("PromptTokens", "Count"),
            metric("CompletionTokens", "Count"),
            metric("Cost", "None"),
            metric("ModelErrors", "Count"),
        ];
        let mut root = Map::new();
        root.insert("Dialect".into(), self.dialect.as_str().into());
        root.insert("Workflow".into(), self.workflow.as_str().into());
        root.insert("Turns".into(), 1.into());
        root.insert("TurnDuration".into(), self.duration_ms.into());
        root.insert("PromptTokens".into(), self.prompt_tokens.into());
        root.insert("CompletionTokens".into(), self.completion_tokens.into());
        root.insert("Cost".into(), json!(self.cost));
        let model_failed = self
            .failure
            .is_some_and(|failure| failure.stage == Stage::Generation);
        root.insert("ModelErrors".into(), u32::from(model_failed).into());
        if let Some(ttft) = self.time_to_first_token_ms {
            metrics.push(metric("TimeToFirstToken", "Milliseconds"));
            root.insert("TimeToFirstToken".into(), ttft.into());
        }
        let mut directives = vec![json!({
            "Namespace": namespace,
            "Dimensions": [["Dialect", "Workflow"], []],
            "Metrics": metrics,
        })];
        if let Some(failure) = self.failure {
            root.insert("ErrorClass".into(), failure.class.into());
            root.insert("Errors".into(), 1.into());
            directives.push(json!({
                "Namespace": namespace,
                "Dimensions": [["Dialect", "Workflow", "ErrorClass"], ["ErrorClass"]],
                "Metrics": [metric("Errors", "Count")],
            }));
        }
        root.insert(
            "_aws".into(),
            json!({ "Timestamp": timestamp_ms, "CloudWatchMetrics": directives }),
        );
        Value::Object(root).to_string()
    }
}

fn metric(name: &str, unit: &str) -> Value {
    json!({ "Name": name, "Unit": unit })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered() -> TurnMetrics {
        TurnMetrics {
            dialect: Dialect::FreeChat,
            workflow: Workflow::Rag,
            duration_ms: 1200,
            time_to_first_token_ms: Some(340),
            prompt_tokens: 12,
            completion_tokens: 40,
            cost: 0.0021,
            failure: None,
        }
    }

    fn parsed(metrics: &TurnMetrics) -> Value {
        serde_json::from_str(&metrics.line("ChatApi", 1_700_000_000_000)).unwrap()
    }

    fn metric_names(line: &Value, directive: usize) -> Vec<&str> {
        line["_aws"]["CloudWatchMetrics"][directive]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn an_answered_turn_reports_its_figures_by_dialect_and_workflow() {
        let line = parsed(&answered());
        assert_eq!(line["Dialect"], "freechat");
        assert_eq!(line["Workflow"], "rag");
        assert_eq!(line["Turns"], 1);
        assert_eq!(line["TurnDuration"], 1200);
        assert_eq!(line["TimeToFirstToken"], 340);
        assert_eq!(line["PromptTokens"], 12);
        assert_eq!(line["CompletionTokens"], 40);
        assert_eq!(line["Cost"], 0.0021);
        assert_eq!(line["ModelErrors"], 0);
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(),
            1
        );
        assert!(metric_names(&line, 0).contains(&"TimeToFirstToken"));
    }

    #[test]
    fn a_turn_without_a_streamed_token_reports_no_time_to_first_token() {
        let line = parsed(&TurnMetrics {
            time_to_first_token_ms: None,
            ..answered()
        });
        assert!(line.get("TimeToFirstToken").is_none());
        assert!(!metric_names(&line, 0).contains(&"TimeToFirstToken"));
    }

    #[test]
    fn a_failed_generation_counts_a_model_error_and_an_error_of_its_class() {
        let line = parsed(&TurnMetrics {
            failure: Some(Failure {
                class: "timeout",
                stage: Stage::Generation,
            }),
            ..answered()
        });
        assert_eq!(line["ModelErrors"], 1);
        assert_eq!(line["Errors"], 1);
        assert_eq!(line["ErrorClass"], "timeout");
        assert_eq!(metric_names(&line, 1), ["Errors"]);
    }

    #[test]
    fn a_turn_failing_before_the_model_is_an_error_but_no_model_error() {
        let line = parsed(&TurnMetrics::failed_early(
            Dialect::Chatter,
            Workflow::Plain,
            15,
            "unavailable",
        ));
        assert_eq!(line["ModelErrors"], 0);
        assert_eq!(line["Errors"], 1);
        assert_eq!(line["ErrorClass"], "unavailable");
    }
}
