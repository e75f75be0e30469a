use super::*;
use chrono::{TimeZone, Utc};
use serde_json::json;

fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

fn batch(body: Value) -> Parsed {
    parse_batch(body.to_string().as_bytes(), now(), &Limits::default()).expect("request accepted")
}

fn payload(ev: &NewEvent) -> Value {
    serde_json::from_str(&ev.payload).unwrap()
}

#[test]
fn each_type_has_its_required_fields() {
    // (message, expected rejection code or None when accepted)
    let cases = [
        (json!({"type": "track", "userId": "u", "event": "Signed Up"}), None),
        (json!({"type": "track", "userId": "u"}), Some(("missing_event", Some("event")))),
        (json!({"type": "track", "userId": "u", "event": "  "}), Some(("missing_event", Some("event")))),
        (json!({"type": "track", "event": "x"}), Some(("missing_identity", Some("userId")))),
        (json!({"type": "track", "userId": "", "anonymousId": "a", "event": "x"}), None),
        (json!({"type": "identify", "anonymousId": "a"}), None),
        (json!({"type": "group", "userId": "u"}), Some(("missing_group_id", Some("groupId")))),
        (json!({"type": "group", "userId": "u", "groupId": 42}), None),
        (json!({"type": "alias", "userId": "u"}), Some(("missing_previous_id", Some("previousId")))),
        (json!({"type": "alias", "anonymousId": "a", "previousId": "p"}), Some(("missing_identity", Some("userId")))),
        (json!({"type": "alias", "userId": "u", "previousId": "p"}), None),
        (json!({"type": "page", "userId": "u", "name": "Home"}), None),
        (json!({"type": "screen", "userId": "u", "name": 3}), Some(("invalid_field", Some("name")))),
        (json!({"type": "launch", "userId": "u"}), Some(("invalid_type", Some("type")))),
        (json!({"userId": "u"}), Some(("missing_type", Some("type")))),
        (
            json!({"type": "track", "userId": "u", "event": "x", "properties": [1]}),
            Some(("invalid_field", Some("properties"))),
        ),
        (json!({"type": "track", "userId": {"a": 1}, "event": "x"}), Some(("invalid_field", Some("userId")))),
        (
            json!({"type": "track", "userId": "u", "event": "x", "timestamp": "yesterday"}),
            Some(("invalid_timestamp", Some("timestamp"))),
        ),
        (json!(17), Some(("not_an_object", None))),
    ];
    for (msg, expected) in cases {
        let p = batch(json!({"batch": [msg.clone()]}));
        match expected {
            None => {
                assert_eq!((p.events.len(), p.rejected.len()), (1, 0), "{msg} should be accepted: {:?}", p.rejected)
            }
            Some((code, field)) => {
                assert_eq!(p.events.len(), 0, "{msg} should be rejected");
                assert_eq!((p.rejected[0].code, p.rejected[0].field), (code, field), "{msg}");
            }
        }
    }
}

#[test]
fn a_batch_keeps_valid_messages_and_reports_each_invalid_index() {
    let p = batch(json!({"batch": [
        {"type": "track", "userId": "u", "event": "a"},
        {"type": "track", "event": "b"},
        {"type": "identify", "userId": "u"},
        {"type": "group", "userId": "u"},
    ]}));
    assert_eq!(p.received, 4);
    assert_eq!(p.events.len(), 2);
    let idx: Vec<_> = p.rejected.iter().map(|r| (r.index, r.code)).collect();
    assert_eq!(idx, [(1, "missing_identity"), (3, "missing_group_id")]);
}

#[test]
fn clock_skew_is_corrected_as_segment_does() {
    // The client's clock is 10 minutes fast: it says it sent at 12:10 something that happened
    // at 12:05 (its time). We received it at 12:00, so it happened at 11:55.
    let p = batch(json!({
        "sentAt": "2026-11-21T12:10:00Z",
        "batch": [{"type": "track", "userId": "u", "event": "x", "timestamp": "2026-11-21T12:05:00.000Z"}],
    }));
    let ev = &p.events[0];
    assert_eq!(ev.timestamp, Utc.with_ymd_and_hms(2026, 11, 21, 11, 55, 0).unwrap());
    let v = payload(ev);
    assert_eq!(v["originalTimestamp"], "2026-11-21T12:05:00.000Z");
    assert_eq!(v["receivedAt"], "2026-11-21T12:00:00.000Z");
    assert_eq!(v["timestamp"], "2026-11-21T11:55:00.000Z");

    // Without sentAt the client's timestamp stands (historical imports); without either, receipt time.
    let p = batch(json!({"batch": [
        {"type": "track", "userId": "u", "event": "x", "timestamp": "2025-01-02T03:04:05+02:00"},
        {"type": "track", "userId": "u", "event": "x"},
        {"type": "track", "userId": "u", "event": "x", "timestamp": "2025-01-02T03:04:05.123456"},
    ]}));
    assert_eq!(p.events[0].timestamp, Utc.with_ymd_and_hms(2025, 1, 2, 1, 4, 5).unwrap());
    assert_eq!(p.events[1].timestamp, now());
    assert_eq!(
        p.events[2].timestamp.timestamp_millis(),
        Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap().timestamp_millis() + 123
    );
}

