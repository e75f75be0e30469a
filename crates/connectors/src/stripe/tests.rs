use super::*;
use serde_json::json;

fn subscription_object(status: &str, quantity: i64, version: i64) -> ProviderObject {
    let sub = json!({"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
        "currency": "usd", "start_date": 1_700_000_000, "created": 1_700_000_000,
        "ended_at": if status == "canceled" { json!(1_710_000_000) } else { Value::Null },
        "cancel_at_period_end": false, "pause_collection": null, "discounts": [],
        "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "quantity": quantity,
            "current_period_end": 1_712_000_000,
            "price": {"id": "price_1", "object": "price", "billing_scheme": "per_unit", "unit_amount": 2_000,
                "currency": "usd", "nickname": "Team", "recurring": {"interval": "month", "interval_count": 1,
                "usage_type": "licensed"}}}]}});
    object(sub, version).unwrap()
}

#[test]
fn deliveries_carry_their_object_at_the_event_time() {
    let body = json!({"id": "evt_9", "object": "event", "type": "customer.updated", "created": 1_700_000_123,
        "data": {"object": {"id": "cus_1", "object": "customer", "email": "Ana@Acme.io", "name": "Acme",
            "metadata": {"steward_account_id": "acme"}}}});
    let d = delivery(body.to_string().as_bytes()).unwrap();
    assert_eq!((d.event_id.as_str(), d.event_type.as_str()), ("evt_9", "customer.updated"));
    let o = &d.objects[0];
    assert_eq!(
        (o.kind.as_str(), o.object_id.as_str(), o.version, o.parent_id.as_deref()),
        ("customer", "cus_1", 1_700_000_123_000, None)
    );
    assert_eq!(o.label, "Acme · Ana@Acme.io · cus_1");
    let keys = match_keys(o, "steward_account_id");
    assert_eq!(keys.external_account.as_deref(), Some("acme"));
    assert_eq!((keys.domain.as_deref(), keys.email.as_deref()), (Some("acme.io"), Some("ana@acme.io")));
    // Kinds not kept are acknowledged with nothing to store.
    let other = json!({"id": "evt_2", "object": "event", "type": "plan.created", "created": 1,
        "data": {"object": {"id": "price_1", "object": "plan"}}});
    assert!(delivery(other.to_string().as_bytes()).unwrap().objects.is_empty());
    for bad in [json!({"object": "event"}), json!({"id": "e", "object": "charge"}), json!([1])] {
        assert!(matches!(delivery(bad.to_string().as_bytes()), Err(WebhookError::BadPayload(_))), "{bad}");
    }
    assert!(delivery(b"not json").is_err());
}

#[test]
fn subscriptions_map_with_status_plan_quantity_and_mrr() {
    let account = AccountId::parse("acme").unwrap();
    let s = subscription(&subscription_object("active", 3, 1_705_000_000_000), &account).unwrap();
    assert_eq!(
        (s.subscription_id.as_str(), s.status, s.quantity, s.mrr.minor),
        ("sub_1", SubscriptionStatus::Active, 3, 6_000)
    );
    assert_eq!((s.plan.as_deref(), s.mrr.currency.as_str()), (Some("Team"), "USD"));
    assert_eq!(s.current_period_end.unwrap().timestamp(), 1_712_000_000);
    assert_eq!(s.updated_at.timestamp(), 1_705_000_000);
    let trial = subscription(&subscription_object("trialing", 3, 1), &account).unwrap();
    assert_eq!(
        (trial.status, trial.mrr.minor, trial.attributes["list_mrr"].clone()),
        (SubscriptionStatus::Trialing, 0, json!(6_000))
    );
    // An ended subscription keeps what it paid; its end is the churn.
    let ended = subscription(&subscription_object("canceled", 3, 1), &account).unwrap();
    assert_eq!(
        (ended.status, ended.mrr.minor, ended.ended_at.unwrap().timestamp()),
        (SubscriptionStatus::Canceled, 6_000, 1_710_000_000)
    );
}

