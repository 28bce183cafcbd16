//! Component names (`globals.sql`, `databases/<name>.sql`) as host stream names.
//!
//! The host accepts stream names made of `/`-separated segments of `[A-Za-z0-9._-]`, while a
//! database's name (and so its component name) may hold any character. The stream name keeps
//! `A-Z a-z 0-9 . - /` and writes every other byte of the component name as `_` and two
//! upper-case hex digits (`_` itself is `_5F`), so the mapping is reversible.

/// The host stream name of `component`.
pub fn stream_name(component: &str) -> String {
    let mut s = String::with_capacity(component.len());
    for b in component.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'/') {
            s.push(b as char);
        } else {
            s.push_str(&format!("_{b:02X}"));
        }
    }
    s
}

/// The component a host stream name stands for (inverse of [`stream_name`]); `None` if the
/// name is not one [`stream_name`] makes (then the stream is taken as a plain script named as
/// it is).
pub fn component_name(stream: &str) -> Option<String> {
    let bytes = stream.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::database_component;

    #[test]
    fn round_trip_any_database_name() {
        for db in ["app", "my db", "ünï_code", "a/b%c", "x\ny", ".", ".."] {
            let component = database_component(db);
            let stream = stream_name(&component);
            assert!(
                stream.split('/').all(|seg| !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))),
                "{stream:?} is not a valid host stream name"
            );
            assert_eq!(component_name(&stream).as_deref(), Some(component.as_str()));
        }
        assert_eq!(stream_name("globals.sql"), "globals.sql");
        assert_eq!(stream_name("databases/my db.sql"), "databases/my_20db.sql");
        assert_eq!(component_name("databases/bad_zz.sql"), None);
    }
}
