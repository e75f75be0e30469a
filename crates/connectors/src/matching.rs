//! Matching a provider's customer or company to an account: by the account id the provider
//! holds for it (an external id in its metadata), by the provider's id held as an account
//! trait, then by email domain, then by email (a person's account). What matches nothing is
//! left for an operator to link by hand.
//!
//! The workspace's accounts and people are read into a [`Directory`] once for a backfill,
//! and kept for webhooks (read again when a lookup misses and the copy is older than a few
//! seconds), rather than searched one query per object.

use std::collections::HashMap;

use domain::{AccountId, WorkspaceId};
use serde_json::Value;
use store::{PageRequest, Store};

/// What identifies a provider's customer or company.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MatchKeys {
    /// An account id the provider holds for it (a metadata field).
    pub external_account: Option<String>,
    /// The provider's own id, which an account may hold as a trait.
    pub provider_id: String,
    pub domain: Option<String>,
    pub email: Option<String>,
}

/// How a connector matches, from its configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchRules {
    /// The provider-side field holding Steward's account id.
    pub metadata_key: String,
    /// The account trait holding the provider's id.
    pub account_trait: String,
    /// The account traits holding a domain or a website.
    pub domain_traits: Vec<String>,
    /// Create an account (its id the provider's) for what matches nothing.
    pub create_accounts: bool,
}

impl Default for MatchRules {
    fn default() -> Self {
        MatchRules {
            metadata_key: "steward_account_id".into(),
            account_trait: String::new(),
            domain_traits: vec!["domain".into(), "website".into()],
            create_accounts: false,
        }
    }
}

/// Mail providers whose domain says nothing of the company.
const PUBLIC_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "gmx.de",
    "web.de",
    "yandex.ru",
    "mail.ru",
    "qq.com",
    "163.com",
    "example.com",
];

/// The company domain of an email address; none for public mail providers.
pub fn domain_of(email: &str) -> Option<&str> {
    let domain = email.rsplit_once('@')?.1.trim();
    (!domain.is_empty() && domain.contains('.') && !PUBLIC_DOMAINS.contains(&domain.to_ascii_lowercase().as_str()))
        .then_some(domain)
}

/// A domain as an account trait may hold it: `acme.com`, `https://www.acme.com/about`.
pub(crate) fn normalize_domain(value: &str) -> Option<String> {
    let v = value.trim().to_ascii_lowercase();
    let v = v.split_once("://").map_or(v.as_str(), |(_, rest)| rest);
    let host = v.split(['/', '?', '#', ':']).next()?;
    let host = host.strip_prefix("www.").unwrap_or(host);
    (host.contains('.')).then(|| host.to_owned())
}

/// A match and how it was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub account: AccountId,
    pub by: &'static str,
}

/// The workspace's accounts and people as matching needs them.
#[derive(Debug, Default)]
pub struct Directory {
    accounts: HashMap<String, ()>,
    by_trait: HashMap<(String, String), Vec<AccountId>>,
    by_domain: HashMap<String, Vec<AccountId>>,
    by_email: HashMap<String, Vec<String>>,
}

impl Directory {
    /// Reads every account and person of `ws`.
    pub async fn load(store: &dyn Store, ws: &WorkspaceId, rules: &MatchRules) -> store::Result<Directory> {
        let mut d = Directory::default();
        let mut page = PageRequest::first(store::MAX_LIMIT);
        loop {
            let accounts = store.list_accounts(ws, &page).await?;
            for a in &accounts.items {
                d.accounts.insert(a.account_id.to_string(), ());
                if !rules.account_trait.is_empty()
                    && let Some(v) = trait_text(&a.traits, &rules.account_trait)
                {
                    d.by_trait.entry((rules.account_trait.clone(), v)).or_default().push(a.account_id.clone());
                }
                for key in &rules.domain_traits {
                    if let Some(domain) = trait_text(&a.traits, key).as_deref().and_then(normalize_domain) {
                        d.by_domain.entry(domain).or_default().push(a.account_id.clone());
                    }
                }
            }
            match accounts.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        let mut page = PageRequest::first(store::MAX_LIMIT);
        loop {
            let people = store.list_people(ws, &page).await?;
            for p in &people.items {
                if let Some(email) = trait_text(&p.traits, "email") {
                    d.by_email.entry(email.to_ascii_lowercase()).or_default().push(p.person_id.clone());
                }
            }
            match people.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        Ok(d)
    }

    pub fn has_account(&self, id: &str) -> bool {
        self.accounts.contains_key(id)
    }

    /// The account `keys` match, if exactly one does at the first rule that finds any.
    /// Matching by email reads the person's accounts from the store.
    pub async fn find(
        &self,
        store: &dyn Store,
        ws: &WorkspaceId,
        rules: &MatchRules,
        keys: &MatchKeys,
    ) -> store::Result<Option<Match>> {
        if let Some(account) = keys.external_account.as_deref().and_then(|a| AccountId::parse(a).ok()) {
            return Ok(Some(Match { account, by: "external_id" }));
        }
        let one = |found: Option<&Vec<AccountId>>, by| match found.map(Vec::as_slice) {
            Some([account]) => Some(Match { account: account.clone(), by }),
            _ => None,
        };
        if !rules.account_trait.is_empty()
            && let Some(m) =
                one(self.by_trait.get(&(rules.account_trait.clone(), keys.provider_id.clone())), "external_id")
        {
            return Ok(Some(m));
        }
        if let Some(m) = keys.domain.as_deref().and_then(|d| one(self.by_domain.get(&d.to_ascii_lowercase()), "domain"))
        {
            return Ok(Some(m));
        }
        if let Some(email) = &keys.email
            && let Some([person]) = self.by_email.get(email).map(Vec::as_slice)
            && let Some(p) = store.get_person(ws, person).await?
            && let [account] = p.account_ids.as_slice()
        {
            return Ok(Some(Match { account: account.clone(), by: "email" }));
        }
        if rules.create_accounts
            && let Ok(account) = AccountId::parse(&keys.provider_id)
        {
            return Ok(Some(Match { account, by: "created" }));
        }
        Ok(None)
    }
}

fn trait_text(traits: &Value, key: &str) -> Option<String> {
    match traits.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_domains_from_emails_and_traits() {
        assert_eq!(domain_of("ana@acme.io"), Some("acme.io"));
        assert_eq!(domain_of("ana@Gmail.com"), None);
        assert_eq!(domain_of("not an email"), None);
        assert_eq!(domain_of("ana@localhost"), None);
        for (value, expected) in [
            ("acme.io", Some("acme.io")),
            ("https://www.Acme.io/about?x=1", Some("acme.io")),
            ("http://acme.io:8080", Some("acme.io")),
            ("Acme Inc", None),
        ] {
            assert_eq!(normalize_domain(value).as_deref(), expected, "{value}");
        }
    }
}
