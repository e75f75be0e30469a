//! Reading a definition: every value checked where it is, every problem kept with its path.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

use crate::model::*;

/// One thing wrong with a definition: where (`steps[2].branch.then`) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

const ACTIONS: &[&str] =
    &["email", "slack", "webhook", "task", "wait", "wait_for", "branch", "split", "set_trait", "end"];
const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
const BANDS: &[&str] = &["healthy", "neutral", "at_risk"];

/// Reads and checks a journey definition. `condition` checks a condition of the segment
/// language for members of the given kind (the caller knows the workspace's names) and says
/// what is wrong with it.
pub fn parse(doc: &Value, condition: &dyn Fn(&str, Subject) -> Result<(), String>) -> Result<Journey, Vec<Problem>> {
    let mut r = Reader { problems: Vec::new() };
    let journey = r.journey(doc, condition);
    match journey {
        Some(j) if r.problems.is_empty() => Ok(j),
        _ => Err(r.problems),
    }
}

struct Reader {
    problems: Vec<Problem>,
}

/// Seconds in a duration written `30m`, `12h`, `2d` or `1w`.
fn duration(s: &str) -> Option<Seconds> {
    let unit_at = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(unit_at);
    let n: Seconds = n.parse().ok().filter(|n| *n > 0)?;
    let per = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(per)
}

