//! Monthly recurring revenue of a Stripe subscription, as SaaS metrics count it: each
//! licensed item's price times its quantity (after `transform_quantity`, through its tiers
//! when tiered), brought to a month from its interval, less the discounts in force (percent
//! or amount off, on the subscription or an item; one-off coupons are not recurring), in the
//! currency's minor units. A subscription pays nothing recurring while it is trialing,
//! paused, incomplete or ended; its list MRR is kept beside for those.

use serde_json::Value;

/// An item's part of the MRR.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemMrr {
    pub item_id: String,
    pub price_id: String,
    /// The price's or plan's name, else its product.
    pub name: Option<String>,
    pub quantity: i64,
    pub interval: String,
    pub interval_count: i64,
    /// Monthly, in minor units, before the subscription's discounts (after the item's own).
    pub monthly: f64,
    /// Billed on usage: no fixed monthly amount.
    pub metered: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mrr {
    pub currency: Option<String>,
    /// Monthly, in minor units, discounts applied, as if the subscription were paying.
    pub list: i64,
    /// What counts now: the list MRR while the subscription pays, else 0.
    pub current: i64,
    pub items: Vec<ItemMrr>,
    /// Parts that could not be valued (a tiered price whose tiers were not included, a
    /// discount given by id only): the MRR leaves them out.
    pub unknown: Vec<String>,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// A price's unit amount in minor units, fractions of a unit included.
fn unit_amount(price: &Value) -> Option<f64> {
    str_of(price, "unit_amount_decimal")
        .and_then(|d| d.parse::<f64>().ok())
        .or_else(|| price.get("unit_amount").and_then(Value::as_f64))
        .or_else(|| price.get("amount_decimal").and_then(Value::as_str).and_then(|d| d.parse().ok()))
        .or_else(|| price.get("amount").and_then(Value::as_f64))
}

/// Months in one interval: the factor from an interval's amount to a month's.
fn per_month(interval: &str, count: i64) -> Option<f64> {
    let count = count.max(1) as f64;
    let per = match interval {
        "month" => 1.0,
        "year" => 1.0 / 12.0,
        "week" => 52.0 / 12.0,
        "day" => 365.0 / 12.0,
        _ => return None,
    };
    Some(per / count)
}

/// The amount for `quantity` units through the price's tiers.
fn tiered(price: &Value, quantity: i64) -> Option<f64> {
    let tiers = price.get("tiers")?.as_array()?;
    let volume = str_of(price, "tiers_mode") == Some("volume");
    let (mut total, mut below) = (0.0, 0i64);
    for tier in tiers {
        let up_to = int_of(tier, "up_to");
        let unit = str_of(tier, "unit_amount_decimal")
            .and_then(|d| d.parse::<f64>().ok())
            .or_else(|| tier.get("unit_amount").and_then(Value::as_f64))
            .unwrap_or(0.0);
        let flat = str_of(tier, "flat_amount_decimal")
            .and_then(|d| d.parse::<f64>().ok())
            .or_else(|| tier.get("flat_amount").and_then(Value::as_f64))
            .unwrap_or(0.0);
        let top = up_to.unwrap_or(i64::MAX);
        if volume {
            if quantity <= top {
                return Some(unit * quantity as f64 + flat);
            }
        } else {
            let in_tier = quantity.min(top) - below;
            if in_tier > 0 {
                total += unit * in_tier as f64 + flat;
            }
            if quantity <= top {
                return Some(total);
            }
            below = top;
        }
    }
    (!volume).then_some(total)
}

/// The quantity billed after `transform_quantity` (divide, rounding up or down).
fn billed_quantity(price: &Value, quantity: i64) -> i64 {
    let Some(t) = price.get("transform_quantity").filter(|t| !t.is_null()) else { return quantity };
    let divide = int_of(t, "divide_by").unwrap_or(1).max(1);
    match str_of(t, "round") {
        Some("up") => (quantity + divide - 1) / divide,
        _ => quantity / divide,
    }
}

/// A discount's coupon: expanded on the discount itself (older API versions) or under its
/// `source` (newer ones).
fn coupon(discount: &Value) -> Option<&Value> {
    let c = discount.get("coupon").or_else(|| discount.get("source").and_then(|s| s.get("coupon")))?;
    c.is_object().then_some(c)
}

/// What a discount takes off a monthly amount, given the subscription's interval; `None`
/// when it cannot be valued; `Some(0)` when it is not in force or not recurring.
fn discount_off(
    discount: &Value,
    monthly: f64,
    months_per_interval: f64,
    currency: Option<&str>,
    at: i64,
) -> Option<f64> {
    if let Some(end) = int_of(discount, "end")
        && end <= at
    {
        return Some(0.0);
    }
    let coupon = coupon(discount)?;
    if str_of(coupon, "duration") == Some("once") {
        return Some(0.0);
    }
    if let Some(p) = coupon.get("percent_off").and_then(Value::as_f64) {
        return Some(monthly * p / 100.0);
    }
    let off = coupon.get("amount_off").and_then(Value::as_f64)?;
    if str_of(coupon, "currency").map(str::to_ascii_lowercase).as_deref()
        != currency.map(str::to_ascii_lowercase).as_deref()
    {
        return Some(0.0);
    }
    // An amount off applies to each invoice, one interval's worth.
    Some((off / months_per_interval).min(monthly))
}

/// The discounts listed at `value` (`discounts`: ids or objects; `discount`: one object).
fn discounts_of(value: &Value) -> Vec<&Value> {
    let mut out: Vec<&Value> =
        value.get("discounts").and_then(Value::as_array).map(|d| d.iter().collect()).unwrap_or_default();
    if let Some(d) = value.get("discount").filter(|d| d.is_object()) {
        out.push(d);
    }
    out
}

/// Whether a subscription pays now: not in trial, not paused, not ended or unpaid at first.
pub fn paying(sub: &Value) -> bool {
    let status = str_of(sub, "status").unwrap_or("active");
    let paused = sub.get("pause_collection").is_some_and(|p| !p.is_null());
    matches!(status, "active" | "past_due" | "unpaid") && !paused
}

/// The MRR of `sub` (a Stripe subscription object) at unix time `at`.
pub fn of(sub: &Value, at: i64) -> Mrr {
    let currency = str_of(sub, "currency").map(str::to_ascii_lowercase);
    let mut items = Vec::new();
    let mut unknown = Vec::new();
    let empty = Vec::new();
    let listed = sub.get("items").and_then(|i| i.get("data")).and_then(Value::as_array).unwrap_or(&empty);
    let mut months_per_interval = 1.0;
    for item in listed {
        let price = item.get("price").filter(|p| p.is_object()).or_else(|| item.get("plan")).unwrap_or(&Value::Null);
        let recurring = price.get("recurring").filter(|r| r.is_object());
        let interval =
            recurring.and_then(|r| str_of(r, "interval")).or_else(|| str_of(price, "interval")).unwrap_or("month");
        let interval_count = recurring
            .and_then(|r| int_of(r, "interval_count"))
            .or_else(|| int_of(price, "interval_count"))
            .unwrap_or(1);
        let usage_type = recurring.and_then(|r| str_of(r, "usage_type")).or_else(|| str_of(price, "usage_type"));
        let metered = usage_type == Some("metered");
        let quantity = int_of(item, "quantity").unwrap_or(if metered { 0 } else { 1 });
        let billed = billed_quantity(price, quantity);
        let item_id = str_of(item, "id").unwrap_or_default().to_owned();
        let per = per_month(interval, interval_count);
        let amount = if metered {
            Some(0.0)
        } else if str_of(price, "billing_scheme") == Some("tiered") {
            tiered(price, billed)
        } else {
            unit_amount(price).map(|u| u * billed as f64)
        };
        let monthly = match (amount, per) {
            (Some(a), Some(p)) => a * p,
            _ => {
                unknown.push(format!("item {item_id}: price {} cannot be valued", str_of(price, "id").unwrap_or("?")));
                0.0
            }
        };
        if let Some(p) = per {
            months_per_interval = 1.0 / p;
        }
        let mut item_monthly = monthly;
        for d in discounts_of(item) {
            match discount_off(d, item_monthly, 1.0 / per.unwrap_or(1.0), currency.as_deref(), at) {
                Some(off) => item_monthly -= off,
                None => unknown.push(format!("item {item_id}: a discount given by id only")),
            }
        }
        let name = str_of(price, "nickname")
            .or_else(|| str_of(price, "lookup_key"))
            .or_else(|| item.get("plan").and_then(|p| str_of(p, "nickname")))
            .or_else(|| price.get("product").and_then(|p| str_of(p, "name").or(p.as_str())))
            .map(str::to_owned);
        items.push(ItemMrr {
            item_id,
            price_id: str_of(price, "id").unwrap_or_default().to_owned(),
            name,
            quantity,
            interval: interval.to_owned(),
            interval_count,
            monthly: item_monthly.max(0.0),
            metered,
        });
    }
    let mut total: f64 = items.iter().map(|i| i.monthly).sum();
    for d in discounts_of(sub) {
        match discount_off(d, total, months_per_interval, currency.as_deref(), at) {
            Some(off) => total -= off,
            None => unknown.push("a subscription discount given by id only".to_owned()),
        }
    }
    let list = total.max(0.0).round() as i64;
    Mrr { currency, list, current: if paying(sub) { list } else { 0 }, items, unknown }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(amount: i64, interval: &str, count: i64, quantity: i64) -> Value {
        json!({"id": "si_1", "object": "subscription_item", "quantity": quantity,
               "price": {"id": "price_1", "object": "price", "billing_scheme": "per_unit", "unit_amount": amount,
                         "unit_amount_decimal": amount.to_string(), "currency": "usd", "nickname": "Pro",
                         "recurring": {"interval": interval, "interval_count": count, "usage_type": "licensed"}}})
    }

    fn sub(items: Vec<Value>) -> Value {
        json!({"id": "sub_1", "object": "subscription", "status": "active", "currency": "usd",
               "items": {"object": "list", "data": items}, "discounts": [], "pause_collection": null})
    }

    #[test]
    fn intervals_quantities_and_items_come_to_a_month() {
        assert_eq!(of(&sub(vec![item(2_000, "month", 1, 3)]), 0).current, 6_000);
        assert_eq!(of(&sub(vec![item(120_000, "year", 1, 1)]), 0).current, 10_000);
        assert_eq!(of(&sub(vec![item(30_000, "month", 3, 1)]), 0).current, 10_000);
        assert_eq!(of(&sub(vec![item(1_200, "week", 1, 1)]), 0).current, 5_200);
        assert_eq!(of(&sub(vec![item(100, "day", 1, 12)]), 0).current, 36_500);
        assert_eq!(of(&sub(vec![item(2_000, "month", 1, 2), item(120_000, "year", 1, 1)]), 0).current, 14_000);
        // Fractions of a cent add up before rounding once.
        let mut fractional = item(0, "month", 1, 3);
        fractional["price"]["unit_amount_decimal"] = json!("33.5");
        assert_eq!(of(&sub(vec![fractional]), 0).current, 101);
        let mut metered = item(10, "month", 1, 0);
        metered["price"]["recurring"]["usage_type"] = json!("metered");
        let m = of(&sub(vec![metered, item(1_000, "month", 1, 1)]), 0);
        assert_eq!((m.current, m.items[0].metered), (1_000, true));
    }

    #[test]
    fn tiers_and_transformed_quantities() {
        let tiers = json!([{"up_to": 5, "unit_amount": 1_000, "flat_amount": null},
                           {"up_to": null, "unit_amount": 500, "flat_amount": 2_000}]);
        let mut graduated = item(0, "month", 1, 8);
        graduated["price"]["billing_scheme"] = json!("tiered");
        graduated["price"]["tiers_mode"] = json!("graduated");
        graduated["price"]["tiers"] = tiers.clone();
        assert_eq!(of(&sub(vec![graduated.clone()]), 0).current, 5 * 1_000 + 3 * 500 + 2_000);
        let mut volume = graduated.clone();
        volume["price"]["tiers_mode"] = json!("volume");
        assert_eq!(of(&sub(vec![volume]), 0).current, 8 * 500 + 2_000);
        // Tiers not included: valued at nothing and said so.
        graduated["price"].as_object_mut().unwrap().remove("tiers");
        let m = of(&sub(vec![graduated]), 0);
        assert_eq!((m.current, m.unknown.len()), (0, 1));
        let mut packaged = item(1_000, "month", 1, 21);
        packaged["price"]["transform_quantity"] = json!({"divide_by": 10, "round": "up"});
        assert_eq!(of(&sub(vec![packaged.clone()]), 0).current, 3_000);
        packaged["price"]["transform_quantity"]["round"] = json!("down");
        assert_eq!(of(&sub(vec![packaged]), 0).current, 2_000);
    }

    #[test]
    fn discounts_in_force_and_recurring_only() {
        let percent = |duration: &str, end: Option<i64>| {
            json!({"id": "di_1", "object": "discount", "end": end,
                   "source": {"type": "coupon", "coupon": {"id": "c", "percent_off": 25.0, "duration": duration}}})
        };
        let mut s = sub(vec![item(10_000, "month", 1, 1)]);
        s["discounts"] = json!([percent("forever", None)]);
        assert_eq!(of(&s, 100).current, 7_500);
        s["discounts"] = json!([percent("repeating", Some(50))]);
        assert_eq!(of(&s, 100).current, 10_000, "ended before");
        s["discounts"] = json!([percent("once", None)]);
        assert_eq!(of(&s, 100).current, 10_000, "not recurring");
        // An older API version's single `discount` with its coupon on it; an amount off each
        // (yearly) invoice comes to a month.
        let mut yearly = sub(vec![item(120_000, "year", 1, 1)]);
        yearly["discount"] = json!({"object": "discount", "end": null,
            "coupon": {"amount_off": 12_000, "currency": "usd", "duration": "forever"}});
        assert_eq!(of(&yearly, 0).current, 9_000);
        yearly["discount"]["coupon"]["currency"] = json!("eur");
        assert_eq!(of(&yearly, 0).current, 10_000, "another currency's amount off does not apply");
        let mut by_id = sub(vec![item(10_000, "month", 1, 1)]);
        by_id["discounts"] = json!(["di_123"]);
        let m = of(&by_id, 0);
        assert_eq!((m.current, m.unknown.len()), (10_000, 1));
        let mut item_discount = item(10_000, "month", 1, 1);
        item_discount["discounts"] = json!([percent("forever", None)]);
        assert_eq!(of(&sub(vec![item_discount]), 0).current, 7_500);
    }

    #[test]
    fn only_a_paying_subscription_counts() {
        for (status, paused, counts) in [
            ("active", false, true),
            ("past_due", false, true),
            ("trialing", false, false),
            ("canceled", false, false),
            ("incomplete", false, false),
            ("paused", false, false),
            ("active", true, false),
        ] {
            let mut s = sub(vec![item(5_000, "month", 1, 1)]);
            s["status"] = json!(status);
            if paused {
                s["pause_collection"] = json!({"behavior": "void", "resumes_at": null});
            }
            let m = of(&s, 0);
            assert_eq!((m.list, m.current), (5_000, if counts { 5_000 } else { 0 }), "{status} {paused}");
        }
    }
}
