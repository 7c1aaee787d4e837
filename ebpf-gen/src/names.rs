//! Rust identifiers for C names: kept as they are (so a grep finds both sides), made legal.

/// Rust's keywords, strict and reserved, which a C name may collide with.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self",
    "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become",
    "box", "do", "final", "gen", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Keywords a raw identifier (`r#…`) cannot spell.
const NOT_RAW: &[&str] = &["crate", "self", "Self", "super"];

/// `name` as a field or function name: raw (`r#type`) when it is a keyword.
pub fn ident(name: &str) -> String {
    let clean = sanitize(name);
    match KEYWORDS.contains(&clean.as_str()) {
        true if NOT_RAW.contains(&clean.as_str()) => format!("{clean}_"),
        true => format!("r#{clean}"),
        false => clean,
    }
}

/// `name` with anything but ASCII letters, digits and `_` replaced, never starting with a digit.
pub fn sanitize(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `ENDPOINT_ID` → `endpoint_id`, `fromContainer` → `from_container` (method names).
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in sanitize(name).chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

/// `endpoint` → `Endpoint`, `xdp_count` → `XdpCount` (type names of the skeleton).
pub fn camel(name: &str) -> String {
    let mut out = String::new();
    for part in sanitize(name).split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'X');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_names_become_legal_rust() {
        assert_eq!(ident("type"), "r#type");
        assert_eq!(ident("self"), "self_");
        assert_eq!(ident("saddr"), "saddr");
        assert_eq!(ident("9lives"), "_9lives");
        assert_eq!(snake("ENDPOINT_ID"), "endpoint_id");
        assert_eq!(snake("HOST_MAC"), "host_mac");
        assert_eq!(snake("fromContainer"), "from_container");
        assert_eq!(camel("endpoint"), "Endpoint");
        assert_eq!(camel("xdp_count"), "XdpCount");
        assert_eq!(camel("tail-calls"), "TailCalls");
    }
}
