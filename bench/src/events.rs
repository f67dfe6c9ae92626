//! API Gateway HTTP API (payload 2.0) and Function URL events, as Lambda hands them over.

use serde_json::{Value, json};

/// An HTTP request as a payload 2.0 event (Function URLs use the same format).
pub fn http_event(
    method: &str,
    path: &str,
    query: &str,
    token: &str,
    body: Option<&Value>,
) -> Value {
    let mut headers = json!({
        "accept": "application/json",
        "authorization": format!("Bearer {token}"),
        "host": "bench.execute-api.us-east-1.amazonaws.com",
        "user-agent": "bench/1.0",
        "x-forwarded-proto": "https",
    });
    if body.is_some() {
        headers["content-type"] = json!("application/json");
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench/1.0"},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000u64
        },
        "isBase64Encoded": false
    });
    if !query.is_empty() {
        let params: serde_json::Map<String, Value> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect();
        event["queryStringParameters"] = Value::Object(params);
    }
    if let Some(body) = body {
        event["body"] = Value::String(body.to_string());
    }
    event
}

/// The status of a buffered (non-streaming) Lambda HTTP response.
pub fn buffered_status(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(body).ok()?["statusCode"].as_u64()
}

/// The status in a streamed response's prelude (JSON, then eight NUL bytes, then the body).
pub fn streamed_status(raw: &[u8]) -> Option<u64> {
    let end = raw.windows(8).position(|w| w == [0u8; 8])?;
    serde_json::from_slice::<Value>(&raw[..end]).ok()?["statusCode"].as_u64()
}
