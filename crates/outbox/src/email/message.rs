//! The MIME message: headers (RFC 5322, RFC 2047 encoded words for non-ASCII text,
//! RFC 8058 one-click unsubscribe) and the bodies as multipart/alternative, each part
//! quoted-printable UTF-8, so every line is short 7-bit text whatever the template wrote.

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use super::{Email, Mailbox, MessageError};

/// The boundary between the parts. Quoted-printable writes every `=` as `=3D`, so a
/// boundary starting with `=_` can never occur in a part.
const BOUNDARY: &str = "=_steward_alternative";

/// Headers the message builds itself; an email's extra headers may not set them.
const RESERVED: [&str; 11] = [
    "date",
    "from",
    "to",
    "subject",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "bcc",
];

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|part| !part.is_empty() && part.bytes().all(is_atext))
}

/// Checks an address: ASCII `local@domain`, the local part a dot-atom, the domain
/// letters, digits and hyphens between dots. Internationalized addresses are not supported.
pub(super) fn check_address(address: &str) -> Result<(), MessageError> {
    let bad = |why: &str| Err(MessageError::Address { address: address.to_string(), reason: why.to_string() });
    if !address.is_ascii() {
        return bad("only ASCII addresses are supported");
    }
    let Some((local, domain)) = address.rsplit_once('@') else { return bad("no `@`") };
    if local.is_empty() || local.len() > 64 || !is_dot_atom(local) {
        return bad("the part before `@` must be letters, digits and !#$%&'*+-/=?^_`{|}~ between dots");
    }
    let label_ok = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if domain.len() > 253 || !domain.split('.').all(label_ok) {
        return bad("the domain must be letters, digits and hyphens between dots");
    }
    Ok(())
}

/// A Message-ID for the outbox row `key`: `<escaped-key@domain>`, without the angle
/// brackets. Characters a message id may not hold (`:` among them) are written `=XX`, so
/// one key gives one id and two keys never the same id.
pub fn message_id(key: &str, domain: &str) -> String {
    let mut left = String::with_capacity(key.len() + 8);
    for b in key.bytes() {
        if is_atext(b) && b != b'=' {
            left.push(b as char);
        } else {
            let _ = write!(left, "={b:02X}");
        }
    }
    format!("{left}@{domain}")
}

/// `=?UTF-8?B?...?=` words of at most 39 bytes of text each (64 characters encoded, so a
/// header line with one stays under 78),
/// split between characters.
fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + 39).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(&text.as_bytes()[start..end])));
        start = end;
    }
    words
}

fn is_plain_header_text(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b)) && !text.contains("=?")
}

/// Line breaks (which would start a new header) become spaces.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n']).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

fn unstructured(name: &str, text: &str) -> String {
    let text = one_line(text);
    if is_plain_header_text(&text) && name.len() + 2 + text.len() <= 78 {
        format!("{name}: {text}\r\n")
    } else {
        format!("{name}: {}\r\n", encoded_words(&text).join("\r\n "))
    }
}

fn mailbox(m: &Mailbox) -> String {
    let Some(name) = m.name.as_deref().map(one_line).filter(|n| !n.trim().is_empty()) else {
        return format!("<{}>", m.address);
    };
    let phrase = if !is_plain_header_text(&name) {
        encoded_words(&name).join("\r\n ")
    } else if name.bytes().all(|b| is_atext(b) || b == b' ') {
        name
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    };
    format!("{phrase} <{}>", m.address)
}

/// Quoted-printable (RFC 2045 §6.7): lines of at most 76 characters, CRLF line breaks,
/// trailing blanks encoded. A line starting with `.` stays so: SMTP dot-stuffs it.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        let mut width = 0;
        for (j, &b) in line.iter().enumerate() {
            let last = j + 1 == line.len();
            let literal = (b'!'..=b'~').contains(&b) && b != b'=' || (b == b' ' || b == b'\t') && !last;
            let len = if literal { 1 } else { 3 };
            // Leave room for the soft break's `=` unless this is the line's end.
            if width + len > if last { 76 } else { 75 } {
                out.push_str("=\r\n");
                width = 0;
            }
            if literal {
                out.push(b as char);
            } else {
                let _ = write!(out, "={b:02X}");
            }
            width += len;
        }
        if i + 1 < lines.len() {
            out.push_str("\r\n");
        }
    }
    out
}

fn check_header(name: &str, value: &str) -> Result<(), MessageError> {
    let bad = |reason: &str| Err(MessageError::Header { name: name.to_string(), reason: reason.to_string() });
    if name.is_empty() || name.len() > 76 || !name.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b':') {
        return bad("a header name is 1 to 76 visible ASCII characters without `:`");
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return bad("set by the message itself");
    }
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') || value.len() > 900 {
        return bad("a header value is one line of printable ASCII");
    }
    Ok(())
}

