//! Splits a segment's text into tokens, each with the span of text it came from.

use crate::{Error, Span};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    /// A duration in seconds, from a number and a unit: `30m`, `12h`, `14d`, `2w`.
    Duration(i64),
    Op(Cmp),
    LParen,
    RParen,
    Comma,
    Dot,
    End,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub fn as_str(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }

    /// Whether `a op b` holds for values that are ordered.
    pub fn holds(self, order: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Cmp::Eq => order == Equal,
            Cmp::Ne => order != Equal,
            Cmp::Lt => order == Less,
            Cmp::Le => order != Greater,
            Cmp::Gt => order == Greater,
            Cmp::Ge => order != Less,
        }
    }
}

impl Tok {
    /// How an error message names the token.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("the text {s:?}"),
            Tok::Num(n) => format!("the number {n}"),
            Tok::Duration(_) => "a duration".into(),
            Tok::Op(c) => format!("`{}`", c.as_str()),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::End => "the end of the text".into(),
        }
    }
}

/// Seconds per duration unit.
fn unit_seconds(unit: &str) -> Option<i64> {
    Some(match unit {
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    })
}

pub(crate) fn tokens(text: &str) -> Result<Vec<(Tok, Span)>, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b')' | b',' | b'.' if !(c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) => {
                i += 1;
                let tok = match c {
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b',' => Tok::Comma,
                    _ => Tok::Dot,
                };
                out.push((tok, Span { start, end: i }));
            }
            b'=' | b'!' | b'<' | b'>' => {
                let next = bytes.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    (b'=', Some(b'=')) => (Cmp::Eq, 2),
                    (b'!', Some(b'=')) => (Cmp::Ne, 2),
                    (b'<', Some(b'=')) => (Cmp::Le, 2),
                    (b'>', Some(b'=')) => (Cmp::Ge, 2),
                    (b'<', _) => (Cmp::Lt, 1),
                    (b'>', _) => (Cmp::Gt, 1),
                    (b'=', _) => {
                        return Err(Error::at(text, Span { start, end: i + 1 }, "`=` is not an operator; use `==`"));
                    }
                    _ => {
                        return Err(Error::at(
                            text,
                            Span { start, end: i + 1 },
                            "`!` is not an operator; use `!=` or `not`",
                        ));
                    }
                };
                i += len;
                out.push((Tok::Op(op), Span { start, end: i }));
            }
            b'"' | b'\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&b) = bytes.get(i) else {
                        return Err(Error::at(text, Span { start, end: i }, "this text has no closing quote"));
                    };
                    if b == quote {
                        i += 1;
                        break;
                    }
                    if b == b'\n' {
                        return Err(Error::at(
                            text,
                            Span { start, end: i },
                            "this text has no closing quote on its line",
                        ));
                    }
                    if b == b'\\' {
                        match bytes.get(i + 1) {
                            Some(&e @ (b'\\' | b'"' | b'\'')) => s.push(e as char),
                            Some(b'n') => s.push('\n'),
                            Some(b't') => s.push('\t'),
                            _ => {
                                return Err(Error::at(
                                    text,
                                    Span { start: i, end: (i + 2).min(bytes.len()) },
                                    "unknown escape; a text may escape \\\\, \\\", \\', \\n and \\t",
                                ));
                            }
                        }
                        i += 2;
                        continue;
                    }
                    // A whole character, however many bytes it takes.
                    let ch = text[i..].chars().next().expect("inside the text");
                    s.push(ch);
                    i += ch.len_utf8();
                }
                out.push((Tok::Str(s), Span { start, end: i }));
            }
            b'0'..=b'9' | b'-' | b'.' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.' || bytes[i] == b'_') {
                    i += 1;
                }
                let digits: String = text[start..i].chars().filter(|&c| c != '_').collect();
                let unit_start = i;
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let span = Span { start, end: i };
                let number: f64 = digits
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| Error::at(text, span, format!("`{}` is not a number", &text[start..i])))?;
                if unit_start == i {
                    out.push((Tok::Num(number), span));
                } else {
                    let unit = &text[unit_start..i];
                    let Some(seconds) = unit_seconds(unit) else {
                        return Err(Error::at(
                            text,
                            span,
                            format!(
                                "`{unit}` is not a unit of time; a duration is a whole number of m, h, d or w, as in 14d"
                            ),
                        ));
                    };
                    if number.fract() != 0.0 || number < 0.0 {
                        return Err(Error::at(
                            text,
                            span,
                            "a duration is a whole, positive number of its unit, as in 14d",
                        ));
                    }
                    out.push((Tok::Duration(number as i64 * seconds), span));
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push((Tok::Ident(text[start..i].to_owned()), Span { start, end: i }));
            }
            _ => {
                let ch = text[i..].chars().next().expect("inside the text");
                return Err(Error::at(
                    text,
                    Span { start, end: i + ch.len_utf8() },
                    format!("unexpected character {ch:?}"),
                ));
            }
        }
    }
    out.push((Tok::End, Span { start: text.len(), end: text.len() }));
    Ok(out)
}
