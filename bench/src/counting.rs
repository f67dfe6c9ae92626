//! Counts DynamoDB round trips by operation, with an SDK interceptor on the client the
//! benchmarked store uses: every HTTP request the SDK sends (retries included) is one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

/// Round trips seen since the last `take`, by operation (`UpdateItem`, `Query`, ...).
#[derive(Debug, Clone, Default)]
pub struct RoundTrips {
    seen: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RoundTrips {
    /// The counts so far, which start again from zero.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    pub fn interceptor(&self) -> Observer<Self> {
        Observer(self.clone())
    }
}

impl Observe for RoundTrips {
    fn observe(&self, operation: &str, _body: &[u8]) {
        *self
            .seen
            .lock()
            .unwrap()
            .entry(operation.to_owned())
            .or_default() += 1;
    }
}

/// What a benchmark learns from each request its DynamoDB client sends.
pub trait Observe: std::fmt::Debug + Send + Sync + 'static {
    /// `operation` is the DynamoDB operation (`UpdateItem`, `Query`, ...), `body` the request's.
    fn observe(&self, operation: &str, body: &[u8]);
}

/// The SDK interceptor that shows an [`Observe`] every request, retries included.
#[derive(Debug)]
pub struct Observer<O>(pub O);

impl<O: Observe> Intercept for Observer<O> {
    fn name(&self) -> &'static str {
        "RequestObserver"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        // DynamoDB's JSON protocol names the operation in `X-Amz-Target: DynamoDB_20120810.<Op>`.
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("unknown");
        self.0
            .observe(operation, request.body().bytes().unwrap_or_default());
        Ok(())
    }
}

/// Whether a DynamoDB operation reads (and is billed in read units).
pub fn is_read(operation: &str) -> bool {
    matches!(
        operation,
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems"
    )
}

/// `UpdateItem ×1, TransactWriteItems ×1` (total 2).
pub fn describe(counts: &BTreeMap<String, u64>, runs: u64) -> String {
    let total: u64 = counts.values().sum();
    let per_run = |n: u64| n as f64 / runs.max(1) as f64;
    let parts: Vec<String> = counts
        .iter()
        .map(|(op, n)| format!("{op} x{}", trim(per_run(*n))))
        .collect();
    format!("{} ({})", trim(per_run(total)), parts.join(", "))
}

fn trim(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as u64)
    } else {
        format!("{v:.2}")
    }
}
