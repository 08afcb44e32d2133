//! Keeping credentials out of everything a human or a scraper can read.
//!
//! Connection strings carry passwords (`amqp://app:secret@rabbitmq`), and client libraries like to echo the URL
//! they failed on. Everything that leaves the process — logs, errors, metric labels, `check` output, Kubernetes
//! Events — goes through these helpers first.

use std::io::Write;
use std::sync::RwLock;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Every secret the process has learned from its configs, for [`ScrubbingWriter`].
static KNOWN: RwLock<Secrets> = RwLock::new(Secrets(Vec::new()));

/// Adds `secrets` to those scrubbed from every log line, for the rest of the process's life.
pub fn remember(secrets: &Secrets) {
    KNOWN.write().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(secrets);
}

/// A log writer that masks every remembered secret and URL password before the text leaves the process: the last
/// line of defence against a client library that logs its connection string at a debug or trace level.
pub struct ScrubbingWriter<W> {
    inner: W,
}

impl<W: Write> ScrubbingWriter<W> {
    /// Scrubs what is written to `inner`.
    pub fn new(inner: W) -> ScrubbingWriter<W> {
        ScrubbingWriter { inner }
    }
}

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let scrubbed = KNOWN.read().unwrap_or_else(|poisoned| poisoned.into_inner()).scrub(&text);
        self.inner.write_all(scrubbed.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `scheme://user:password@host/...` with the password masked; strings without userinfo come back unchanged.
pub fn url(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_owned();
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return raw.to_owned();
    };
    let userinfo = &authority[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{MASK}"),
        None => MASK.to_owned(),
    };
    format!("{}://{}{}", &raw[..scheme_end], masked, &rest[at..])
}

/// The password in a URL's userinfo, if any: what [`Secrets`] must scrub from free text such as client errors.
pub fn url_password(raw: &str) -> Option<&str> {
    let rest = &raw[raw.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    userinfo.split_once(':').map(|(_, password)| password).filter(|p| !p.is_empty())
}

/// Secret strings known to one component, scrubbed from any text before it is shown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Remember `secret` (ignoring the empty string, which would mask everything).
    pub fn add(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        if !secret.is_empty() && !self.0.contains(&secret) {
            self.0.push(secret);
        }
    }

    /// Remember every secret `other` knows.
    pub fn extend(&mut self, other: &Secrets) {
        for secret in &other.0 {
            self.add(secret.clone());
        }
    }

    /// Remember the password of `url`, if it has one, in both its raw and percent-decoded forms.
    pub fn add_url_password(&mut self, url: &str) {
        if let Some(password) = url_password(url) {
            self.add(password);
            self.add(percent_decode(password));
        }
    }

    /// `text` with every known secret and every URL password masked.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.0 {
            out = out.replace(secret.as_str(), MASK);
        }
        mask_urls_in(&out)
    }
}

/// Masks the password of every `scheme://user:pass@` found inside free text.
fn mask_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        // The scheme starts after the last character that cannot be in one, which may be more than one byte long.
        let word_start = rest[..pos]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word_end = rest[pos..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | ',' | '`'))
            .map_or(rest.len(), |i| pos + i);
        out.push_str(&rest[..word_start]);
        out.push_str(&url(&rest[word_start..word_end]));
        rest = &rest[word_end..];
    }
    out.push_str(rest);
    out
}

/// `%XX` escapes decoded; invalid escapes are kept as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_password_and_keeps_the_rest() {
        assert_eq!(url("amqp://app:s3cret@rabbitmq:5672/%2f"), "amqp://app:***@rabbitmq:5672/%2f");
        assert_eq!(url("http://token@host/x?y=1"), "http://***@host/x?y=1");
        assert_eq!(url("http://host:9090/api"), "http://host:9090/api");
        assert_eq!(url("kafka:9092"), "kafka:9092");
    }

    #[test]
    fn finds_the_password() {
        assert_eq!(url_password("amqp://app:s3cret@rabbitmq"), Some("s3cret"));
        assert_eq!(url_password("amqp://app@rabbitmq"), None);
        assert_eq!(url_password("amqp://rabbitmq/a@b"), None);
    }

    #[test]
    fn the_log_writer_masks_remembered_secrets() {
        let mut secrets = Secrets::default();
        secrets.add("planted-in-the-log-writer");
        remember(&secrets);
        let mut out = Vec::new();
        write!(ScrubbingWriter::new(&mut out), "a planted-in-the-log-writer b amqp://u:pw@h").expect("write");
        assert_eq!(String::from_utf8(out).expect("utf-8"), "a *** b amqp://u:***@h");
    }

    #[test]
    fn scrubs_known_secrets_and_urls_from_free_text() {
        let mut secrets = Secrets::default();
        secrets.add_url_password("amqp://app:p%40ss@h");
        let text = "connect amqp://app:p%40ss@h failed; password p@ss rejected (http://u:other@x/y)";
        let scrubbed = secrets.scrub(text);
        assert!(!scrubbed.contains("p@ss") && !scrubbed.contains("p%40ss") && !scrubbed.contains("other"));
        assert!(scrubbed.contains("amqp://app:***@h"), "{scrubbed}");
        assert!(scrubbed.contains("http://u:***@x/y"), "{scrubbed}");
    }

    #[test]
    fn a_url_right_after_a_multibyte_character_is_masked_without_a_panic() {
        let scrubbed = Secrets::default().scrub("fila→amqp://app:hunter2@h and Ӕhttp://u:pw@x");
        assert_eq!(scrubbed, "fila→amqp://app:***@h and Ӕhttp://u:***@x");
    }
}
