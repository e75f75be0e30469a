//! Email templates: a subject, an optional HTML part and a text part, each a MiniJinja
//! (Jinja2) template. [`check`] compiles them when a template is saved; [`render`] fills
//! them at send time with the row's context (person, account, scores, unsubscribe link).
//! Values are HTML-escaped in the HTML part only, and a name the context does not have
//! (`{{ person.nmae }}`) is an error, never an empty string.

use std::fmt;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

/// An email template as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The subject line; rendered text with line breaks folded into spaces.
    pub subject: String,
    /// The HTML body, if the email has one.
    pub html: Option<String>,
    /// The plain-text body.
    pub text: String,
}

/// A template filled in for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    /// The subject, on one line.
    pub subject: String,
    /// The HTML body.
    pub html: Option<String>,
    /// The plain-text body.
    pub text: String,
}

/// Which part of a template an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The subject.
    Subject,
    /// The HTML body.
    Html,
    /// The text body.
    Text,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Html => "html",
            Part::Text => "text",
        }
    }
}

/// What is wrong with a template, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct TemplateError {
    /// The part at fault.
    pub part: Part,
    /// The line (from 1) within that part, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.part.name(), self.message),
            None => write!(f, "{}: {}", self.part.name(), self.message),
        }
    }
}

fn error(part: Part, e: &minijinja::Error) -> TemplateError {
    // The detail alone: the kind's generic description adds nothing to "unknown filter x".
    let message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    TemplateError { part, line: e.line(), message }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| if name == "html" { AutoEscape::Html } else { AutoEscape::None });
    env
}

fn parts(template: &Template) -> impl Iterator<Item = (Part, &str)> {
    [
        (Part::Subject, Some(template.subject.as_str())),
        (Part::Html, template.html.as_deref()),
        (Part::Text, Some(template.text.as_str())),
    ]
    .into_iter()
    .filter_map(|(part, source)| source.map(|s| (part, s)))
}

/// Compiles every part, so a template with a syntax error is refused when saved.
pub fn check(template: &Template) -> Result<(), TemplateError> {
    let mut env = environment();
    for (part, source) in parts(template) {
        env.add_template_owned(part.name(), source.to_string()).map_err(|e| error(part, &e))?;
    }
    Ok(())
}

/// Renders every part with `context` (an object: `{"person": {...}, "account": {...}, ...}`).
pub fn render(template: &Template, context: &serde_json::Value) -> Result<Rendered, TemplateError> {
    let mut env = environment();
    let mut out = Rendered { subject: String::new(), html: None, text: String::new() };
    for (part, source) in parts(template) {
        env.add_template_owned(part.name(), source.to_string()).map_err(|e| error(part, &e))?;
        let rendered =
            env.get_template(part.name()).and_then(|t| t.render(Serde(context))).map_err(|e| error(part, &e))?;
        match part {
            Part::Subject => out.subject = rendered.split_whitespace().collect::<Vec<_>>().join(" "),
            Part::Html => out.html = Some(rendered),
            Part::Text => out.text = rendered,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template(subject: &str, html: Option<&str>, text: &str) -> Template {
        Template { subject: subject.into(), html: html.map(Into::into), text: text.into() }
    }

    #[test]
    fn renders_every_part_escaping_html_only() {
        let t = template(
            "Welcome, {{ person.name }}\n!",
            Some("<p>Hi {{ person.name }}, {{ account.name }} scores {{ health }}.</p>"),
            "Hi {{ person.name }}, {{ account.name }} scores {{ health }}.\n{% for f in features %}- {{ f }}\n{% endfor %}",
        );
        assert_eq!(check(&t), Ok(()));
        let context = json!({
            "person": {"name": "Zoë <b>"}, "account": {"name": "Acme & Co"}, "health": 72,
            "features": ["reports", "alerts"]
        });
        let r = render(&t, &context).unwrap();
        assert_eq!(r.subject, "Welcome, Zoë <b> !");
        assert_eq!(r.html.as_deref(), Some("<p>Hi Zoë &lt;b&gt;, Acme &amp; Co scores 72.</p>"));
        assert_eq!(r.text, "Hi Zoë <b>, Acme & Co scores 72.\n- reports\n- alerts\n");
    }

    #[test]
    fn a_misspelt_name_fails_at_send_time_with_its_place() {
        let t = template("Hi", None, "Hello\n{{ person.nmae }}");
        assert_eq!(check(&t), Ok(()), "a misspelling is only known with a context");
        let err = render(&t, &json!({"person": {"name": "Zoë"}})).unwrap_err();
        assert_eq!((err.part, err.line), (Part::Text, Some(2)));
        assert!(err.message.contains("undefined"), "{err}");
        let err = render(&template("{{ nobody }}", None, ""), &json!({})).unwrap_err();
        assert_eq!(err.part, Part::Subject);
        // Testing for a value and giving a default stay possible.
        let lenient =
            template("Hi {{ person.nick | default('there') }}", None, "{% if person.nick is defined %}x{% endif %}y");
        let r = render(&lenient, &json!({"person": {}})).unwrap();
        assert_eq!((r.subject.as_str(), r.text.as_str()), ("Hi there", "y"));
    }

    #[test]
    fn syntax_errors_are_found_when_saved() {
        let err = check(&template("Hi", Some("<p>\n\n{% if x %}</p>"), "")).unwrap_err();
        assert_eq!((err.part, err.line), (Part::Html, Some(3)));
        assert!(err.to_string().starts_with("html line 3: "), "{err}");
        let err = check(&template("Hi {{ person.name", None, "")).unwrap_err();
        assert_eq!((err.part, err.line), (Part::Subject, Some(1)));
        // Filters are looked up when rendering: an unknown one fails then, with its place.
        let unknown = template("Hi", None, "\n{{ x | no_such_filter }}");
        assert_eq!(check(&unknown), Ok(()));
        let err = render(&unknown, &json!({"x": 1})).unwrap_err();
        assert_eq!((err.part, err.line), (Part::Text, Some(2)));
        assert!(err.message.contains("no_such_filter"), "{err}");
    }
}
