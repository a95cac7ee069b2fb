//! The three kinds of event that reach the function, decoded into the `aws_lambda_events` types.

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use serde::Deserialize;
use serde_json::Value;

/// The `detail-type` of an EventBridge schedule's event.
const SCHEDULED: &str = "Scheduled Event";

/// One invocation's event.
#[derive(Debug, Clone)]
pub enum Event {
    /// An API Gateway HTTP API request (payload 2.0).
    Api(Box<ApiGatewayV2httpRequest>),
    /// A batch of reconcile passes from the queue of passes.
    Passes(SqsEvent),
    /// The EventBridge schedule's tick.
    Schedule(EventBridgeEvent),
}

/// The typed shapes, told apart by their required fields: `requestContext.http`, `Records`,
/// `detail-type` + `source` + `detail`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Shape {
    Api(Box<ApiGatewayV2httpRequest>),
    Passes(SqsEvent),
    Schedule(EventBridgeEvent),
}

/// An event of none of the three kinds: a wiring mistake (another trigger pointed at the
/// function), so the invocation fails and nothing runs. The payload is not echoed (it may hold a
/// message body).
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown_event: the event is neither an API Gateway HTTP API request, an SQS batch of \
     reconcile passes nor an EventBridge \"Scheduled Event\""
)]
pub struct UnknownEvent;

impl Event {
    /// Decodes `payload`. An SQS batch must come from SQS (`eventSource` `aws:sqs` on every
    /// record) and a schedule event must be a `Scheduled Event`.
    ///
    /// # Errors
    /// [`UnknownEvent`] for any other payload.
    pub fn decode(payload: Value) -> Result<Self, UnknownEvent> {
        match serde_json::from_value(payload).map_err(|_| UnknownEvent)? {
            Shape::Api(request) => Ok(Self::Api(request)),
            Shape::Passes(batch)
                if !batch.records.is_empty()
                    && batch
                        .records
                        .iter()
                        .all(|r| r.event_source.as_deref() == Some("aws:sqs")) =>
            {
                Ok(Self::Passes(batch))
            }
            Shape::Schedule(tick) if tick.detail_type == SCHEDULED => Ok(Self::Schedule(tick)),
            Shape::Passes(_) | Shape::Schedule(_) => Err(UnknownEvent),
        }
    }
}