impl Reader {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem { path: path.to_owned(), message: message.into() });
    }

    fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.problem(path, "expected an object");
                None
            }
        }
    }

    /// A required non-empty string member.
    fn text(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        let at = format!("{path}.{key}");
        match m.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                self.problem(&at, "must not be empty");
                None
            }
            None => {
                self.problem(&at, "is required");
                None
            }
            Some(_) => {
                self.problem(&at, "expected a string");
                None
            }
        }
    }

    fn optional_text(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(_) => self.text(m, key, path),
        }
    }

    fn duration_at(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<Seconds> {
        let s = self.text(m, key, path)?;
        let d = duration(&s);
        if d.is_none() {
            self.problem(&format!("{path}.{key}"), format!("{s:?} is not a duration; write 30m, 12h, 2d or 1w"));
        }
        d
    }

    /// Members other than `known` are problems: a misspelt key never passes unseen.
    fn only(&mut self, m: &Map<String, Value>, known: &[&str], path: &str) {
        for key in m.keys() {
            if !known.contains(&key.as_str()) {
                self.problem(
                    &format!("{path}.{key}"),
                    format!("is not a known member; expected one of {}", known.join(", ")),
                );
            }
        }
    }

    fn condition(
        &mut self,
        text: Option<String>,
        subject: Subject,
        path: &str,
        check: &dyn Fn(&str, Subject) -> Result<(), String>,
    ) -> Option<String> {
        let text = text?;
        if let Err(e) = check(&text, subject) {
            self.problem(path, e);
        }
        Some(text)
    }

    fn journey(&mut self, doc: &Value, check: &dyn Fn(&str, Subject) -> Result<(), String>) -> Option<Journey> {
        let m = self.object(doc, "journey")?;
        self.only(
            m,
            &[
                "name",
                "subject",
                "trigger",
                "reentry",
                "exit_when",
                "goal",
                "frequency_cap",
                "quiet_hours",
                "steps",
                "description",
            ],
            "journey",
        );
        let name = self.text(m, "name", "journey");
        let subject = match m.get("subject").and_then(Value::as_str) {
            None if m.get("subject").is_none() => Subject::Accounts,
            Some("accounts") => Subject::Accounts,
            Some("people") => Subject::People,
            _ => {
                self.problem("journey.subject", "expected \"accounts\" or \"people\"");
                Subject::Accounts
            }
        };
        let trigger = match m.get("trigger") {
            Some(t) => self.trigger(t),
            None => {
                self.problem("journey.trigger", "is required");
                None
            }
        };
        let reentry = self.reentry(m.get("reentry"));
        let exit_when = self.optional_text(m, "exit_when", "journey");
        let exit_when = self.condition(exit_when, subject, "journey.exit_when", check);
        let goal = self.optional_text(m, "goal", "journey");
        let goal = self.condition(goal, subject, "journey.goal", check);
        let frequency_cap = match m.get("frequency_cap") {
            None | Some(Value::Null) => None,
            Some(v) => self.frequency_cap(v),
        };
        let quiet_hours = match m.get("quiet_hours") {
            None | Some(Value::Null) => None,
            Some(v) => self.quiet_hours(v),
        };
        let steps = match m.get("steps") {
            Some(Value::Array(items)) if !items.is_empty() => {
                let steps: Vec<Option<Step>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, s)| self.step(s, &format!("steps[{i}]"), subject, check))
                    .collect();
                let steps: Vec<Step> = steps.into_iter().flatten().collect();
                (steps.len() == items.len()).then(|| self.graph(&steps)).map(|()| steps)
            }
            Some(Value::Array(_)) => {
                self.problem("journey.steps", "a journey needs at least one step");
                None
            }
            Some(_) => {
                self.problem("journey.steps", "expected a list of steps");
                None
            }
            None => {
                self.problem("journey.steps", "is required");
                None
            }
        };
        Some(Journey {
            name: name?,
            subject,
            trigger: trigger?,
            reentry: reentry?,
            exit_when,
            goal,
            frequency_cap,
            quiet_hours,
            steps: steps?,
        })
    }

    fn trigger(&mut self, v: &Value) -> Option<Trigger> {
        if v.as_str() == Some("manual") {
            return Some(Trigger::Manual);
        }
        let m = self.object(v, "journey.trigger")?;
        const KINDS: &[&str] =
            &["segment_entered", "segment_exited", "event", "health_band", "alert_opened", "schedule", "manual"];
        let kinds: Vec<&String> = m.keys().collect();
        if kinds.len() != 1 || !KINDS.contains(&kinds[0].as_str()) {
            self.problem("journey.trigger", format!("expected exactly one of {}", KINDS.join(", ")));
            return None;
        }
        let kind = kinds[0].as_str();
        let path = format!("journey.trigger.{kind}");
        let inner = &m[kind];
        match kind {
            "segment_entered" | "segment_exited" | "event" => {
                let Some(name) = inner.as_str().filter(|s| !s.trim().is_empty()) else {
                    self.problem(&path, "expected a name");
                    return None;
                };
                let name = name.to_owned();
                Some(match kind {
                    "segment_entered" => Trigger::SegmentEntered { segment: name },
                    "segment_exited" => Trigger::SegmentExited { segment: name },
                    _ => Trigger::Event { name },
                })
            }
            "health_band" => {
                let b = self.object(inner, &path)?;
                self.only(b, &["to", "from"], &path);
                let to = self.text(b, "to", &path)?;
                let from = self.optional_text(b, "from", &path);
                for (key, band) in [("to", Some(&to)), ("from", from.as_ref())] {
                    if let Some(band) = band
                        && !BANDS.contains(&band.as_str())
                    {
                        self.problem(&format!("{path}.{key}"), format!("expected one of {}", BANDS.join(", ")));
                    }
                }
                Some(Trigger::HealthBand { to, from })
            }
            "alert_opened" => {
                let a = self.object(inner, &path)?;
                self.only(a, &["kind", "reason"], &path);
                Some(Trigger::AlertOpened {
                    kind: self.optional_text(a, "kind", &path),
                    reason: self.optional_text(a, "reason", &path),
                })
            }
            "schedule" => {
                let s = self.object(inner, &path)?;
                self.only(s, &["cron", "timezone", "segment"], &path);
                let cron_text = self.text(s, "cron", &path);
                if let Some(c) = &cron_text
                    && let Err(e) = crate::Cron::parse(c)
                {
                    self.problem(&format!("{path}.cron"), e);
                }
                let timezone = self.optional_text(s, "timezone", &path);
                let segment = self.text(s, "segment", &path);
                Some(Trigger::Schedule { cron: cron_text?, timezone, segment: segment? })
            }
            _ => Some(Trigger::Manual),
        }
    }

    fn reentry(&mut self, v: Option<&Value>) -> Option<Reentry> {
        match v {
            None | Some(Value::Null) => Some(Reentry::Never),
            Some(Value::String(s)) if s == "never" => Some(Reentry::Never),
            Some(Value::String(s)) if s == "always" => Some(Reentry::Always),
            Some(Value::Object(m)) if m.len() == 1 && m.contains_key("after") => {
                self.duration_at(m, "after", "journey.reentry").map(Reentry::After)
            }
            Some(_) => {
                self.problem("journey.reentry", "expected \"never\", \"always\" or {\"after\": \"30d\"}");
                None
            }
        }
    }

    fn frequency_cap(&mut self, v: &Value) -> Option<FrequencyCap> {
        let m = self.object(v, "journey.frequency_cap")?;
        self.only(m, &["max", "per"], "journey.frequency_cap");
        let max = m.get("max").and_then(Value::as_u64).filter(|n| (1..=1000).contains(n));
        if max.is_none() {
            self.problem("journey.frequency_cap.max", "expected a whole number of messages from 1 to 1000");
        }
        let per = self.duration_at(m, "per", "journey.frequency_cap");
        Some(FrequencyCap { max: max? as u32, per: per? })
    }

    fn quiet_hours(&mut self, v: &Value) -> Option<QuietHours> {
        let m = self.object(v, "journey.quiet_hours")?;
        self.only(m, &["from", "to"], "journey.quiet_hours");
        let mut at = |key: &str| -> Option<u32> {
            let path = format!("journey.quiet_hours.{key}");
            let s = self.text(m, key, "journey.quiet_hours")?;
            let minutes = s.split_once(':').and_then(|(h, mi)| {
                let (h, mi): (u32, u32) = (h.parse().ok()?, mi.parse().ok()?);
                (h < 24 && mi < 60 && mi.to_string().len() <= 2).then_some(h * 60 + mi)
            });
            if minutes.is_none() {
                self.problem(&path, format!("{s:?} is not a time of day; write 21:00"));
            }
            minutes
        };
        let (from, to) = (at("from"), at("to"));
        let (from, to) = (from?, to?);
        if from == to {
            self.problem("journey.quiet_hours", "`from` and `to` are the same time: no time would be quiet");
            return None;
        }
        Some(QuietHours { from, to })
    }

    fn step(
        &mut self,
        v: &Value,
        path: &str,
        subject: Subject,
        check: &dyn Fn(&str, Subject) -> Result<(), String>,
    ) -> Option<Step> {
        let m = self.object(v, path)?;
        let id = self.text(m, "id", path);
        if let Some(id) = &id
            && !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.problem(&format!("{path}.id"), "a step id is letters, digits, `_` and `-`");
        }
        let next = self.optional_text(m, "next", path);
        let actions: Vec<&str> = m.keys().map(String::as_str).filter(|k| ACTIONS.contains(k)).collect();
        for key in m.keys() {
            if !ACTIONS.contains(&key.as_str()) && key != "id" && key != "next" {
                self.problem(
                    &format!("{path}.{key}"),
                    format!(
                        "is not a step member; a step has an id, an optional next, and one of {}",
                        ACTIONS.join(", ")
                    ),
                );
            }
        }
        let [kind] = actions.as_slice() else {
            self.problem(path, format!("a step does exactly one of {}", ACTIONS.join(", ")));
            return None;
        };
        let at = format!("{path}.{kind}");
        let inner = &m[*kind];
        let action = match *kind {
            "wait" => {
                let Some(s) = inner.as_str() else {
                    self.problem(&at, "expected a duration, as in \"2d\"");
                    return None;
                };
                match duration(s) {
                    Some(seconds) => Action::Wait { seconds },
                    None => {
                        self.problem(&at, format!("{s:?} is not a duration; write 30m, 12h, 2d or 1w"));
                        return None;
                    }
                }
            }
            "end" => Action::End,
            _ => {
                let a = self.object(inner, &at)?;
                match *kind {
                    "email" => {
                        self.only(a, &["template", "to"], &at);
                        let template = self.text(a, "template", &at);
                        let to = self.text(a, "to", &at);
                        if let Some(to) = &to
                            && !["person", "account_owner", "csm", "account_admins"].contains(&to.as_str())
                            && !to.contains('@')
                        {
                            self.problem(
                                &format!("{at}.to"),
                                "expected person, account_owner, csm, account_admins or an email address",
                            );
                        }
                        if subject == Subject::Accounts && to.as_deref() == Some("person") {
                            self.problem(&format!("{at}.to"), "a journey of accounts has no person of its own; write account_owner, csm or account_admins");
                        }
                        Action::Email { template: template?, to: to? }
                    }
                    "slack" => {
                        self.only(a, &["text", "channel"], &at);
                        Action::Slack {
                            text: self.text(a, "text", &at)?,
                            channel: self.optional_text(a, "channel", &at),
                        }
                    }
                    "webhook" => {
                        self.only(a, &["url", "body"], &at);
                        let url = self.text(a, "url", &at)?;
                        if !(url.starts_with("https://") || url.starts_with("http://")) {
                            self.problem(&format!("{at}.url"), "expected an http:// or https:// address");
                        }
                        Action::Webhook { url, body: a.get("body").cloned() }
                    }
                    "task" => {
                        self.only(a, &["title", "assignee", "priority", "due"], &at);
                        let title = self.text(a, "title", &at);
                        let assignee = self.text(a, "assignee", &at);
                        let priority = self.optional_text(a, "priority", &at).unwrap_or_else(|| "normal".into());
                        if !PRIORITIES.contains(&priority.as_str()) {
                            self.problem(
                                &format!("{at}.priority"),
                                format!("expected one of {}", PRIORITIES.join(", ")),
                            );
                        }
                        let due = match a.get("due") {
                            None | Some(Value::Null) => None,
                            Some(_) => self.duration_at(a, "due", &at),
                        };
                        Action::Task { title: title?, assignee: assignee?, priority, due }
                    }
                    "wait_for" => {
                        self.only(a, &["event", "key", "timeout", "on_timeout"], &at);
                        let event = self.text(a, "event", &at);
                        let key = self.optional_text(a, "key", &at);
                        let timeout = self.duration_at(a, "timeout", &at);
                        let on_timeout = self.text(a, "on_timeout", &at);
                        Action::WaitFor { event: event?, key, timeout: timeout?, on_timeout: on_timeout? }
                    }
                    "branch" => {
                        self.only(a, &["if", "then", "else"], &at);
                        let condition = self.text(a, "if", &at);
                        let condition = self.condition(condition, subject, &format!("{at}.if"), check);
                        let then = self.text(a, "then", &at);
                        let otherwise = self.text(a, "else", &at);
                        Action::Branch { condition: condition?, then: then?, otherwise: otherwise? }
                    }
                    "split" => {
                        self.only(a, &["arms"], &at);
                        let Some(Value::Array(arms)) = a.get("arms") else {
                            self.problem(&format!("{at}.arms"), "expected a list of {\"weight\", \"next\"}");
                            return None;
                        };
                        let mut out = Vec::new();
                        for (i, arm) in arms.iter().enumerate() {
                            let p = format!("{at}.arms[{i}]");
                            let Some(arm) = self.object(arm, &p) else { continue };
                            self.only(arm, &["weight", "next"], &p);
                            let weight =
                                arm.get("weight").and_then(Value::as_u64).filter(|w| (1..=1_000_000).contains(w));
                            if weight.is_none() {
                                self.problem(&format!("{p}.weight"), "expected a whole number from 1 to 1000000");
                            }
                            if let (Some(w), Some(n)) = (weight, self.text(arm, "next", &p)) {
                                out.push((w as u32, n));
                            }
                        }
                        if arms.len() < 2 {
                            self.problem(&format!("{at}.arms"), "a split needs at least two arms");
                        }
                        Action::Split { arms: out }
                    }
                    "set_trait" => {
                        self.only(a, &["key", "value"], &at);
                        let key = self.text(a, "key", &at);
                        let value = a.get("value").cloned();
                        if value.is_none() {
                            self.problem(&format!("{at}.value"), "is required");
                        }
                        Action::SetTrait { key: key?, value: value? }
                    }
                    _ => unreachable!("every action is handled"),
                }
            }
        };
        if next.is_some() && !action.falls_through() {
            self.problem(&format!("{path}.next"), format!("a {kind} step chooses where to go; it takes no next"));
        }
        Some(Step { id: id?, action, next })
    }

    /// Step ids are unique, every reference names a step, every step can be reached from the
    /// first, and no loop goes round without waiting.
    fn graph(&mut self, steps: &[Step]) {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, s) in steps.iter().enumerate() {
            if let Some(first) = index.insert(&s.id, i) {
                self.problem(&format!("steps[{i}].id"), format!("{:?} is also the id of steps[{first}]", s.id));
            }
        }
        // Where each step may go.
        let mut edges: Vec<Vec<usize>> = Vec::with_capacity(steps.len());
        for (i, s) in steps.iter().enumerate() {
            let mut out = Vec::new();
            let refer = |target: &str, path: String, this: &mut Reader| match index.get(target) {
                Some(&j) => Some(j),
                None => {
                    this.problem(&path, format!("no step has the id {target:?}"));
                    None
                }
            };
            if let Some(n) = &s.next {
                out.extend(refer(n, format!("steps[{i}].next"), self));
            } else if s.action.falls_through() && i + 1 < steps.len() {
                out.push(i + 1);
            }
            for (k, t) in s.action.targets().into_iter().enumerate() {
                let path = match &s.action {
                    Action::Branch { .. } => format!("steps[{i}].branch.{}", if k == 0 { "then" } else { "else" }),
                    Action::Split { .. } => format!("steps[{i}].split.arms[{k}].next"),
                    _ => format!("steps[{i}].wait_for.on_timeout"),
                };
                out.extend(refer(t, path, self));
            }
            edges.push(out);
        }
        let mut reached = vec![false; steps.len()];
        let mut todo = vec![0];
        while let Some(i) = todo.pop() {
            if !std::mem::replace(&mut reached[i], true) {
                todo.extend(&edges[i]);
            }
        }
        for (i, r) in reached.iter().enumerate() {
            if !r {
                self.problem(&format!("steps[{i}]"), format!("no step leads to {:?}", steps[i].id));
            }
        }
        // A loop among steps that do not wait would go round at once, forever.
        let instant: Vec<bool> = steps.iter().map(|s| !s.action.waits()).collect();
        let mut state = vec![0u8; steps.len()];
        let mut reported: HashSet<usize> = HashSet::new();
        for start in 0..steps.len() {
            if state[start] == 0 && instant[start] {
                let mut path = Vec::new();
                self.spin(start, &edges, &instant, &mut state, &mut path, steps, &mut reported);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spin(
        &mut self,
        i: usize,
        edges: &[Vec<usize>],
        instant: &[bool],
        state: &mut [u8],
        path: &mut Vec<usize>,
        steps: &[Step],
        reported: &mut HashSet<usize>,
    ) {
        state[i] = 1;
        path.push(i);
        for &j in &edges[i] {
            if !instant[j] {
                continue;
            }
            if state[j] == 1 {
                let from = path.iter().position(|&k| k == j).expect("on the path");
                if reported.insert(j) {
                    let names: Vec<&str> = path[from..].iter().chain([&j]).map(|&k| steps[k].id.as_str()).collect();
                    self.problem(
                        &format!("steps[{j}]"),
                        format!("the steps {} loop without a wait; put a wait in the loop", names.join(" -> ")),
                    );
                }
            } else if state[j] == 0 {
                self.spin(j, edges, instant, state, path, steps, reported);
            }
        }
        path.pop();
        state[i] = 2;
    }
}

#[cfg(test)]
mod tests;
