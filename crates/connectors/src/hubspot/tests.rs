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

#[test]
fn later_syncs_search_what_changed_and_restart_at_the_cap() {
    let since = DateTime::parse_from_rfc3339("2026-01-10T08:00:00Z").unwrap().to_utc();
    let from = since.timestamp_millis();
    let [owners, companies, contacts, deals] = <[Resource; 4]>::try_from(resources()).unwrap();
    // Owners have no search: their list is read; so is every list on a first sync.
    assert_eq!(page_request("https://api.hubapi.com", &owners, None, Some(since), "x").body, None);
    assert_eq!(page_request("https://api.hubapi.com", &companies, None, None, "x").body, None);
    let first = page_request("https://api.hubapi.com/", &contacts, None, Some(since), "steward_account_id");
    assert_eq!(first.url, "https://api.hubapi.com/crm/v3/objects/contacts/search");
    assert_eq!(
        first.body.unwrap(),
        json!({"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": from.to_string()}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["email", "firstname", "lastname", "jobtitle"], "limit": 100})
    );
    let next = page_request("https://api.hubapi.com", &companies, Some(&format!("{from}:200")), Some(since), "acct_id");
    let body = next.body.unwrap();
    assert_eq!(
        (body["after"].clone(), body["filterGroups"][0]["filters"][0]["propertyName"].clone()),
        (json!("200"), json!("hs_lastmodifieddate"))
    );
    assert_eq!(body["properties"].as_array().unwrap().last().unwrap(), "acct_id");

    // A search page (HubSpot's answer): the next page within the search, then, where the next
    // would pass 10,000 results, a new search from the newest modification read.
    let result = |id: &str, updated: &str| {
        json!({"id": id, "properties": {"dealname": "Renewal", "hs_lastmodifieddate": updated, "hs_object_id": id},
            "createdAt": "2025-12-01T00:00:00Z", "updatedAt": updated, "archived": false})
    };
    let answer = |after: &str| {
        json!({"total": 12000, "results": [result("1", "2026-01-10T09:00:00.000Z"), result("2", "2026-01-10T09:30:00.000Z")],
            "paging": {"next": {"after": after}}})
        .to_string()
    };
    let (objects, cursor) = page(&deals, None, Some(since), answer("100").as_bytes(), 5).unwrap();
    assert_eq!((objects.len(), cursor), (2, Some(format!("{from}:100"))));
    let (_, cursor) = page(&deals, Some(&format!("{from}:9800")), Some(since), answer("9900").as_bytes(), 5).unwrap();
    assert_eq!(cursor, Some(format!("{from}:9900")), "the last page within the cap");
    let (_, cursor) = page(&deals, Some(&format!("{from}:9900")), Some(since), answer("10000").as_bytes(), 5).unwrap();
    let newest = DateTime::parse_from_rfc3339("2026-01-10T09:30:00Z").unwrap().timestamp_millis();
    assert_eq!(cursor, Some(format!("{newest}:")), "a new search from the newest read");
    let restarted = page_request("https://api.hubapi.com", &deals, cursor.as_deref(), Some(since), "x").body.unwrap();
    assert_eq!(
        (restarted["filterGroups"][0]["filters"][0]["value"].clone(), restarted.get("after")),
        (json!(newest.to_string()), None)
    );
    let (_, end) = page(&deals, None, Some(since), br#"{"total": 0, "results": []}"#, 5).unwrap();
    assert_eq!(end, None);

    // A search whose ten thousand results are all of one millisecond: the millisecond is read
    // alone, by id, from the first; at that search's cap, on from the highest id read; once
    // it is read, what follows it.
    let same_ms = |ids: [&str; 2], after: Option<&str>| {
        let mut page = json!({"total": 12000, "results": [result(ids[0], "2026-01-10T08:00:00.000Z"),
            result(ids[1], "2026-01-10T08:00:00.000Z")]});
        if let Some(after) = after {
            page["paging"] = json!({"next": {"after": after}});
        }
        page.to_string()
    };
    let (_, cursor) =
        page(&deals, Some(&format!("{from}:9900")), Some(since), same_ms(["9", "4"], Some("10000")).as_bytes(), 5)
            .unwrap();
    assert_eq!(cursor, Some(format!("{from}=0:")), "the millisecond by id, from the first");
    let by_id = page_request("https://api.hubapi.com", &deals, cursor.as_deref(), Some(since), "x").body.unwrap();
    assert_eq!(
        (by_id["filterGroups"].clone(), by_id["sorts"].clone(), by_id.get("after")),
        (
            json!([{"filters": [
                {"propertyName": "hs_lastmodifieddate", "operator": "EQ", "value": from.to_string()},
                {"propertyName": "hs_object_id", "operator": "GT", "value": "0"}]}]),
            json!([{"propertyName": "hs_object_id", "direction": "ASCENDING"}]),
            None
        )
    );
    let within = format!("{from}=0:");
    let (_, cursor) = page(&deals, Some(&within), Some(since), same_ms(["3", "4"], Some("100")).as_bytes(), 5).unwrap();
    assert_eq!(cursor, Some(format!("{from}=0:100")), "the next page of that search");
    let next = page_request("https://api.hubapi.com", &deals, cursor.as_deref(), Some(since), "x").body.unwrap();
    assert_eq!(
        (next["after"].clone(), next["filterGroups"][0]["filters"][1]["value"].clone()),
        (json!("100"), json!("0"))
    );
    let at_cap = format!("{from}=0:9900");
    let (_, cursor) =
        page(&deals, Some(&at_cap), Some(since), same_ms(["10006", "10007"], Some("10000")).as_bytes(), 5).unwrap();
    assert_eq!(cursor, Some(format!("{from}=10007:")), "on from the highest id read");
    let (_, cursor) =
        page(&deals, Some(&format!("{from}=10007:")), Some(since), same_ms(["10008", "10009"], None).as_bytes(), 5)
            .unwrap();
    assert_eq!(cursor, Some(format!("{}:", from + 1)), "the millisecond is read: what follows it");
    // Ids that are not numbers cannot be followed: the search moves past the millisecond
    // rather than read the same again.
    let (_, cursor) =
        page(&deals, Some(&at_cap), Some(since), same_ms(["a", "b"], Some("10000")).as_bytes(), 5).unwrap();
    assert_eq!(cursor, Some(format!("{}:", from + 1)));

    // Search results carry no associations: the deals' companies are read in one batch, the
    // primary first.
    let (mut found, _) = page(&deals, None, Some(since), answer("100").as_bytes(), 5).unwrap();
    assert_eq!(found[0].parent_id, None);
    let ask = associations_request("https://api.hubapi.com", &deals, &found, Some(since)).unwrap();
    assert_eq!(ask.url, "https://api.hubapi.com/crm/v4/associations/deals/companies/batch/read");
    assert_eq!(ask.body.unwrap(), json!({"inputs": [{"id": "1"}, {"id": "2"}]}));
    assert!(associations_request("https://api.hubapi.com", &companies, &found, Some(since)).is_none());
    assert!(associations_request("https://api.hubapi.com", &deals, &found, None).is_none(), "lists carry them");
    let batch = json!({"status": "COMPLETE", "results": [{"from": {"id": "1"}, "to": [
            {"toObjectId": 555, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 341, "label": null}]},
            {"toObjectId": 9876543210_i64, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"},
                {"category": "HUBSPOT_DEFINED", "typeId": 341, "label": null}]}]}],
        "startedAt": "2026-01-10T10:00:00.000Z", "completedAt": "2026-01-10T10:00:00.020Z"});
    attach_companies(&deals, &mut found, batch.to_string().as_bytes()).unwrap();
    assert_eq!((found[0].parent_id.as_deref(), found[1].parent_id.as_deref()), (Some("9876543210"), None));
    assert!(attach_companies(&deals, &mut found, b"{}").is_err());
}
