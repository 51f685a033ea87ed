//! Log lines: tracing's text or JSON format, the level from `RUST_LOG`.
//!
//! Much of what is logged comes from clients (user and database names,
//! application names, addresses, errors quoting what they sent). In the
//! text format every field value is written with its control characters
//! escaped (`\n`, `\r`, `\u{1b}`, ...), so a user name with a newline
//! cannot write a second, forged log line, nor an escape sequence repaint
//! the operator's terminal. This is done once, where fields are written,
//! rather than at each call site, where one could be forgotten. JSON
//! escapes control characters itself. Colours only when the log goes to a
//! terminal.

use crate::config::LogFormat;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use tracing_subscriber::field::MakeExt;

/// Sets up the global logger (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(escaped_fields()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The text format's fields: `message` bare, the others `name=value`,
/// separated by spaces, as tracing's default, each value escaped.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        match field.name() {
            "message" => write!(writer, "{}", Escaped(&text)),
            name => write!(writer, "{name}={}", Escaped(&text)),
        }
    })
    .delimited(" ")
}

/// Text with its control characters (C0, DEL, C1) escaped as Rust writes
/// them (`\n`, `\u{1b}`); everything else, other scripts included, as it is.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(char::is_control) {
            f.write_str(&rest[..at])?;
            let mut chars = rest[at..].chars();
            if let Some(c) = chars.next() {
                for escaped in c.escape_debug() {
                    f.write_char(escaped)?;
                }
            }
            rest = chars.as_str();
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let cases = [
            ("plain", "plain"),
            ("two\nlines", "two\\nlines"),
            ("cr\r\n", "cr\\r\\n"),
            ("\x1b[31mred\x1b[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("c1 \u{9b}31m", "c1 \\u{9b}31m"),
            ("del\x7f", "del\\u{7f}"),
            ("tab\tnul\0", "tab\\tnul\\0"),
            (
                "ünïcødé 数据库 \"quoted\" back\\slash",
                "ünïcødé 数据库 \"quoted\" back\\slash",
            ),
        ];
        for (raw, shown) in cases {
            assert_eq!(Escaped(raw).to_string(), shown, "{raw:?}");
        }
    }

    /// The fields of an event as the text format writes them.
    #[test]
    fn a_forged_line_stays_on_its_line() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::fmt::MakeWriter;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Buffer {
            type Writer = Buffer;
            fn make_writer(&'a self) -> Buffer {
                self.clone()
            }
        }

        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .with_writer(buffer.clone())
            .finish();
        let user = "eve\n2026-01-01T00:00:00Z  INFO pgsplit: admin logged in";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(user = %user, n = 3, "client connected");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("client connected user=eve\\n2026-01-01T00:00:00Z  INFO pgsplit: admin logged in n=3"),
            "{text}"
        );
    }
}
