use super::*;
use serde_json::json;

/// The traits of the one output, which sets traits.
fn only_traits(outputs: Vec<Output>) -> Map<String, Value> {
    match <[Output; 1]>::try_from(outputs) {
        Ok([Output::AccountTraits { traits, .. }]) => traits,
        other => panic!("{other:?}"),
    }
}

fn account(owner: Option<(&str, &str)>, modstamp: &str) -> ProviderObject {
    object(
        json!({"attributes": {"type": "Account", "url": "/services/data/v59.0/sobjects/Account/001A"},
            "Id": "001A", "Name": "Acme", "Website": "https://www.acme.io/", "Industry": "Technology",
            "NumberOfEmployees": 240, "Type": "Customer - Direct", "OwnerId": "005A",
            "Owner": owner.map(|(name, email)| json!({"attributes": {"type": "User"}, "Name": name, "Email": email})),
            "Steward_Account_Id__c": "acme", "SystemModstamp": modstamp}),
        0,
    )
    .unwrap()
}

fn opportunity(stage: &str, closed: bool, won: bool, kind: &str, modstamp: &str) -> ProviderObject {
    object(
        json!({"attributes": {"type": "Opportunity"}, "Id": "006A", "AccountId": "001A", "Name": "Acme 2025",
            "Amount": 24000.0, "CloseDate": "2025-03-31", "StageName": stage, "IsClosed": closed, "IsWon": won,
            "Type": kind, "CreatedDate": "2025-01-10T11:02:13.000+0000", "SystemModstamp": modstamp}),
        0,
    )
    .unwrap()
}

fn event_ids(outputs: &[Output]) -> Vec<&str> {
    outputs
        .iter()
        .filter_map(|o| if let Output::Event { message_id, .. } = o { Some(message_id.as_str()) } else { None })
        .collect()
}

#[test]
fn accounts_set_traits_with_their_owner_as_csm() {
    let a = account(Some(("Ravi Patel", "ravi@steward.io")), "2025-01-18T10:12:45.000+0000");
    assert_eq!((a.kind.as_str(), a.version, a.parent_id.as_deref()), ("account", 1_737_195_165_000, None));
    let keys = match_keys(&a, "Steward_Account_Id__c");
    assert_eq!((keys.external_account.as_deref(), keys.domain.as_deref()), (Some("acme"), Some("acme.io")));
    let traits = only_traits(outputs(&a, None));
    assert_eq!(
        Value::Object(traits),
        json!({"crm_id": "001A", "name": "Acme", "industry": "Technology", "account_type": "Customer - Direct",
            "domain": "acme.io", "employees": 240, "csm_email": "ravi@steward.io", "csm_name": "Ravi Patel"})
    );
    assert!(
        outputs(&account(Some(("Ravi Patel", "ravi@steward.io")), "2025-01-19T00:00:00.000+0000"), Some(&a)).is_empty()
    );
    let moved = account(Some(("Lena Ito", "lena@steward.io")), "2025-01-20T00:00:00.000+0000");
    assert_eq!(outputs(&moved, Some(&a)).len(), 1, "a new CSM is told");
}

#[test]
fn opportunities_tell_their_closing_once_and_sum_into_the_open_pipeline() {
    let open = opportunity("Negotiation/Review", false, false, "Renewal", "2025-01-15T14:40:00.000+0000");
    assert_eq!(open.parent_id.as_deref(), Some("001A"));
    assert_eq!(event_ids(&outputs(&open, None)), ["salesforce:opportunity:006A:renewal_created"]);
    let won = opportunity("Closed Won", true, true, "Renewal", "2025-03-30T09:00:00.000+0000");
    assert_eq!(event_ids(&outputs(&won, Some(&open))), ["salesforce:opportunity:006A:won"]);
    assert!(outputs(&won, Some(&won)).is_empty());
    let lost = opportunity("Closed Lost", true, false, "New Customer", "2025-03-30T09:00:00.000+0000");
    assert_eq!(event_ids(&outputs(&lost, None)), ["salesforce:opportunity:006A:lost"]);
    assert_eq!(
        Value::Object(open_pipeline(&[&open, &won, &lost])),
        json!({"open_pipeline_amount": 24000.0, "open_deals": 1})
    );
    // Deleted (read through queryAll), it tells nothing and leaves the pipeline.
    let mut gone = opportunity("Closed Lost", true, false, "Renewal", "2025-04-01T00:00:00.000+0000");
    gone.payload["IsDeleted"] = json!(true);
    assert!(outputs(&gone, Some(&open)).is_empty());
    assert_eq!(open_pipeline(&[&gone])["open_deals"], 0);
}

#[test]
fn queries_ask_for_changes_since_the_watermark_and_follow_next_records() {
    let accounts = &resources()[1];
    let since = DateTime::parse_from_rfc3339("2025-01-18T10:00:00Z").unwrap().to_utc();
    assert_eq!(
        soql(accounts, Some(since), "Steward_Account_Id__c"),
        "SELECT Id, Name, Website, Industry, NumberOfEmployees, Type, OwnerId, Owner.Name, Owner.Email, \
         IsDeleted, SystemModstamp, Steward_Account_Id__c FROM Account WHERE SystemModstamp > 2025-01-18T10:00:00Z \
         ORDER BY SystemModstamp"
    );
    // A field that is not a custom one (the default metadata key) is not asked for.
    assert!(!soql(accounts, None, "steward_account_id").contains("steward_account_id"));
    let url = page_url("https://acme.my.salesforce.com/", accounts, None, None, "x");
    assert!(
        url.starts_with("https://acme.my.salesforce.com/services/data/v59.0/queryAll?q=SELECT%20Id%2C%20Name"),
        "{url}"
    );
    let next = "/services/data/v59.0/query/01gD0000002HU6KIAW-2000";
    assert_eq!(
        page_url("https://acme.my.salesforce.com", accounts, Some(next), None, "x"),
        format!("https://acme.my.salesforce.com{next}")
    );
    let body = json!({"totalSize": 3, "done": false, "nextRecordsUrl": next,
        "records": [{"attributes": {"type": "User"}, "Id": "005A", "Email": "ravi@steward.io",
            "SystemModstamp": "2024-10-01T08:00:00.000+0000"}, {"attributes": {"type": "Lead"}, "Id": "00Q1"}]});
    let (objects, cursor) = page(body.to_string().as_bytes(), 1).unwrap();
    assert_eq!((objects.len(), objects[0].kind.as_str(), cursor.as_deref()), (1, "owner", Some(next)));
    let (_, cursor) = page(br#"{"totalSize": 0, "done": true, "records": []}"#, 1).unwrap();
    assert_eq!(cursor, None);
    assert!(page(br#"[{"errorCode": "INVALID_FIELD"}]"#, 1).is_err());
}
