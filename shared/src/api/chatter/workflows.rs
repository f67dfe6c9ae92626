//! What the workflows can use and how they have run: `/tools/available`, `/mcp/status`,
//! `/performance/stats`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ServiceResult;
use crate::tools::mcp::ServerStatus;
use crate::tools::{ToolKind, Toolset};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/chat/tools/available", get(available_tools))
        .route("/api/v1/chat/mcp/status", get(mcp_status))
        .route("/api/v1/chat/performance/stats", get(performance_stats))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailableToolResponse {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: ToolKind,
    #[schema(value_type = Object)]
    pub args_schema: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailableToolsResponse {
    pub tools: Vec<AvailableToolResponse>,
}

#[utoipa::path(
    get, path = "/api/v1/chat/tools/available", tag = "workflows",
    responses((status = 200, description = "Built-in tools and those of reachable MCP servers", body = AvailableToolsResponse)),
    security(("bearer" = []))
)]
pub async fn available_tools(
    State(state): State<AppState>,
    _caller: Caller,
) -> Json<AvailableToolsResponse> {
    let toolset = Toolset::discover(&state.mcp).await;
    Json(AvailableToolsResponse {
        tools: toolset
            .tools()
            .iter()
            .map(|t| AvailableToolResponse {
                name: t.name.clone(),
                description: t.description.clone(),
                kind: t.kind,
                args_schema: t.args_schema.clone(),
            })
            .collect(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct McpStatusResponse {
    /// `healthy`, `degraded` (some servers down), `unavailable` (all down) or `disabled`.
    pub status: &'static str,
    pub servers: Vec<ServerStatus>,
    pub last_check: Option<DateTime<Utc>>,
    pub errors: Vec<String>,
}

#[utoipa::path(
    get, path = "/api/v1/chat/mcp/status", tag = "workflows",
    responses((status = 200, description = "Health of the configured MCP servers, checked at most every 10 s", body = McpStatusResponse)),
    security(("bearer" = []))
)]
pub async fn mcp_status(State(state): State<AppState>, _caller: Caller) -> Json<McpStatusResponse> {
    if !state.mcp.is_configured() {
        return Json(McpStatusResponse {
            status: "disabled",
            servers: Vec::new(),
            last_check: None,
            errors: Vec::new(),
        });
    }
    let checked = state.mcp.status().await;
    let down = checked.servers.iter().filter(|s| s.error.is_some()).count();
    let status = match down {
        0 => "healthy",
        n if n == checked.servers.len() => "unavailable",
        _ => "degraded",
    };
    Json(McpStatusResponse {
        status,
        errors: checked
            .servers
            .iter()
            .filter_map(|s| Some(format!("{}: {}", s.name, s.error.as_ref()?)))
            .collect(),
        servers: checked.servers,
        last_check: Some(checked.checked_at),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolStats {
    pub calls: u64,
    pub errors: u64,
    pub avg_duration_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackStats {
    pub up: u64,
    pub down: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PerformanceStatsResponse {
    pub total_executions: u64,
    pub avg_execution_time_ms: u64,
    pub min_execution_time_ms: u64,
    pub max_execution_time_ms: u64,
    pub workflow_types: BTreeMap<String, u64>,
    pub error_counts: BTreeMap<String, u64>,
    #[schema(value_type = Object)]
    pub cache_stats: serde_json::Value,
    pub tool_stats: BTreeMap<String, ToolStats>,
    /// Answers the user rates up and down now (a withdrawn or changed rating counts no more).
    pub feedback: FeedbackStats,
    /// Seconds since the epoch.
    pub timestamp: f64,
}

#[utoipa::path(
    get, path = "/api/v1/chat/performance/stats", tag = "workflows",
    responses((status = 200, description = "The caller's workflow executions, counted across all instances", body = PerformanceStatsResponse)),
    security(("bearer" = []))
)]
pub async fn performance_stats(
    State(state): State<AppState>,
    caller: Caller,
) -> ServiceResult<Json<PerformanceStatsResponse>> {
    let stats = state.store.execution_stats(&caller.user_id).await?;
    let lookups = stats.cache_hits + stats.cache_misses;
    Ok(Json(PerformanceStatsResponse {
        total_executions: stats.executions,
        avg_execution_time_ms: stats.total_ms.checked_div(stats.executions).unwrap_or(0),
        min_execution_time_ms: stats.min_ms,
        max_execution_time_ms: stats.max_ms,
        workflow_types: stats.workflows,
        error_counts: stats.errors,
        cache_stats: serde_json::json!({
            "hits": stats.cache_hits,
            "misses": stats.cache_misses,
            "hit_rate": if lookups == 0 { 0.0 } else { stats.cache_hits as f64 / lookups as f64 },
        }),
        tool_stats: stats
            .tools
            .into_iter()
            .map(|(name, t)| {
                let avg = t.total_ms.checked_div(t.calls).unwrap_or(0);
                (
                    name,
                    ToolStats {
                        calls: t.calls,
                        errors: t.errors,
                        avg_duration_ms: avg,
                    },
                )
            })
            .collect(),
        feedback: FeedbackStats {
            up: stats.feedback.up,
            down: stats.feedback.down,
        },
        timestamp: Utc::now().timestamp_millis() as f64 / 1000.0,
    }))
}
