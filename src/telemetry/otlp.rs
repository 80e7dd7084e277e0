//! The OTLP trace messages the exporter sends, declared by hand for `prost` (field numbers from
//! `opentelemetry/proto/{collector/trace,trace,resource,common}/v1`), and their OTLP/HTTP JSON
//! mapping (ids in hex, camelCase names, enums as integers, 64-bit integers as strings).
//!
//! Public so tests can decode what a collector receives with the same types. Only the fields
//! the gateway writes are declared: a decoder skips the others, as protobuf allows.

use serde_json::{Map, Value as Json, json};

/// `ExportTraceServiceRequest`: the body of `POST /v1/traces`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    /// One per resource (the gateway sends one).
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// Spans of one resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// The process that made them.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// By instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

/// A resource: `service.name` and friends.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Its attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

/// Spans of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    /// The scope.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The spans.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

/// The instrumentation library.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version.
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `Span.SpanKind`: server.
pub const KIND_SERVER: i32 = 2;
/// `Span.SpanKind`: client.
pub const KIND_CLIENT: i32 = 3;
/// `Status.StatusCode`: error.
pub const STATUS_ERROR: i32 = 2;

/// One span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// 8 bytes, or empty for a root span.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// `{operation} {model}`.
    #[prost(string, tag = "5")]
    pub name: String,
    /// [`KIND_SERVER`] or [`KIND_CLIENT`].
    #[prost(int32, tag = "6")]
    pub kind: i32,
    /// Start, Unix nanoseconds.
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// End, Unix nanoseconds.
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// Attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Status (unset unless an error).
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// A span's status.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// Why it failed.
    #[prost(string, tag = "2")]
    pub message: String,
    /// [`STATUS_ERROR`] (0: unset, 1: ok).
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// One attribute.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// Its name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Its value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// An attribute value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// One of the kinds.
    #[prost(oneof = "Value", tags = "1, 2, 3, 4")]
    pub value: Option<Value>,
}

/// The kinds of attribute value the gateway writes.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// A string.
    #[prost(string, tag = "1")]
    StringValue(String),
    /// A boolean.
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    /// An integer.
    #[prost(int64, tag = "3")]
    IntValue(i64),
    /// A float.
    #[prost(double, tag = "4")]
    DoubleValue(f64),
}

impl KeyValue {
    /// An attribute.
    pub fn new(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }
}

impl Span {
    /// The value of attribute `key`, if set.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }
}

impl ExportTraceServiceRequest {
    /// Every span, whatever its resource and scope.
    pub fn spans(&self) -> impl Iterator<Item = &Span> {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
    }

    /// The OTLP/HTTP JSON form.
    pub fn to_json(&self) -> Json {
        let resource_spans: Vec<Json> = self
            .resource_spans
            .iter()
            .map(|rs| {
                let scopes: Vec<Json> = rs
                    .scope_spans
                    .iter()
                    .map(|ss| {
                        let mut o = Map::new();
                        if let Some(s) = &ss.scope {
                            o.insert(
                                "scope".into(),
                                json!({"name": s.name, "version": s.version}),
                            );
                        }
                        o.insert(
                            "spans".into(),
                            ss.spans.iter().map(span_json).collect::<Vec<_>>().into(),
                        );
                        Json::Object(o)
                    })
                    .collect();
                let mut o = Map::new();
                if let Some(r) = &rs.resource {
                    o.insert(
                        "resource".into(),
                        json!({"attributes": attrs_json(&r.attributes)}),
                    );
                }
                o.insert("scopeSpans".into(), scopes.into());
                Json::Object(o)
            })
            .collect();
        json!({ "resourceSpans": resource_spans })
    }