#[test]
fn batch_context_and_integrations_merge_under_the_messages_own() {
    let p = batch(json!({
        "context": {"library": {"name": "batch-lib"}, "ip": "1.2.3.4"},
        "integrations": {"All": false},
        "batch": [
            {"type": "track", "userId": "u", "event": "x", "context": {"ip": "5.6.7.8", "groupId": "acme"}},
            {"type": "track", "userId": "u", "event": "y"},
        ],
    }));
    let a = payload(&p.events[0]);
    assert_eq!(a["context"], json!({"library": {"name": "batch-lib"}, "ip": "5.6.7.8", "groupId": "acme"}));
    assert_eq!(a["integrations"], json!({"All": false}));
    assert_eq!(p.events[0].group_id.as_deref(), Some("acme"));
    assert_eq!(payload(&p.events[1])["context"]["ip"], "1.2.3.4");
    assert_eq!(p.events[1].group_id, None);
}

#[test]
fn identify_takes_context_traits_under_its_own() {
    let p = batch(json!({"batch": [{
        "type": "identify", "userId": "u",
        "traits": {"email": "a@acme.test"},
        "context": {"traits": {"email": "old@acme.test", "plan": "pro"}},
    }]}));
    assert_eq!(payload(&p.events[0])["traits"], json!({"email": "a@acme.test", "plan": "pro"}));
}

#[test]
fn message_ids_are_kept_or_derived_stably() {
    let msg = json!({"type": "track", "userId": 7, "event": "x", "timestamp": "2026-01-01T00:00:00Z"});
    let a = batch(json!({"batch": [msg.clone()]}));
    let b = batch(json!({"batch": [msg]}));
    assert!(a.events[0].message_id.starts_with("derived-"));
    assert_eq!(a.events[0].message_id, b.events[0].message_id, "a retry without messageId is still deduplicated");
    assert_eq!(a.events[0].user_id.as_deref(), Some("7"));
    let c = batch(json!({"batch": [{"type": "track", "userId": "u", "event": "x", "messageId": "m-1"}]}));
    assert_eq!(c.events[0].message_id, "m-1");
}

#[test]
fn requests_over_the_limits_are_refused_whole() {
    let limits = Limits::default();
    let too_many: Vec<Value> = (0..2_501).map(|_| json!({"type": "track", "userId": "u", "event": "x"})).collect();
    let err = parse_batch(json!({"batch": too_many}).to_string().as_bytes(), now(), &limits).unwrap_err();
    assert_eq!(err, RequestError::TooManyMessages { count: 2_501, limit: 2_500 });

    let big = "x".repeat(40 * 1024);
    let p = batch(json!({"batch": [
        {"type": "track", "userId": "u", "event": "x", "properties": {"blob": big}},
        {"type": "track", "userId": "u", "event": "ok"},
    ]}));
    assert_eq!((p.events.len(), p.rejected[0].code), (1, "message_too_large"));

    let body = json!({"batch": [], "pad": "y".repeat(501 * 1024)}).to_string();
    assert_eq!(
        parse_batch(body.as_bytes(), now(), &limits).unwrap_err(),
        RequestError::Body(BodyError::TooLarge { limit: 500 * 1024 })
    );
    let single = json!({"userId": "u", "event": "x", "properties": {"blob": big}}).to_string();
    assert!(matches!(
        parse_single(EventType::Track, single.as_bytes(), now(), &limits),
        Err(RequestError::MessageTooLarge { .. })
    ));
}

#[test]
fn malformed_bodies_say_what_is_wrong() {
    let limits = Limits::default();
    let err = parse_batch(b"{\"batch\": [", now(), &limits).unwrap_err();
    assert!(matches!(&err, RequestError::InvalidJson(m) if m.contains("end of input")), "{err}");
    assert_eq!(parse_batch(b"{}", now(), &limits).unwrap_err(), RequestError::MissingBatch);
    assert!(matches!(parse_batch(b"{\"batch\": 3}", now(), &limits), Err(RequestError::InvalidJson(_))));
    assert_eq!(
        parse_batch(b"{\"batch\": [], \"sentAt\": \"soon\"}", now(), &limits).unwrap_err(),
        RequestError::InvalidField { field: "sentAt", expected: "an ISO 8601 timestamp" }
    );
    assert_eq!(parse_single(EventType::Track, b"[]", now(), &limits).unwrap_err(), RequestError::NotAnObject);
}

#[test]
fn single_endpoints_take_their_type_from_the_path_and_the_key_from_the_body() {
    let body = json!({"writeKey": "stw_wk_x", "userId": "u", "event": "Clicked", "type": "identify"});
    let p = parse_single(EventType::Track, body.to_string().as_bytes(), now(), &Limits::default()).unwrap();
    assert_eq!(p.write_key.as_deref(), Some("stw_wk_x"));
    assert_eq!(p.events[0].kind, EventType::Track);
    assert!(payload(&p.events[0]).get("writeKey").is_none(), "the key is not stored with the event");
}

#[test]
fn gzip_is_detected_by_content_and_bounded() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let gz = |data: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    assert_eq!(&*decode_body(&gz(b"{\"batch\":[]}"), 1000).unwrap(), b"{\"batch\":[]}");
    assert_eq!(decode_body(&gz(&vec![b' '; 2000]), 1000).unwrap_err(), BodyError::TooLarge { limit: 1000 });
    assert!(matches!(decode_body(&[0x1f, 0x8b, 1, 2, 3], 1000), Err(BodyError::BadGzip(_))));
    assert_eq!(decode_body(b"", 10).unwrap_err(), BodyError::Empty);
    assert_eq!(&*decode_body(b"{}", 10).unwrap(), b"{}");
}