fn names(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event { name, message_id, .. } => Some(format!("{name} {message_id}")),
            _ => None,
        })
        .collect()
}

#[test]
fn changes_of_a_subscription_become_the_accounts_events() {
    let account = AccountId::parse("acme").unwrap();
    let v1 = subscription_object("active", 3, 1_705_000_000_000);
    assert_eq!(names(&outputs(&v1, None, &account)), ["Subscription Started stripe:sub_1:started"]);
    let v2 = subscription_object("active", 5, 1_706_000_000_000);
    assert_eq!(
        names(&outputs(&v2, Some(&v1), &account)),
        ["Subscription Expanded stripe:sub_1:expanded:1706000000000"]
    );
    assert_eq!(
        names(&outputs(&v1, Some(&v2), &account)),
        ["Subscription Contracted stripe:sub_1:contracted:1705000000000"]
    );
    assert!(names(&outputs(&v2, Some(&v2), &account)).is_empty(), "the same state again says nothing");
    let gone = subscription_object("canceled", 5, 1_710_000_000_000);
    assert_eq!(names(&outputs(&gone, Some(&v2), &account)), ["Subscription Canceled stripe:sub_1:canceled"]);
    assert!(names(&outputs(&gone, Some(&gone), &account)).is_empty());
    // Seen first by a backfill, long ended: started and canceled, each at its own time.
    let out = outputs(&gone, None, &account);
    let times: Vec<i64> =
        out.iter().filter_map(|o| if let Output::Event { at, .. } = o { Some(at.timestamp()) } else { None }).collect();
    assert_eq!(times, [1_700_000_000, 1_710_000_000]);
    let mut scheduled = v2.clone();
    scheduled.payload["cancel_at_period_end"] = json!(true);
    scheduled.version += 1;
    assert_eq!(
        names(&outputs(&scheduled, Some(&v2), &account)),
        [format!("Subscription Cancellation Scheduled stripe:sub_1:cancel_scheduled:{}", scheduled.version)]
    );
}

#[test]
fn failed_payments_are_told_once_per_attempt() {
    let account = AccountId::parse("acme").unwrap();
    let invoice = |attempts: i64, status: &str, version: i64| {
        object(
            json!({"id": "in_1", "object": "invoice", "customer": "cus_1", "status": status, "attempt_count": attempts,
            "amount_due": 5_000, "currency": "usd", "subscription": "sub_1"}),
            version,
        )
        .unwrap()
    };
    let first = invoice(1, "open", 10_000);
    assert_eq!(names(&outputs(&first, None, &account)), ["Payment Failed stripe:in_1:payment_failed:1"]);
    assert!(names(&outputs(&first, Some(&first), &account)).is_empty());
    let second = invoice(2, "open", 20_000);
    assert_eq!(names(&outputs(&second, Some(&first), &account)), ["Payment Failed stripe:in_1:payment_failed:2"]);
    assert!(names(&outputs(&invoice(2, "paid", 30_000), Some(&second), &account)).is_empty());
    assert!(names(&outputs(&invoice(0, "draft", 1), None, &account)).is_empty());
}

#[test]
fn list_pages_and_their_cursors() {
    let body = json!({"object": "list", "has_more": true, "url": "/v1/customers",
        "data": [{"id": "cus_1", "object": "customer"}, {"id": "cus_2", "object": "customer"}]});
    let (data, next) = page(body.to_string().as_bytes()).unwrap();
    assert_eq!((data.len(), next.as_deref()), (2, Some("cus_2")));
    let last = json!({"object": "list", "has_more": false, "data": [{"id": "cus_3", "object": "customer"}]});
    assert_eq!(page(last.to_string().as_bytes()).unwrap().1, None);
    assert!(page(b"{}").is_err());
    let r = &resources()[0];
    assert_eq!(page_url("http://127.0.0.1:9/", r, None), "http://127.0.0.1:9/v1/customers?limit=100");
    assert_eq!(page_url("http://h", r, Some("cus_2")), "http://h/v1/customers?limit=100&starting_after=cus_2");
}
