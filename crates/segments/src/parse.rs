//! The grammar, by recursive descent. What it builds is only syntax: names are resolved and
//! types checked in [`crate::check`].
//!
//! ```text
//! segment  := expr END
//! expr     := all ("or" all)*
//! all      := one ("and" one)*
//! one      := "not" one | "(" expr ")" | "in" "segment" TEXT | value [test]
//! test     := CMP value | ["not"] "in" "(" literal ("," literal)* ")" | "is" ["not"] "set"
//!           | "within" DURATION "of" value
//! value    := literal | name ("." name)* | name "(" [arg ("," arg)*] ")"
//! arg      := "event" TEXT | value
//! literal  := NUMBER | TEXT | DURATION | "true" | "false"
//! ```

use crate::lex::{Cmp, Tok, tokens};
use crate::{Error, Span};

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Any(Vec<Expr>),
    All(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        left: Value,
        op: Cmp,
        right: Value,
    },
    In {
        value: Value,
        list: Vec<(Literal, Span)>,
        negated: bool,
    },
    IsSet {
        value: Value,
        negated: bool,
    },
    Within {
        time: Value,
        seconds: i64,
        of: Value,
        span: Span,
    },
    InSegment {
        name: String,
        span: Span,
    },
    /// A value that is itself true or false, such as a yes/no trait.
    Truth(Value),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Literal(Literal),
    /// `health`, `traits.plan`.
    Name(Vec<String>),
    Call {
        name: String,
        args: Vec<Arg>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Num(f64),
    Text(String),
    Bool(bool),
    /// Seconds.
    Duration(i64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Event(String, Span),
    Value(Value),
}

const KEYWORDS: &[&str] = &["and", "or", "not", "in", "is", "set", "within", "of", "segment", "event", "true", "false"];

fn keyword(tok: &Tok, word: &str) -> bool {
    matches!(tok, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
}

pub(crate) fn parse(text: &str) -> Result<Expr, Error> {
    let toks = tokens(text)?;
    let mut p = Parser { text, toks, at: 0 };
    if matches!(p.peek(), Tok::End) {
        return Err(p.expected("a condition, such as health < 40"));
    }
    let expr = p.expr()?;
    if !matches!(p.peek(), Tok::End) {
        return Err(p.expected("`and`, `or` or the end of the condition"));
    }
    Ok(expr)
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<(Tok, Span)>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn span(&self) -> Span {
        self.toks[self.at].1
    }

    fn bump(&mut self) -> (Tok, Span) {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        if keyword(self.peek(), word) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expected(&self, what: &str) -> Error {
        Error::at(self.text, self.span(), format!("expected {what}, found {}", self.peek().describe()))
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Span, Error> {
        if *self.peek() == tok { Ok(self.bump().1) } else { Err(self.expected(what)) }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), Error> {
        if self.eat_keyword(word) { Ok(()) } else { Err(self.expected(&format!("`{word}`"))) }
    }

    fn expr(&mut self) -> Result<Expr, Error> {
        let mut parts = vec![self.all()?];
        while self.eat_keyword("or") {
            parts.push(self.all()?);
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one part") } else { Expr::Any(parts) })
    }

    fn all(&mut self) -> Result<Expr, Error> {
        let mut parts = vec![self.one()?];
        while self.eat_keyword("and") {
            parts.push(self.one()?);
        }
        Ok(if parts.len() == 1 { parts.pop().expect("one part") } else { Expr::All(parts) })
    }

    fn one(&mut self) -> Result<Expr, Error> {
        if self.eat_keyword("not") {
            return Ok(Expr::Not(Box::new(self.one()?)));
        }
        if *self.peek() == Tok::LParen {
            self.bump();
            let inner = self.expr()?;
            self.expect(Tok::RParen, "`)` to close the `(`")?;
            return Ok(inner);
        }
        if keyword(self.peek(), "in") {
            let start = self.bump().1;
            self.expect_keyword("segment")?;
            let (name, end) = self.text("the segment's name in quotes, as in \"Onboarding\"")?;
            return Ok(Expr::InSegment { name, span: start.to(end) });
        }
        let value = self.value()?;
        match self.peek().clone() {
            Tok::Op(op) => {
                self.bump();
                let right = self.value()?;
                Ok(Expr::Compare { left: value, op, right })
            }
            t if keyword(&t, "in") || keyword(&t, "not") => {
                let negated = self.eat_keyword("not");
                if negated && !keyword(self.peek(), "in") {
                    return Err(self.expected("`in` after `not`"));
                }
                self.bump();
                self.expect(Tok::LParen, "`(` and a list of values, as in (\"pro\", \"team\")")?;
                let mut list = Vec::new();
                loop {
                    let (lit, span) = self.literal("a number, a text in quotes, true or false")?;
                    list.push((lit, span));
                    if *self.peek() == Tok::Comma {
                        self.bump();
                        if *self.peek() == Tok::RParen {
                            break;
                        }
                        continue;
                    }
                    break;
                }
                self.expect(Tok::RParen, "`,` or `)` to end the list")?;
                Ok(Expr::In { value, list, negated })
            }
            t if keyword(&t, "is") => {
                self.bump();
                let negated = self.eat_keyword("not");
                self.expect_keyword("set")?;
                Ok(Expr::IsSet { value, negated })
            }
            t if keyword(&t, "within") => {
                self.bump();
                let span = self.span();
                let Tok::Duration(seconds) = *self.peek() else {
                    return Err(self.expected("a duration, as in 7d"));
                };
                self.bump();
                self.expect_keyword("of")?;
                let of = self.value()?;
                Ok(Expr::Within { time: value, seconds, of, span })
            }
            _ => Ok(Expr::Truth(value)),
        }
    }

    /// A text in quotes.
    fn text(&mut self, what: &str) -> Result<(String, Span), Error> {
        let Tok::Str(s) = self.peek().clone() else { return Err(self.expected(what)) };
        Ok((s, self.bump().1))
    }

    fn literal(&mut self, what: &str) -> Result<(Literal, Span), Error> {
        let (tok, span) = (self.peek().clone(), self.span());
        let lit = match tok {
            Tok::Num(n) => Literal::Num(n),
            Tok::Str(s) => Literal::Text(s),
            Tok::Duration(s) => Literal::Duration(s),
            ref t if keyword(t, "true") => Literal::Bool(true),
            ref t if keyword(t, "false") => Literal::Bool(false),
            _ => return Err(self.expected(what)),
        };
        self.bump();
        Ok((lit, span))
    }

    fn value(&mut self) -> Result<Value, Error> {
        const WHAT: &str = "a value: a field such as health, a function such as count(...), a number or a text";
        let (tok, start) = (self.peek().clone(), self.span());
        match tok {
            Tok::Ident(ref name) if !KEYWORDS.iter().any(|k| name.eq_ignore_ascii_case(k)) => {
                self.bump();
                if *self.peek() == Tok::LParen {
                    self.bump();
                    let mut args = Vec::new();
                    if *self.peek() != Tok::RParen {
                        loop {
                            if keyword(self.peek(), "event") {
                                let ev = self.bump().1;
                                let (event, end) =
                                    self.text("the event's name in quotes, as in event \"Report Created\"")?;
                                args.push(Arg::Event(event, ev.to(end)));
                            } else {
                                args.push(Arg::Value(self.value()?));
                            }
                            if *self.peek() == Tok::Comma {
                                self.bump();
                                continue;
                            }
                            break;
                        }
                    }
                    let end = self.expect(Tok::RParen, "`,` or `)` to end the arguments")?;
                    return Ok(Value { kind: ValueKind::Call { name: name.clone(), args }, span: start.to(end) });
                }
                let mut path = vec![name.clone()];
                let mut end = start;
                while *self.peek() == Tok::Dot {
                    self.bump();
                    let Tok::Ident(part) = self.peek().clone() else {
                        return Err(self.expected("a name after `.`"));
                    };
                    end = self.bump().1;
                    path.push(part);
                }
                Ok(Value { kind: ValueKind::Name(path), span: start.to(end) })
            }
            Tok::Num(_) | Tok::Str(_) | Tok::Duration(_) => {
                let (lit, span) = self.literal(WHAT)?;
                Ok(Value { kind: ValueKind::Literal(lit), span })
            }
            ref t if keyword(t, "true") || keyword(t, "false") => {
                let (lit, span) = self.literal(WHAT)?;
                Ok(Value { kind: ValueKind::Literal(lit), span })
            }
            _ => Err(self.expected(WHAT)),
        }
    }
}
