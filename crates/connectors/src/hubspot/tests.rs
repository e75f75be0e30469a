use super::*;
use serde_json::json;

/// The traits of the one output, which sets traits.
fn only_traits(outputs: Vec<Output>) -> Map<String, Value> {
    match <[Output; 1]>::try_from(outputs) {
        Ok([Output::AccountTraits { traits, .. }]) => traits,
        other => panic!("{other:?}"),
    }
}

fn company(owner: Option<&str>, updated: &str) -> ProviderObject {
    let mut c = object(
        "company",
        json!({"id": "512", "properties": {"name": "Acme", "domain": "www.Acme.io", "industry": "COMPUTER_SOFTWARE",
            "numberofemployees": "240", "lifecyclestage": "customer", "hubspot_owner_id": owner,
            "steward_account_id": null}, "updatedAt": updated, "archived": false}),
        0,
    )
    .unwrap();
    if owner.is_some() {
        c.payload["owner"] = json!({"id": "41", "email": "mia@steward.io", "firstName": "Mia", "lastName": "Svensson"});
    }
    c
}

fn deal(stage: &str, kind: &str, amount: &str, updated: &str) -> ProviderObject {
    let (closed, won) = (stage.starts_with("closed"), stage == "closedwon");
    object(
        "deal",
        json!({"id": "77", "properties": {"dealname": "Acme 2025", "amount": amount, "dealstage": stage,
            "dealtype": kind, "hs_is_closed": closed.to_string(), "hs_is_closed_won": won.to_string(),
            "closedate": "2025-03-31T00:00:00Z", "createdate": "2025-01-10T11:02:13.445Z", "pipeline": "default"},
            "updatedAt": updated, "archived": false,
            "associations": {"companies": {"results": [{"id": "512", "type": "deal_to_company_unlabeled"},
                {"id": "512", "type": "deal_to_company"}]}}}),
        0,
    )
    .unwrap()
}

fn names(outputs: &[Output]) -> Vec<(&str, &str)> {
    outputs
        .iter()
        .map(|o| match o {
            Output::Event { message_id, name, .. } => (message_id.as_str(), name.as_str()),
            Output::AccountTraits { .. } => ("", "(traits)"),
            _ => ("", "(other)"),
        })
        .collect()
}

#[test]
fn companies_set_traits_with_their_owner_as_csm() {
    let c = company(Some("41"), "2025-01-20T16:03:41.502Z");
    assert_eq!((c.version, c.label.as_str()), (1_737_389_021_502, "Acme · www.Acme.io · 512"));
    assert_eq!(owner_id(&c).as_deref(), Some("41"));
    let keys = match_keys(&c, "steward_account_id");
    assert_eq!((keys.external_account, keys.domain.as_deref()), (None, Some("acme.io")));
    let traits = only_traits(outputs(&c, None));
    assert_eq!(
        Value::Object(traits),
        json!({"crm_id": "512", "name": "Acme", "domain": "acme.io", "industry": "COMPUTER_SOFTWARE",
            "lifecycle_stage": "customer", "employees": 240, "csm_email": "mia@steward.io", "csm_name": "Mia Svensson"})
    );
    // Read again unchanged, it tells nothing; without an owner, the CSM is cleared.
    assert!(outputs(&company(Some("41"), "2025-01-21T00:00:00Z"), Some(&c)).is_empty());
    let traits = only_traits(outputs(&company(None, "2025-01-22T00:00:00Z"), Some(&c)));
    assert_eq!((traits["csm_email"].clone(), traits["csm_name"].clone()), (Value::Null, Value::Null));
}