/// The whole message, CRLF line ends, as it goes after DATA (before dot-stuffing).
pub(super) fn build(email: &Email, date: DateTime<Utc>) -> Result<Vec<u8>, MessageError> {
    check_address(&email.from.address)?;
    check_address(&email.to.address)?;
    match email.message_id.split_once('@') {
        Some((left, right)) if is_dot_atom(left) && is_dot_atom(right) => {}
        _ => return Err(MessageError::MessageId(email.message_id.clone())),
    }
    let mut out = String::with_capacity(1024 + email.text.len() * 2 + email.html.as_ref().map_or(0, |h| h.len() * 2));
    let _ = write!(out, "Date: {}\r\n", date.to_rfc2822());
    let _ = write!(out, "From: {}\r\n", mailbox(&email.from));
    let _ = write!(out, "To: {}\r\n", mailbox(&email.to));
    out.push_str(&unstructured("Subject", &email.subject));
    let _ = write!(out, "Message-ID: <{}>\r\n", email.message_id);
    out.push_str("MIME-Version: 1.0\r\n");
    if let Some(url) = &email.list_unsubscribe {
        // RFC 8058: one-click needs an HTTPS URI the mail provider can POST to.
        if !url.starts_with("https://") || url.bytes().any(|b| !(b'!'..=b'~').contains(&b) || b == b'>') {
            return Err(MessageError::Unsubscribe(url.clone()));
        }
        let _ = write!(out, "List-Unsubscribe: <{url}>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    }
    for (name, value) in &email.headers {
        check_header(name, value)?;
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let part = |kind: &str, body: &str| {
        format!(
            "Content-Type: text/{kind}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
            quoted_printable(body)
        )
    };
    match &email.html {
        None => out.push_str(&part("plain", &email.text)),
        Some(html) => {
            let _ = write!(out, "Content-Type: multipart/alternative; boundary=\"{BOUNDARY}\"\r\n\r\n");
            let _ = write!(out, "--{BOUNDARY}\r\n{}\r\n", part("plain", &email.text));
            let _ = write!(out, "--{BOUNDARY}\r\n{}\r\n", part("html", html));
            let _ = write!(out, "--{BOUNDARY}--\r\n");
        }
    }
    // A single part's body ends the message as it is; DATA adds the CRLF SMTP needs.
    Ok(out.into_bytes())
}

/// DATA's transparency (RFC 5321 §4.5.2): a line starting with `.` gets another, and the
/// message ends with CRLF `.` CRLF.
pub(super) fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_keeps_lines_short_and_text_exact() {
        assert_eq!(quoted_printable("a = b \n.dot\nend\t"), "a =3D b=20\r\n.dot\r\nend=09");
        assert_eq!(quoted_printable("é"), "=C3=A9");
        let long = "x".repeat(200);
        let encoded = quoted_printable(&long);
        assert!(encoded.split("\r\n").all(|l| l.len() <= 76), "{encoded}");
        assert_eq!(encoded.replace("=\r\n", ""), long);
        // An escape is never split by a soft break.
        let accents = "é".repeat(40);
        let encoded = quoted_printable(&accents);
        assert!(encoded.split("\r\n").all(|l| l.len() <= 76 && !l.trim_end_matches('=').ends_with("=C")));
    }

    #[test]
    fn message_ids_escape_what_an_id_cannot_hold() {
        assert_eq!(message_id("run_7f3a:welcome:1", "mail.example.com"), "run_7f3a=3Awelcome=3A1@mail.example.com");
        assert_ne!(message_id("a:b", "x"), message_id("a=3Ab", "x"));
        assert_eq!(message_id("a.b", "x"), "a=2Eb@x");
    }

    #[test]
    fn headers_encode_what_is_not_plain_ascii() {
        assert_eq!(unstructured("Subject", "Hello"), "Subject: Hello\r\n");
        assert_eq!(unstructured("Subject", "Héllo"), "Subject: =?UTF-8?B?SMOpbGxv?=\r\n");
        assert_eq!(unstructured("Subject", "a\r\nBcc: x@y"), "Subject: a Bcc: x@y\r\n");
        let m = |name: Option<&str>| mailbox(&Mailbox { name: name.map(Into::into), address: "a@b.c".into() });
        assert_eq!(m(None), "<a@b.c>");
        assert_eq!(m(Some("Ada Lovelace")), "Ada Lovelace <a@b.c>");
        assert_eq!(m(Some("Lovelace, Ada \"AL\"")), "\"Lovelace, Ada \\\"AL\\\"\" <a@b.c>");
        assert_eq!(m(Some("Zoë")), "=?UTF-8?B?Wm/Dqw==?= <a@b.c>");
    }

    #[test]
    fn addresses_and_headers_are_checked() {
        assert!(check_address("ada.l+x@mail-1.example.com").is_ok());
        for bad in
            ["ada", "@example.com", "ada@", "a b@c.d", "ada@ex_ample.com", "zoë@example.com", "a..b@c.d", "<a@b.c>"]
        {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert!(check_header("X-Steward-Run", "run_1").is_ok());
        assert!(check_header("Bcc", "x@y.z").is_err());
        assert!(check_header("X-A", "one\r\nBcc: x@y.z").is_err());
        assert!(check_header("X A", "v").is_err());
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_terminates() {
        assert_eq!(dot_stuff(b".a\r\nb.\r\n.\r\n"), b"..a\r\nb.\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n.\r\n");
    }
}