    /// Reads the OTLP/HTTP JSON form (what [`Self::to_json`] writes).
    pub fn from_json(v: &Json) -> Option<ExportTraceServiceRequest> {
        let mut out = ExportTraceServiceRequest::default();
        for rs in v.get("resourceSpans")?.as_array()? {
            let resource = rs.get("resource").map(|r| Resource {
                attributes: r.get("attributes").map(attrs_from_json).unwrap_or_default(),
            });
            let mut scope_spans = Vec::new();
            for ss in rs.get("scopeSpans")?.as_array()? {
                let scope = ss.get("scope").map(|s| InstrumentationScope {
                    name: str_of(s, "name"),
                    version: str_of(s, "version"),
                });
                let mut spans = Vec::new();
                for s in ss.get("spans")?.as_array()? {
                    spans.push(span_from_json(s)?);
                }
                scope_spans.push(ScopeSpans { scope, spans });
            }
            out.resource_spans.push(ResourceSpans {
                resource,
                scope_spans,
            });
        }
        Some(out)
    }
}

fn str_of(v: &Json, k: &str) -> String {
    v.get(k).and_then(Json::as_str).unwrap_or("").to_string()
}

fn span_json(s: &Span) -> Json {
    let mut o = Map::new();
    o.insert("traceId".into(), crate::trace::hex(&s.trace_id).into());
    o.insert("spanId".into(), crate::trace::hex(&s.span_id).into());
    if !s.parent_span_id.is_empty() {
        o.insert(
            "parentSpanId".into(),
            crate::trace::hex(&s.parent_span_id).into(),
        );
    }
    o.insert("name".into(), s.name.clone().into());
    o.insert("kind".into(), s.kind.into());
    o.insert(
        "startTimeUnixNano".into(),
        s.start_time_unix_nano.to_string().into(),
    );
    o.insert(
        "endTimeUnixNano".into(),
        s.end_time_unix_nano.to_string().into(),
    );
    o.insert("attributes".into(), attrs_json(&s.attributes));
    if let Some(st) = &s.status {
        o.insert(
            "status".into(),
            json!({"message": st.message, "code": st.code}),
        );
    }
    Json::Object(o)
}

fn span_from_json(s: &Json) -> Option<Span> {
    let ns = |k: &str| match s.get(k) {
        Some(Json::String(t)) => t.parse().ok(),
        Some(v) => v.as_u64(),
        None => Some(0),
    };
    Some(Span {
        trace_id: unhex(&str_of(s, "traceId"))?,
        span_id: unhex(&str_of(s, "spanId"))?,
        parent_span_id: unhex(&str_of(s, "parentSpanId"))?,
        name: str_of(s, "name"),
        kind: s.get("kind").and_then(Json::as_i64).unwrap_or(0) as i32,
        start_time_unix_nano: ns("startTimeUnixNano")?,
        end_time_unix_nano: ns("endTimeUnixNano")?,
        attributes: s.get("attributes").map(attrs_from_json).unwrap_or_default(),
        status: s.get("status").map(|st| Status {
            message: str_of(st, "message"),
            code: st.get("code").and_then(Json::as_i64).unwrap_or(0) as i32,
        }),
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn attrs_json(attrs: &[KeyValue]) -> Json {
    attrs
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => json!({ "stringValue": s }),
                Some(Value::BoolValue(b)) => json!({ "boolValue": b }),
                Some(Value::IntValue(i)) => json!({ "intValue": i.to_string() }),
                Some(Value::DoubleValue(d)) => json!({ "doubleValue": d }),
                None => json!({}),
            };
            json!({ "key": kv.key, "value": v })
        })
        .collect::<Vec<_>>()
        .into()
}

fn attrs_from_json(v: &Json) -> Vec<KeyValue> {
    let Some(list) = v.as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|kv| {
            let val = kv.get("value");
            let value = val.and_then(|val| {
                if let Some(s) = val.get("stringValue").and_then(Json::as_str) {
                    Some(Value::StringValue(s.into()))
                } else if let Some(b) = val.get("boolValue").and_then(Json::as_bool) {
                    Some(Value::BoolValue(b))
                } else if let Some(i) = val.get("intValue") {
                    i.as_str()
                        .and_then(|s| s.parse().ok())
                        .or_else(|| i.as_i64())
                        .map(Value::IntValue)
                } else {
                    val.get("doubleValue")
                        .and_then(Json::as_f64)
                        .map(Value::DoubleValue)
                }
            });
            KeyValue {
                key: str_of(kv, "key"),
                value: Some(AnyValue { value }),
            }
        })
        .collect()
}