#[test]
fn deals_tell_their_closing_once_and_sum_into_the_open_pipeline() {
    let open = deal("contractsent", "existingbusiness", "24000", "2025-01-15T14:40:00Z");
    assert_eq!(open.parent_id.as_deref(), Some("512"), "the primary association");
    assert_eq!(names(&outputs(&open, None)), [("hubspot:deal:77:renewal_created", "Renewal Opportunity Created")]);
    let won = deal("closedwon", "existingbusiness", "24000", "2025-03-30T10:00:00Z");
    let told = outputs(&won, Some(&open));
    assert_eq!(names(&told), [("hubspot:deal:77:won", "Deal Won")]);
    let Output::Event { properties, at, .. } = &told[0] else { panic!() };
    assert_eq!((properties["amount"].clone(), at.to_rfc3339()), (json!(24000.0), "2025-03-31T00:00:00+00:00".into()));
    assert!(outputs(&won, Some(&won)).is_empty(), "told once");
    let lost = deal("closedlost", "newbusiness", "5000", "2025-02-01T00:00:00Z");
    assert_eq!(names(&outputs(&lost, None)), [("hubspot:deal:77:lost", "Deal Lost")]);
    let other = deal("appointmentscheduled", "newbusiness", "1500.50", "2025-01-01T00:00:00Z");
    assert_eq!(
        Value::Object(open_pipeline(&[&open, &won, &lost, &other])),
        json!({"open_pipeline_amount": 25500.5, "open_deals": 2})
    );
}

#[test]
fn deliveries_name_changes_and_pages_follow_after() {
    let batch = json!([{"eventId": 2, "subscriptionType": "company.propertyChange", "objectId": 512,
            "propertyName": "hubspot_owner_id", "propertyValue": "41", "occurredAt": 1},
        {"eventId": 1, "subscriptionType": "deal.creation", "objectId": 77, "occurredAt": 1}]);
    let d = delivery(batch.to_string().as_bytes()).unwrap();
    assert!(d.event_id.starts_with("batch:") && d.objects.is_empty(), "{d:?}");
    assert_eq!(d.event_type, "company.propertyChange,deal.creation");
    let reordered = json!([batch[1], batch[0]]);
    assert_eq!(delivery(reordered.to_string().as_bytes()).unwrap().event_id, d.event_id);
    assert_eq!(delivery(json!([batch[1]]).to_string().as_bytes()).unwrap().event_id, "1");
    for bad in
        [json!({"eventId": 1}), json!([]), json!([{"eventId": 1, "objectId": 2}]), json!([{"subscriptionType": "x"}])]
    {
        assert!(matches!(delivery(bad.to_string().as_bytes()), Err(WebhookError::BadPayload(_))), "{bad}");
    }

    // A deletion is the object archived at the event's time: it leaves the pipeline.
    let deletion = json!([{"eventId": 3, "subscriptionType": "deal.deletion", "objectId": 77, "occurredAt": 1_740_000_000_000_i64}]);
    let d = delivery(deletion.to_string().as_bytes()).unwrap();
    let gone = &d.objects[0];
    assert_eq!((gone.kind.as_str(), gone.object_id.as_str(), gone.version), ("deal", "77", 1_740_000_000_000));
    assert!(outputs(gone, Some(&deal("contractsent", "newbusiness", "900", "2025-01-01T00:00:00Z"))).is_empty());
    assert_eq!(open_pipeline(&[gone])["open_deals"], 0);

    let companies = &resources()[1];
    let url = page_url("https://api.hubapi.com/", companies, Some("NTI1Cg=="), "steward_account_id");
    assert!(url.starts_with("https://api.hubapi.com/crm/v3/objects/companies?limit=100&properties=name,"), "{url}");
    assert!(url.ends_with(",hubspot_owner_id,steward_account_id&after=NTI1Cg%3D%3D"), "{url}");
    let body = json!({"results": [{"id": "1", "properties": {}, "updatedAt": "2025-01-01T00:00:00Z"}],
        "paging": {"next": {"after": "NTI1Cg==", "link": "https://api.hubapi.com/..."}}});
    let (objects, next) = page(companies, None, None, body.to_string().as_bytes(), 5).unwrap();
    assert_eq!((objects.len(), objects[0].kind.as_str(), next.as_deref()), (1, "company", Some("NTI1Cg==")));
    let (_, last) = page(companies, None, None, br#"{"results": []}"#, 5).unwrap();
    assert_eq!(last, None);
}
