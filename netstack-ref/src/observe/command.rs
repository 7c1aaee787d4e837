//! `netstack observe`'s command line, parsed as `hubble observe` reads its own: the options
//! (`--last`, `--first`, `-f`, `--since`, `--until`, `-o`) may stand anywhere among the filter
//! flags, whose order matters (`--not`), so the whole line is read here, not by clap.

use std::path::PathBuf;

use super::filter::{self, FilterError, Filters};
use super::print::Format;
use super::time::{now_nanos, parse_point};

/// What `observe` was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObserveOptions {
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// The newest N flows (Hubble's default: 20 unless following).
    pub last: Option<usize>,
    /// The oldest N flows instead.
    pub first: Option<usize>,
    /// Keep printing new flows.
    pub follow: bool,
    /// Only flows at or after (nanoseconds since the epoch).
    pub since: Option<i128>,
    /// Only flows before.
    pub until: Option<i128>,
    /// The output format.
    pub format: Format,
    /// The filters.
    pub filters: Filters,
}

fn format_named(name: &str) -> Option<Format> {
    Some(match name {
        "compact" => Format::Compact,
        "dict" => Format::Dict,
        "json" => Format::Json,
        "jsonpb" => Format::Jsonpb,
        "table" => Format::Table,
        _ => return None,
    })
}

impl ObserveOptions {
    /// Parses `args` (everything after `observe`).
    pub fn parse(args: &[String]) -> Result<ObserveOptions, FilterError> {
        let mut options = ObserveOptions {
            state_dir: PathBuf::from("/var/run/netstack"),
            last: None,
            first: None,
            follow: false,
            since: None,
            until: None,
            format: Format::Compact,
            filters: Filters::default(),
        };
        let mut filter_args = Vec::new();
        let now = now_nanos();
        let mut i = 0;
        while i < args.len() {
            let raw = &args[i];
            i += 1;
            let (flag, inline) = match raw.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (raw.clone(), None),
            };
            let takes_value = matches!(
                flag.as_str(),
                "--state-dir" | "--last" | "--first" | "--since" | "--until" | "-o" | "--output"
            );
            if !takes_value {
                match flag.as_str() {
                    "-f" | "--follow" => options.follow = true,
                    _ => {
                        filter_args.push(raw.clone());
                        // A filter flag's value goes with it (unless given inline).
                        if filter::is_filter_flag(&flag) && inline.is_none() {
                            if let Some(v) = args.get(i) {
                                filter_args.push(v.clone());
                                i += 1;
                            }
                        }
                    }
                }
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    let v = args.get(i).ok_or_else(|| FilterError::MissingValue(flag.clone()))?.clone();
                    i += 1;
                    v
                }
            };
            let bad = |reason: &str| FilterError::BadValue {
                flag: flag.clone(),
                value: value.clone(),
                reason: reason.into(),
            };
            match flag.as_str() {
                "--state-dir" => options.state_dir = PathBuf::from(&value),
                "--last" => options.last = Some(value.parse().map_err(|_| bad("not a number"))?),
                "--first" => options.first = Some(value.parse().map_err(|_| bad("not a number"))?),
                "--since" => {
                    options.since =
                        Some(parse_point(&value, now).ok_or_else(|| bad("not a time (RFC 3339) or duration (5m)"))?)
                }
                "--until" => {
                    options.until =
                        Some(parse_point(&value, now).ok_or_else(|| bad("not a time (RFC 3339) or duration (5m)"))?)
                }
                _ => {
                    options.format =
                        format_named(&value).ok_or_else(|| bad("not compact, dict, json, jsonpb or table"))?
                }
            }
        }
        if options.first.is_some() && options.follow {
            return Err(FilterError::BadValue {
                flag: "--first".into(),
                value: String::new(),
                reason: "cannot be combined with --follow".into(),
            });
        }
        options.filters = filter::parse(&filter_args)?;
        Ok(options)
    }

    /// Whether a flow at `time` (RFC 3339) is inside `--since`/`--until`.
    pub fn in_time(&self, time: &str) -> bool {
        let Some(t) = super::time::parse_rfc3339(time) else { return self.since.is_none() && self.until.is_none() };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ObserveOptions, FilterError> {
        ObserveOptions::parse(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn options_stand_anywhere_among_the_filters() {
        let o = parse("--state-dir /tmp/x --from-pod shop/ -o json --last 5 --not --verdict DROPPED -f").unwrap();
        assert_eq!(o.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!((o.last, o.follow, o.format), (Some(5), true, Format::Json));
        assert_eq!(o.filters.allow.len(), 1);
        assert_eq!(o.filters.deny.len(), 1);
        let o = parse("--output=table --since=5m --first 3").unwrap();
        assert_eq!((o.format, o.first), (Format::Table, Some(3)));
        assert!(o.since.is_some());
    }

    #[test]
    fn bad_options_are_named() {
        assert!(matches!(parse("-o yaml"), Err(FilterError::BadValue { .. })));
        assert!(matches!(parse("--last many"), Err(FilterError::BadValue { .. })));
        assert!(matches!(parse("--since yesterday"), Err(FilterError::BadValue { .. })));
        assert!(matches!(parse("--first 2 -f"), Err(FilterError::BadValue { .. })));
        assert_eq!(parse("--last"), Err(FilterError::MissingValue("--last".into())));
        assert_eq!(parse("--frobnicate"), Err(FilterError::UnknownFlag("--frobnicate".into())));
    }

    #[test]
    fn since_and_until_bound_flow_times() {
        let o = parse("--since 2026-12-05T04:00:00Z --until 2026-12-05T05:00:00Z").unwrap();
        assert!(o.in_time("2026-12-05T04:30:00Z"));
        assert!(!o.in_time("2026-12-05T03:59:59Z"));
        assert!(!o.in_time("2026-12-05T05:00:00Z"));
    }
}
